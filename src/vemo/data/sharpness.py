"""Matching input sharpness to the training data: blur inputs that are sharper than what the model saw.

Why: a model trained only on blurred faces has never seen fine detail, and sharp inputs put it out
of its domain. The FER2013 training images available to this project are heavily blurred (median
variance of the Laplacian ~6, against ~2,150 for the PublicTest images), so a model trained on them
scores near chance on sharp faces; blurring each sharp input down to the training sharpness brings it
back into the domain it learned. The training sharpness travels with the checkpoint
(`stats["sharpness"]`); evaluation and prediction apply the matching whenever it is there.

Per clip: the variance of the Laplacian of the middle frame measures sharpness; if it is above 1.5x
the training median, the Gaussian blur from a fixed grid of sigmas whose result comes closest (in log)
to the training median is applied to every frame of the clip.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

SIGMAS = np.arange(0.25, 4.01, 0.25)
TOLERANCE = 1.5


def laplacian_var(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(frame.astype(np.float32), cv2.CV_32F).var())


def sharpness_of(x: torch.Tensor, limit: int = 2000) -> float:
    """Median sharpness of the middle frames of up to `limit` (N, T, S, S) uint8 clips."""
    pick = np.linspace(0, len(x) - 1, min(limit, len(x))).astype(int)
    mid = x.shape[1] // 2
    return float(np.median([laplacian_var(x[i, mid].numpy()) for i in pick]))


def _blur(frame: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def match_sharpness(x: torch.Tensor, target: float) -> torch.Tensor:
    """(N, T, S, S) uint8 clips, each blurred (if sharper than the training data) to `target` sharpness."""
    out = x.numpy().copy()
    mid = x.shape[1] // 2
    for i in range(len(out)):
        current = laplacian_var(out[i, mid])
        if current <= TOLERANCE * target:
            continue
        errors = [abs(np.log(laplacian_var(_blur(out[i, mid], s)) + 1e-6) - np.log(target + 1e-6)) for s in SIGMAS]
        sigma = float(SIGMAS[int(np.argmin(errors))])
        for t in range(out.shape[1]):
            out[i, t] = _blur(out[i, t], sigma)
    return torch.from_numpy(out)
