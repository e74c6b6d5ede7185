"""Property-based fuzzing of the input side: whatever bytes or CSV rows come in, prepare goes on and says why.

Each property runs a few dozen examples in fresh temporary folders (prepare with one worker, its cache
inside the example's folder), so the file stays well under a minute.
"""

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import CREMA_SAMPLE, write_video
from vemo.config import PrepareConfig
from vemo.data.loading.prepare import prepare
from vemo.data.sources.fer2013 import read_fer2013
from vemo.data.sources.video import LFS_MAGIC, ClipError, decode_gray

FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # no example database written into the repository
)
QUIET = dict(progress=False, log=lambda *_: None)


def _clip(n: int = 12, side: int = 32, seed: int = 0) -> list[np.ndarray]:
    base = np.random.default_rng(seed).integers(40, 200, (side, side), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


@pytest.fixture(scope="module")
def good_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("good") / "good.mp4", _clip())


@pytest.fixture(scope="module")
def real_clips(good_video, tiny_synth) -> list[Path]:
    """Clips to truncate: an MPEG-4 in MP4, a synthetic VP6-in-FLV like CREMA-D's, a real one if present."""
    clips = [good_video, sorted((tiny_synth / "VideoFlash").glob("*.flv"))[0]]
    return clips + sorted((CREMA_SAMPLE / "VideoFlash").glob("*.flv"))[:1]


# Junk: plain random bytes, or random bytes behind a real container signature (FLV, MP4, Git LFS),
# which takes FFmpeg past format probing into the demuxers.
SIGNATURES = [b"", b"FLV\x01\x05\x00\x00\x00\x09", b"\x00\x00\x00\x18ftypmp42", LFS_MAGIC]
junk = st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=3000)).map(lambda p: p[0] + p[1])


@FUZZ
@given(
    files=st.lists(st.tuples(junk, st.sampled_from([".mp4", ".flv"]), st.sampled_from(["happy", "sad"])), max_size=4)
)
@example(files=[(b"", ".mp4", "sad"), (LFS_MAGIC + b" oid sha256:0\n", ".flv", "happy")])
def test_junk_video_files_are_skipped_with_reasons(good_video, files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        (root / "happy").mkdir(parents=True)
        (root / "happy" / "good.mp4").write_bytes(good_video.read_bytes())
        bad = []
        for k, (data, ext, label) in enumerate(files):
            path = root / label / f"bad{k}{ext}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            bad.append(str(path))
        cfg = PrepareConfig(dataset="folder", root=str(root), cache_dir=f"{tmp}/cache", frames=10, workers=1)
        prepared = prepare(cfg, **QUIET)
        assert [it["source"] for it in prepared.items] == [str(root / "happy" / "good.mp4")]
        skipped = {s["source"]: s for s in prepared.manifest["skipped"]}
        assert sorted(skipped) == sorted(bad)
        assert all(s["reason"].strip() and s["kind"] for s in skipped.values())
        # recognised as not a video (empty, LFS pointer, corrupt, ...), not an accident that happened to be caught
        assert not [s for s in skipped.values() if s["kind"] == "error"]
        assert prepared.frames().shape == (1, 10, 48, 48)


@FUZZ
@given(data=st.data())
def test_truncated_clips_decode_or_raise_clip_error(real_clips, data):
    source = data.draw(st.sampled_from(real_clips), label="clip")
    blob = source.read_bytes()
    size = data.draw(st.integers(0, len(blob)), label="kept bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cut{source.suffix}"
        path.write_bytes(blob[:size])
        try:
            frames = decode_gray(path)
        except ClipError as err:  # one of the reasons a cut file can have, said in words
            assert str(err) and err.kind in {"empty", "corrupt", "too-short", "truncated"}
        else:
            assert len(frames) >= 2
            assert all(f.dtype == np.uint8 and f.ndim == 2 and f.shape == frames[0].shape for f in frames)


square_sides = st.sampled_from([1, 2, 3, 7, 10])  # squares that are not FER2013's 48x48: damaged rows
# Pixel values: in range, a little or far outside it, and tokens that are not plain integers.
TRICKY = ["-1", "256", "1e3", "2.5", "0x1f", "+7", "\u0663", "99999999999999999999", "nan", ""]
tokens = st.one_of(st.integers(0, 255).map(str), st.integers(-300, 600).map(str), st.sampled_from(TRICKY))


def _image(first: str, rest: int = 7) -> str:
    """A 48x48 row of pixels whose first value is `first` (possibly not a valid pixel)."""
    return " ".join([first] + [str(rest)] * 2303)


# Pixel strings: 48x48 rows with any first token, other squares, wrong counts, arbitrary text.
pixels = (
    st.tuples(tokens, st.integers(0, 255)).map(lambda t: _image(*t))
    | st.one_of(
        square_sides.flatmap(lambda s: st.lists(st.integers(0, 255).map(str), min_size=s * s, max_size=s * s)),
        square_sides.flatmap(lambda s: st.lists(tokens, min_size=s * s, max_size=s * s)),
        st.lists(tokens, max_size=12),
    ).map(" ".join)
    | st.text(max_size=30)
)
emotions = st.one_of(st.integers(-2, 9).map(str), st.text(max_size=4))
usages = st.one_of(st.sampled_from(["Training", "PublicTest", "PrivateTest", "", " training "]), st.text(max_size=12))
rows = st.lists(
    st.tuples(emotions, pixels, usages).flatmap(lambda r: st.integers(1, 4).map(lambda n: (list(r) + ["extra"])[:n])),
    max_size=12,
)
GOOD_ROW = ["3", _image("0", 128), "Training"]  # a happy face: at least one record always prepares


# Known hazards, always tried: a value too large for int64, out-of-range and non-integer values, a digit
# str.isdigit accepts but int() refuses, a non-ASCII digit int() accepts, short and empty rows, an
# unknown Usage, a 10x10 row, an unclosed quote and a field with a line break (each line is a record:
# neither may swallow the lines after it), and a copy of the good row in the test split (the leakage
# guard drops it with dedupe).
HAZARDS = [
    ["3", _image("99999999999999999999"), "Training"],
    ["3", _image("-1"), "PublicTest"],
    ["0", _image("1e3"), "PrivateTest"],
    ["\u00b2", _image("1"), "Training"],
    ["\u0663", _image("1"), ""],
    ["3", "", "Training"],
    ["3"],
    [],
    ["3", _image("1"), "Validation"],
    ["3", " ".join(["9"] * 100), "Training"],
    ['3"', _image("1"), "Training"],
    ["3", "1 2\n3 4", "Training"],
    ["3", _image("0", 128), "PublicTest"],
]


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


@FUZZ
@given(rows=rows, at=st.integers(0, 13), dedupe=st.booleans())
@example(rows=HAZARDS, at=4, dedupe=True)
@example(rows=HAZARDS, at=0, dedupe=False)
def test_random_csv_rows_become_records_or_reasons(rows, at, dedupe):
    """Every line of the CSV after its header becomes a record or a skipped row with a reason."""
    at = min(at, len(rows))
    rows = rows[:at] + [GOOD_ROW] + rows[at:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fer2013.csv"
        text = _csv_text([["emotion", "pixels", "Usage"], *rows])
        path.write_text(text)
        lines = text.count("\n") - 1  # after the header; a quoted line break makes two lines
        good = _csv_text([["emotion", "pixels", "Usage"], *rows[:at]]).count("\n")  # the good row's number
        sources = {f"{path}#row{n}" for n in range(1, lines + 1)}
        records, skipped, _ = read_fer2013(path)
        assert len(records) + len(skipped) == lines
        assert {r.source for r in records} | {s.source for s in skipped} == sources
        assert all(s.reason for s in skipped)
        cfg = PrepareConfig(dataset="fer2013", root=str(path), cache_dir=f"{tmp}/cache", workers=1, dedupe=dedupe)
        prepared = prepare(cfg, **QUIET)
        done = [it["source"] for it in prepared.items]
        dropped = [s["source"] for s in prepared.manifest["skipped"]]
        assert len(done) + len(dropped) == lines and set(done) | set(dropped) == sources
        assert f"{path}#row{good}" in done
        assert all(s["reason"] for s in prepared.manifest["skipped"])
        assert prepared.frames().shape == (len(done), 1, 48, 48)
