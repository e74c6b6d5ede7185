import numpy as np
import pytest

from vemo.config import PrepareConfig
from vemo.data.loading.prepare import process_clip
from vemo.data.preprocessing.face import center_box, crop_square, track_faces


def test_crop_square_size_and_padding():
    img = np.arange(100 * 80, dtype=np.uint32).reshape(80, 100).astype(np.uint8)
    assert crop_square(img, np.array([10, 10, 30, 30]), 48, 0.2).shape == (48, 48)
    # a box hanging off the top-left corner is padded by edge replication, not clipped or shifted
    out = crop_square(np.pad(np.full((60, 60), 200, np.uint8), 20), np.array([-20, -20, 40, 40]), 40, 0.0)
    assert out.shape == (40, 40) and out[0, 0] == 0


def test_blank_frames_fall_back_to_centre_crop():
    frames = [np.full((120, 160), 128, np.uint8)] * 5
    track = track_faces(frames, "haar", detect_frames=3)
    assert not track.detected
    assert np.allclose(track.boxes, center_box((120, 160)))


def test_unknown_face_method():
    with pytest.raises(ValueError, match="unknown face method"):
        track_faces([np.zeros((10, 10), np.uint8)], "yolo")


def test_face_found_in_all_real_crema_d_clips(crema_sample):
    clips = sorted((crema_sample / "VideoFlash").glob("*.flv"))
    assert len(clips) == 6
    for clip in clips:
        frames, info = process_clip(str(clip), PrepareConfig())
        assert info["face_detected"] is True, f"no face found in {clip.name}"
        assert frames.shape == (16, 48, 48)
        # a face crop has structure: not a flat patch of wall
        assert frames.std() > 20
