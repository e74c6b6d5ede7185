"""The synthetic dataset: CREMA-D layout, real decodable videos, determinism, and expressions that matter."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import av
import numpy as np
import pytest

from vemo.config import EMOTIONS, SynthConfig
from vemo.data.synth.dataset import synthesize
from vemo.data.synth.params import actor_identity, apex_frame, clip_name, clip_params, envelope
from vemo.data.synth.render import head_point, render_clip, render_params

NAME = re.compile(r"^\d{4}_[A-Z]{3}_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)\.flv$")


def tiny(**kw) -> SynthConfig:
    base = dict(n_actors=2, sentences=["IEO"], levels=["LO", "HI"], width=64, height=48, fps=8.0, seconds=1.0)
    base.update(kw)
    return SynthConfig(**base)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize(out, tiny(), workers=1, progress=False)


def test_clip_name() -> None:
    assert clip_name(1001, "IEO", "ANG", "HI") == "1001_IEO_ANG_HI.flv"
    assert clip_name(7, "DFA", "NEU", "XX") == "0007_DFA_NEU_XX.flv"


def test_layout_names_and_decoding(dataset) -> None:
    out, paths = dataset
    cfg = tiny()
    assert len(paths) == 2 * 1 * len(EMOTIONS) * 2 and paths == sorted(paths)
    assert all(p.parent == out / "VideoFlash" and NAME.match(p.name) for p in paths)
    expected = {clip_name(a, "IEO", e, v) for a in (1001, 1002) for e in EMOTIONS for v in ("LO", "HI")}
    assert {p.name for p in paths} == expected
    for p in paths[:: len(paths) // 4]:
        frames = decode(p)
        assert frames.shape == (8, cfg.height, cfg.width, 3) and frames.dtype == np.uint8
    with av.open(str(paths[0])) as container:
        assert container.format.name == "flv" and container.streams.video[0].codec_context.name == "flv"


def test_metadata_files(dataset) -> None:
    out, _ = dataset
    rows = list(csv.reader((out / "VideoDemographics.csv").open()))
    assert rows[0] == ["ActorID", "Age", "Sex", "Race", "Ethnicity"]
    assert [r[0] for r in rows[1:]] == ["1001", "1002"]
    assert all(r[2] in ("Male", "Female") and 18 <= int(r[1]) <= 90 for r in rows[1:])
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"] == asdict(tiny())


def test_no_leftover_temp_files(dataset) -> None:
    out, paths = dataset
    assert sorted((out / "VideoFlash").iterdir()) == paths
    assert sorted(p.name for p in out.iterdir()) == ["VideoDemographics.csv", "VideoFlash", "synth.json"]


def test_render_is_deterministic_per_seed() -> None:
    cfg = tiny()
    a = render_clip(cfg, 1001, "IEO", "HAP", "HI")
    assert a.shape == (8, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_clip(cfg, 1001, "IEO", "HAP", "HI"))
    other = render_clip(replace(cfg, seed=1), 1001, "IEO", "HAP", "HI")
    assert np.abs(a.astype(int) - other).mean() > 5
    assert not np.array_equal(a, render_clip(cfg, 1001, "IEO", "HAP", "LO"))


def test_synthesize_is_reproducible_across_runs_and_workers(dataset, tmp_path) -> None:
    _, paths = dataset
    again = synthesize(tmp_path, tiny(), workers=2, progress=False)
    assert [p.name for p in again] == [p.name for p in paths]
    for a, b in zip(paths, again, strict=True):
        assert np.array_equal(decode(a), decode(b)), a.name


def test_resume_keeps_clips_and_config_change_rerenders(tmp_path) -> None:
    cfg = tiny(n_actors=1, levels=["HI"])
    paths = synthesize(tmp_path, cfg, workers=1, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    paths[0].unlink()  # as if an earlier run was interrupted before this clip
    (tmp_path / "VideoFlash" / "1001_IEO_ANG_HI.tmp.flv").write_bytes(b"half a file")
    assert synthesize(tmp_path, cfg, workers=1, progress=False) == paths
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths[1:])
    assert paths[0].exists() and not list(tmp_path.rglob("*.tmp*"))
    # a different config never mixes with the old clips: all are re-rendered, stale ones removed
    new = synthesize(tmp_path, replace(cfg, seed=5, levels=["LO"]), workers=1, progress=False)
    assert sorted((tmp_path / "VideoFlash").iterdir()) == new
    assert all(p.name.endswith("_LO.flv") for p in new)


def _window(img: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    x, y = np.round(centre).astype(int)
    return img[max(0, y - half) : y + half, max(0, x - half) : x + half].astype(np.float64)


def test_expression_changes_the_face_and_nothing_else() -> None:
    """Render a clip, and the same clip with the emotion's AU amplitudes set to zero: identical nuisance
    (identity, pose, light, noise, speech), so any difference is the expression alone."""
    cfg = tiny(width=160, height=120, fps=15.0, seconds=2.0)
    effects, params = {}, {}
    for emotion, level in [("HAP", "HI"), ("HAP", "LO"), ("SAD", "HI"), ("NEU", "HI")]:
        p = params[emotion, level] = clip_params(cfg, 1001, "IEO", emotion, level)
        frames = render_params(cfg, 1001, p)
        flat = render_params(cfg, 1001, replace(p, au=np.zeros_like(p.au)))
        apex = apex_frame(p)
        assert np.array_equal(frames[0], flat[0])  # before onset the face is at rest
        assert np.array_equal(frames[apex][:8, :8], flat[apex][:8, :8])  # background untouched
        mouth = head_point(p, apex, (0.0, actor_identity(cfg, 1001).mouth_y))
        brows = head_point(p, apex, (0.0, -0.3))
        half = round(0.35 * p.scale)
        diff = [np.abs(_window(frames[apex], c, half) - _window(flat[apex], c, half)) for c in (mouth, brows)]
        effects[emotion, level] = [d.mean() for d in diff]
    assert effects["NEU", "HI"] == [0.0, 0.0]  # neutral is the zero expression
    hap_mouth, hap_brows = effects["HAP", "HI"]
    sad_brows = effects["SAD", "HI"][1]
    assert hap_mouth > 3.0 and hap_mouth > 1.5 * hap_brows  # a smile is mostly in the lower face
    assert sad_brows > 1.5  # sadness raises the inner brows
    # low intensity is closer to neutral: weaker action units, smaller change of the mouth region
    assert params["HAP", "LO"].au.sum() < 0.7 * params["HAP", "HI"].au.sum()
    assert 0.5 < effects["HAP", "LO"][0] < hap_mouth


def test_dynamics_and_placement() -> None:
    cfg = tiny(n_actors=3, width=160, height=120, fps=15.0, seconds=2.0)
    for actor in range(1001, 1004):
        ps = {e: clip_params(cfg, actor, "IEO", e, "MD") for e in EMOTIONS}
        # anger and fear switch on fast, disgust and sadness slowly: a cue only a temporal model sees
        assert max(ps["ANG"].onset_len, ps["FEA"].onset_len) < min(ps["DIS"].onset_len, ps["SAD"].onset_len)
        for p in ps.values():
            assert envelope(p, 0.0) == 0.0 and 0.05 <= p.onset_start <= 0.25
            assert 0.45 <= 2 * p.scale / cfg.height <= 0.65
            for i in range(p.n_frames):
                x, y = head_point(p, i, (0.0, 0.0))
                assert abs(x / cfg.width - 0.5) <= 0.1 and abs(y / cfg.height - 0.5) <= 0.1


def test_rejects_unknown_codes(tmp_path) -> None:
    with pytest.raises(ValueError):
        render_clip(tiny(), 1001, "XYZ", "HAP", "HI")
    with pytest.raises(ValueError):
        render_clip(tiny(), 1001, "IEO", "SUR", "HI")
    with pytest.raises(ValueError, match="CREMA-D names"):
        synthesize(tmp_path, tiny(levels=["HI", "ZZ"]), workers=1, progress=False)
    assert not any(tmp_path.iterdir())  # nothing written before the config was checked
