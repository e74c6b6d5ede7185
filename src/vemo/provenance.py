"""What a run needs to be reproduced and its numbers trusted: versions, machine, command, data hash."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

from vemo import __version__


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(module: str) -> str | None:
    """A package's version, None when it is not installed (PyAV is needed for video only: a stills run
    on a machine without it records that rather than failing)."""
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def environment(data_manifest: str | Path | None = None) -> dict:
    import cv2
    import numpy
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "vemo": __version__,
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "av": _version("av"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,  # which card gave a GPU run's figures
        "allocator_preload": os.environ.get("LD_PRELOAD", ""),
        "data_manifest_sha256": file_sha256(data_manifest) if data_manifest else None,
    }
