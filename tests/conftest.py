"""Shared fixtures. Tests needing the real data in ../shared skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import settings

from vemo.config import SynthConfig

# `make test` (and CI) draws the same property-test examples every run, so a failure there is never a
# one-off; `HYPOTHESIS_PROFILE=explore make test` draws fresh random examples to look for new ones.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VEMO_SHARED_DATA", REPO.parent / "shared" / "data"))
CREMA_SAMPLE = SHARED / "crema-d-sample"


@pytest.fixture(scope="session")
def crema_sample() -> Path:
    if not (CREMA_SAMPLE / "VideoFlash").is_dir():
        pytest.skip(f"real CREMA-D sample not available at {CREMA_SAMPLE}")
    return CREMA_SAMPLE


def tiny_synth_config(**kw) -> SynthConfig:
    base = dict(n_actors=4, sentences=["IEO"], levels=["HI"], width=96, height=72, fps=10.0, seconds=1.2, seed=3)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """4 actors x 6 emotions x 1 sentence x 1 level = 24 short synthetic clips."""
    from vemo.data.synth.dataset import synthesize

    root = tmp_path_factory.mktemp("synth")
    synthesize(root, tiny_synth_config(), workers=1, progress=False)
    return root


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> Path:
    """Write grayscale or RGB uint8 frames as a small video file."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            rgb = np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
