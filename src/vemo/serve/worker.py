"""Bounded inference: a fixed number of worker threads, a bounded queue, and jobs kept for download.

Why bounded: every waiting upload holds a file on disk and a client connection, and the CPU serves one
inference at a time anyway. An unbounded queue turns a burst of uploads into ever-growing latency and
disk use; refusing early (HTTP 503 with a Retry-After estimate) keeps the server up and tells clients
when to come back. Jobs run in threads: PyTorch and FFmpeg release the GIL in their kernels, so the
event loop keeps answering (health checks, progress polls) while a job runs.
"""

from __future__ import annotations

import math
import secrets
import shutil
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vemo.serve.errors import ServeError

DEFAULT_JOB_SECONDS = 5.0  # Retry-After estimate before any job has finished


class QueueFull(ServeError):
    """Every worker is busy and the queue is full: HTTP 503, with when to retry."""

    def __init__(self, retry_after: int):
        message = f"the server is busy (every worker and queue place taken); retry in about {retry_after} s"
        super().__init__(503, "busy", message, {"Retry-After": str(retry_after)})


class Slot:
    """A place reserved in the queue. Released exactly once: when its job ends, or when it never starts."""

    def __init__(self, on_release: Callable[[], None]):
        self._on_release, self._lock, self._held = on_release, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._on_release()


class JobQueue:
    """At most `workers` jobs run at once and at most `queue_size` more wait; `reserve` refuses the rest.

    A slot is reserved *before* an upload is read, so a full server refuses at once instead of after
    receiving hundreds of megabytes, and released only when the job's thread is done (not when the
    client gives up), so the bound holds for the work actually running.
    """

    def __init__(self, workers: int = 1, queue_size: int = 4):
        if workers < 1 or queue_size < 0:
            raise ValueError(f"need workers >= 1 and queue_size >= 0 (got {workers}, {queue_size})")
        self.workers, self.queue_size = workers, queue_size
        self._semaphore = threading.Semaphore(workers + queue_size)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vemo-serve")
        self._durations: deque[float] = deque(maxlen=20)
        self._taken = 0
        self._lock = threading.Lock()

    def reserve(self) -> Slot:
        if not self._semaphore.acquire(blocking=False):
            raise QueueFull(self.retry_after())
        with self._lock:
            self._taken += 1
        return Slot(self._free)

    def _free(self) -> None:
        with self._lock:
            self._taken -= 1
        self._semaphore.release()

    def submit(self, slot: Slot, fn: Callable[..., Any], *args: Any) -> Future:
        """Run fn(*args) in a worker thread; the slot is released when it returns or raises."""

        def run() -> Any:
            start = time.monotonic()
            try:
                return fn(*args)
            finally:
                self._durations.append(time.monotonic() - start)
                slot.release()

        try:
            return self._pool.submit(run)
        except RuntimeError:  # the pool is shutting down
            slot.release()
            raise

    def busy(self) -> int:
        """Jobs running or waiting (including uploads still arriving)."""
        return self._taken

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent mean job time times the jobs ahead per worker."""
        per_job = sum(self._durations) / len(self._durations) if self._durations else DEFAULT_JOB_SECONDS
        return max(1, math.ceil(per_job * (self.workers + self.queue_size) / self.workers))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Job:
    """One upload's analysis: its state for progress polls, then its result or error; outputs in `folder`."""

    id: str
    folder: Path
    state: str = "queued"  # queued -> running -> done | failed
    progress: float = 0.0
    result: dict | None = None
    error: ServeError | None = None
    future: Future | None = field(default=None, repr=False)

    def report(self, fraction: float) -> None:
        """Progress callback for the analysis (called from the worker thread)."""
        self.progress = fraction

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def status(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "state": self.state, "progress": round(self.progress, 3)}
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = {**self.error.body(), "status": self.error.status}
        return out


class JobStore:
    """Jobs by random id, each in its own folder under a private root; only the newest `keep` finished jobs
    are kept (older ones and their outputs are deleted), so disk and memory stay bounded."""

    def __init__(self, root: Path, keep: int = 16):
        self.root, self.keep = root, max(1, keep)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Job:
        job = Job(secrets.token_hex(16), self.root / "jobs" / secrets.token_hex(8))
        job.folder.mkdir(parents=True, mode=0o700)
        with self._lock:
            self._jobs[job.id] = job
        self._evict()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ServeError(404, "unknown_job", f"no job {job_id} (results are kept for the last {self.keep} jobs)")
        return job

    def discard(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _evict(self) -> None:
        with self._lock:
            finished = [job for job in self._jobs.values() if job.finished]
        for job in finished[: max(0, len(finished) - self.keep)]:
            self.discard(job)
