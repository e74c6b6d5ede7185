"""The FastAPI app: the page, the API, and the server state they share.

Why FastAPI + uvicorn: an ASGI stack that reads request bodies as streams (uploads are parsed as they
arrive and refused past the size limit, not buffered first), generates the OpenAPI description served
at /docs from the same code that validates the responses, and runs as one process with no separate
web server. `fastapi-offline` serves the /docs assets from the package, so nothing is fetched from a CDN.

Routes: `/` the page; `GET /api/health`; `POST /api/predict` (upload, wait, result);
`POST /api/jobs` + `GET /api/jobs/{id}` (upload, then poll progress: what the page uses);
`GET /api/jobs/{id}/windows.csv` and `/annotated.mp4` (downloads). Job ids are random; no request
parameter is ever joined to a server path.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vemo import __version__
from vemo.data.sources.video import ClipError
from vemo.predict.run import FACE_SETTINGS, Predictor
from vemo.serve.analyse import CSV_NAME, VIDEO_NAME, Limits, analyse
from vemo.serve.errors import ServeError
from vemo.serve.schema import ErrorBody, Health, JobStatus, PredictResult
from vemo.serve.upload import Media, receive_upload, sniff
from vemo.serve.worker import Job, JobQueue, JobStore

log = logging.getLogger("vemo.serve")
STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """What the server accepts and how much work it takes on; the defaults suit one user on a laptop."""

    max_upload_mb: float = 200.0  # larger uploads: 413
    max_seconds: float = 600.0  # longer videos: 422
    time_limit_s: float = 300.0  # one analysis running longer: 504
    workers: int = 1  # analyses at once (each uses all cores through PyTorch)
    queue_size: int = 4  # analyses waiting; more: 503 with Retry-After
    keep_jobs: int = 16  # finished jobs whose results and downloads are kept
    window_s: float = 2.0
    hop_s: float = 0.5
    face_settings: Mapping[str, Any] = field(default_factory=dict)  # as predict's --set prepare.KEY=VALUE

    def __post_init__(self) -> None:
        positive = {"max-upload-mb": self.max_upload_mb, "max-seconds": self.max_seconds,
                    "time-limit": self.time_limit_s, "window": self.window_s, "hop": self.hop_s}  # fmt: skip
        for name, value in positive.items():
            if not value > 0:  # NaN too
                raise ValueError(f"--{name} must be a positive number (got {value})")
        if self.workers < 1 or self.queue_size < 0 or self.keep_jobs < 1:
            raise ValueError(f"need --workers >= 1 and --queue >= 0 (got {self.workers}, {self.queue_size})")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    def limits(self) -> Limits:
        return Limits(self.window_s, self.hop_s, self.max_seconds, self.time_limit_s)


class Server:
    """What the routes share: the model, the bounded queue, the jobs in a private temporary folder."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, root: Path):
        self.predictor, self.settings, self.root = predictor, settings, root
        self.queue = JobQueue(settings.workers, settings.queue_size)
        self.jobs = JobStore(root, settings.keep_jobs)

    async def submit(self, request: Request, annotate: bool) -> Job:
        """Reserve a queue place (503 when none), receive and sniff the upload, queue its analysis."""
        slot = self.queue.reserve()
        job = self.jobs.create()
        try:
            upload = await receive_upload(request, job.folder, self.settings.max_upload_bytes)
            media = await run_in_threadpool(sniff, upload, self.settings.max_seconds)
        except BaseException:
            slot.release()
            self.jobs.discard(job)  # deletes the partial upload with the job's folder
            raise
        job.future = self.queue.submit(slot, self._run, job, upload, media, annotate)
        return job

    def _run(self, job: Job, upload: Path, media: Media, annotate: bool) -> None:
        """The job, in a worker thread. Every outcome ends in job.result or job.error; the upload is deleted."""
        job.state = "running"
        try:
            result = analyse(upload, media, self.predictor, job.folder, annotate, self.settings.limits(), job.report)
            result["links"] = self._links(job)
            job.result, job.progress, job.state = result, 1.0, "done"
        except Exception as err:  # any failure becomes the job's error, reported to its client
            job.error = self._as_serve_error(err)
            job.state = "failed"
            shutil.rmtree(job.folder, ignore_errors=True)
        finally:
            upload.unlink(missing_ok=True)

    @staticmethod
    def _as_serve_error(err: Exception) -> ServeError:
        if isinstance(err, ServeError):
            return err
        if isinstance(err, ClipError):  # the pipeline's reasons: too short, corrupt, ...
            return ServeError(422, err.kind.replace("-", "_"), f"the video cannot be used: {err}")
        log.exception("analysis failed", exc_info=err)
        return ServeError(500, "internal", "the analysis failed unexpectedly; the server's log has the details")

    def _links(self, job: Job) -> dict:
        base = f"/api/jobs/{job.id}"
        video = f"{base}/{VIDEO_NAME}" if (job.folder / VIDEO_NAME).exists() else None
        return {"csv": f"{base}/{CSV_NAME}", "video": video}

    def health(self) -> dict:
        s = self.settings
        return {
            "status": "ok",
            "version": __version__,
            "labels": self.predictor.labels,
            "window_s": s.window_s,
            "hop_s": s.hop_s,
            "face": {name: getattr(self.predictor.prepare, name) for name in FACE_SETTINGS},
            "max_upload_mb": s.max_upload_mb,
            "max_seconds": s.max_seconds,
            "workers": s.workers,
            "queue_size": s.queue_size,
            "busy": self.queue.busy(),
        }

    def close(self) -> None:
        self.queue.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


def _server(request: Request) -> Server:
    return request.app.state.server


ServerDep = Annotated[Server, Depends(_server)]
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="the id POST /api/jobs returned")]
ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "not a multipart form with a non-empty field `file`",
        413: "the file is larger than the server's limit (--max-upload-mb, default 200 MB)",
        415: "the content is neither a video nor an image (decided from the bytes, not the file name)",
        422: "a video or image that cannot be used: undecodable, too long (--max-seconds), no face found",
        503: "every worker and queue place is taken; the Retry-After header says when to try again",
        504: "the analysis ran past the server's time limit (--time-limit)",
    }.items()
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "a video or image"}},
                }
            }
        },
    }
}
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/api/health", response_model=Health)
async def health(server: ServerDep) -> dict:
    """The server is up; its model's classes, its limits and how busy it is."""
    return server.health()


@router.post("/api/predict", response_model=PredictResult, responses=ERRORS, openapi_extra=UPLOAD_BODY)
async def predict(request: Request, server: ServerDep, annotate: bool = False) -> dict:
    """Analyse one video or image (multipart field `file`) and answer with its emotions over time.

    `annotate=true` also writes a video with the face box and label drawn on it (link in `links.video`).
    The upload is deleted once analysed; the CSV (and video) stay downloadable for the last jobs.
    """
    job = await server.submit(request, annotate)
    await asyncio.wrap_future(job.future)
    if job.error is not None:
        raise job.error
    return job.result


@router.post("/api/jobs", status_code=202, response_model=JobStatus, responses=ERRORS, openapi_extra=UPLOAD_BODY)
async def start_job(request: Request, server: ServerDep, annotate: bool = True) -> dict:
    """Upload a video or image and return at once with a job id; poll GET /api/jobs/{id} for progress and
    the result. Upload errors (400, 413, 415, 422 for too long, 503) are answered here; analysis errors
    appear in the job's `error`."""
    return (await server.submit(request, annotate)).status()


@router.get("/api/jobs/{job_id}", response_model=JobStatus, responses={404: {"model": ErrorBody}})
async def job_status(job_id: JobId, server: ServerDep) -> dict:
    """A job's state and progress; its result once done, its error if it failed."""
    return server.jobs.get(job_id).status()


@router.get(f"/api/jobs/{{job_id}}/{CSV_NAME}", response_class=FileResponse, responses={404: {"model": ErrorBody}})
async def download_csv(job_id: JobId, server: ServerDep) -> FileResponse:
    """The job's windows as CSV: start, end, label, confidence, raw and smoothed probabilities."""
    return FileResponse(_output(server, job_id, CSV_NAME), media_type="text/csv", filename="vemo-windows.csv")


@router.get(f"/api/jobs/{{job_id}}/{VIDEO_NAME}", response_class=FileResponse, responses={404: {"model": ErrorBody}})
async def download_video(job_id: JobId, server: ServerDep) -> FileResponse:
    """The annotated video (H.264 MP4), for jobs started with annotate=true."""
    return FileResponse(_output(server, job_id, VIDEO_NAME), media_type="video/mp4", filename="vemo-annotated.mp4")


def _output(server: Server, job_id: str, name: str) -> Path:
    job = server.jobs.get(job_id)
    if job.state != "done":
        raise ServeError(409, "not_done", f"job {job_id} is {job.state}; its files exist once it is done")
    path = job.folder / name
    if not path.exists():
        raise ServeError(404, "no_file", f"job {job_id} has no {name} (an annotated video needs annotate=true)")
    return path


async def _serve_error(request: Request, err: ServeError) -> JSONResponse:
    return JSONResponse(err.body(), err.status, headers=err.headers)


async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
    return JSONResponse({"error": "bad_request", "detail": where}, 400)  # the request's own fault, as README says


async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": f"http_{err.status_code}", "detail": str(err.detail)}, err.status_code)


def create_app(checkpoint: str | Path = "default", settings: ServeSettings | None = None) -> FastAPI:
    """The app for one model. Loads the checkpoint now (a bad one fails here, not at the first upload) and
    makes a private temporary folder for uploads and outputs, removed when the app shuts down."""
    settings = settings or ServeSettings()
    root = Path(tempfile.mkdtemp(prefix="vemo-serve-"))  # mode 0700: other users cannot read uploads
    try:
        server = Server(Predictor(checkpoint, preprocessing=settings.face_settings), settings, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.close()

    app = FastAPIOffline(
        title="vemo",
        version=__version__,
        description="Emotions over time in a video or image: upload it, get a label per window.",
        lifespan=lifespan,
    )
    app.state.server = server
    weakref.finalize(app, shutil.rmtree, root, True)  # also when the lifespan never ran
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


def serve(
    checkpoint: str | Path = "default",
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    say=print,
) -> None:
    """Run the app with uvicorn until Ctrl-C."""
    import uvicorn

    app = create_app(checkpoint, settings)
    if host not in LOOPBACK:
        say(f"vemo serve: warning: listening on {host}: anyone who can reach this machine can upload (no login)")
    shown = "localhost" if host in LOOPBACK else host
    say(f"vemo serve: open http://{shown}:{port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning")
