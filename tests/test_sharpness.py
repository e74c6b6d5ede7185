"""Sharpness matching: sharp inputs are blurred to the training sharpness, matching ones are left alone."""

import cv2
import numpy as np
import torch

from vemo.data.loader import model_inputs, normalize
from vemo.data.sharpness import laplacian_var, match_sharpness, sharpness_of


def _clips(n=6, sigma=0.0, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 4, 48, 48)).astype(np.uint8)
    if sigma:
        frames = np.stack([[cv2.GaussianBlur(f, (0, 0), sigma) for f in clip] for clip in frames])
    return torch.from_numpy(frames)


def test_sharp_clips_are_blurred_to_the_target_and_blurred_ones_kept():
    blurred = _clips(sigma=2.5)
    target = sharpness_of(blurred)
    assert np.array_equal(match_sharpness(blurred, target).numpy(), blurred.numpy())  # already in domain
    sharp = _clips(seed=1)
    assert sharpness_of(sharp) > 50 * target
    matched = match_sharpness(sharp, target)
    after = [laplacian_var(c[2]) for c in matched.numpy()]
    assert all(target / 2 < a < target * 2 for a in after)  # within a factor 2 of the training sharpness


def test_model_inputs_match_only_when_the_checkpoint_records_sharpness():
    sharp = _clips(seed=2)
    stats = {"mean": 0.5, "std": 0.25}
    assert torch.equal(model_inputs(sharp, stats), normalize(sharp, stats))
    assert not torch.equal(model_inputs(sharp, {**stats, "sharpness": 5.0}), normalize(sharp, stats))
