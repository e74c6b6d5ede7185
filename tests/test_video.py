import numpy as np
import pytest

from conftest import write_video
from vemo.data.sources.video import ClipError, decode_gray, sample_indices


def test_sample_indices_uniform_and_padded():
    assert sample_indices(160, 16).tolist() == list(range(5, 160, 10))
    idx = sample_indices(66, 16)
    assert len(idx) == 16 and idx[0] >= 0 and idx[-1] <= 65 and (np.diff(idx) > 0).all()
    short = sample_indices(5, 16)  # shorter than T: frames repeat, order is kept
    assert len(short) == 16 and set(short.tolist()) == set(range(5)) and (np.diff(short) >= 0).all()
    with pytest.raises(ValueError):
        sample_indices(0, 16)


def test_decode_gray_returns_luma(tmp_path):
    frames = [np.full((48, 64), v, np.uint8) for v in (40, 120, 200)]
    out = decode_gray(write_video(tmp_path / "c.mp4", frames))
    assert len(out) == 3 and out[0].shape == (48, 64) and out[0].dtype == np.uint8
    assert [int(np.median(f)) for f in out] == pytest.approx([40, 120, 200], abs=6)


def test_lfs_pointer_is_named(tmp_path):
    p = tmp_path / "1001_DFA_ANG_XX.flv"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123456\n")
    with pytest.raises(ClipError, match="git lfs pull") as err:
        decode_gray(p)
    assert err.value.kind == "lfs-pointer"


@pytest.mark.parametrize(
    "content, kind", [(b"", "empty"), (b"\x00\x01garbage" * 50, "corrupt")], ids=["empty", "garbage"]
)
def test_bad_files_get_reasons(tmp_path, content, kind):
    p = tmp_path / "x.flv"
    p.write_bytes(content)
    with pytest.raises(ClipError) as err:
        decode_gray(p)
    assert err.value.kind == kind and str(err.value)


def test_one_frame_video_is_refused(tmp_path):
    p = write_video(tmp_path / "one.mp4", [np.zeros((32, 32), np.uint8)])
    with pytest.raises(ClipError, match="too short") as err:
        decode_gray(p)
    assert err.value.kind == "too-short"


def _cut(tmp_path, ext: str, codec: str):
    """A 20-frame video of noise in container `ext`, cut to its first third (a download that stopped)."""
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64), dtype=np.uint8) for i in range(20)]
    p = write_video(tmp_path / f"full.{ext}", frames, codec=codec)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    return cut


@pytest.mark.parametrize("ext,codec", [("flv", "flv"), ("mkv", "mpeg4")])
def test_truncated_streamable_video_keeps_the_frames_before_the_cut(tmp_path, ext, codec):
    # FLV (CREMA-D's container) and Matroska are written front to back: what arrived still decodes
    out = decode_gray(_cut(tmp_path, ext, codec))
    assert 2 <= len(out) < 20 and out[0].shape == (48, 64)


def test_truncated_mp4_without_its_index_fails_clearly(tmp_path):
    # an MP4 written in one pass keeps its index (moov) at the end: cut, nothing can be located
    cut = _cut(tmp_path, "mp4", "mpeg4")
    with pytest.raises(ClipError, match="cut.mp4") as err:
        decode_gray(cut)
    assert err.value.kind == "corrupt"
