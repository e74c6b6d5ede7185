"""Per-frame CNN encoders: (N, 1, S, S) grayscale frames -> (N, feature_dim) vectors.

Encoders are registered by name so any CNN-based variant can swap them (`model.encoder=resnet`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vemo.models.blocks import BasicBlock, ConvStage, conv_bn_relu

ENCODERS: dict[str, Callable[..., nn.Module]] = {}


def register_encoder(name: str):
    def wrap(fn):
        ENCODERS[name] = fn
        return fn

    return wrap


def _head(channels: int, feature_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels, feature_dim),
        nn.ReLU(),
    )


def _input_pool(factor: int) -> list[nn.Module]:
    """Average-pool the frame by `factor` before any convolution (nothing when factor is 1).

    Why: a 3x3 conv at full resolution is where most of a small encoder's compute goes, and it buys
    nothing when the frames carry no detail at that scale. FER2013's training images here are blurred
    (sigma ~2.75 px, `vemo.data.sharpness`): almost nothing is left above 1/6 cycle per pixel, so
    48x48 -> 16x16 loses nearly no information and cuts the convolutions' cost ~9x.
    """
    if factor < 1:
        raise ValueError(f"model.input_pool must be at least 1, not {factor}")
    return [nn.AvgPool2d(factor)] if factor > 1 else []


@register_encoder("small_cnn")
def small_cnn(width: int = 24, feature_dim: int = 128, dropout: float = 0.0, input_pool: int = 1) -> nn.Module:
    """Four conv stages (VGG-like), widths w, 2w, 4w, 8w: 48x48 -> 3x3, then pooled to a vector.

    Small enough (~0.5M parameters at w=24) to train at hundreds of frames/s on two CPU cores.
    """
    w = width
    return nn.Sequential(
        *_input_pool(input_pool),
        ConvStage(1, w),
        ConvStage(w, 2 * w),
        ConvStage(2 * w, 4 * w),
        ConvStage(4 * w, 8 * w),
        _head(8 * w, feature_dim, dropout),
    )


@register_encoder("resnet")
def resnet(
    width: int = 32, feature_dim: int = 128, dropout: float = 0.0, depth: tuple = (2, 2, 2, 2), input_pool: int = 1
) -> nn.Module:
    """ResNet-18-style encoder for small faces: 3x3 stem without max-pool, four stages of basic blocks.

    The ImageNet stem (7x7 stride 2 + max-pool) would shrink a 48x48 face to 12x12 before any
    residual stage, so it is replaced by a single stride-1 3x3 conv.
    """
    layers: list[nn.Module] = [*_input_pool(input_pool), conv_bn_relu(1, width)]
    cin = width
    for stage, blocks in enumerate(depth):
        cout = width * 2**stage
        for b in range(blocks):
            layers.append(BasicBlock(cin, cout, stride=2 if (b == 0 and stage > 0) else 1))
            cin = cout
    layers.append(_head(cin, feature_dim, dropout))
    return nn.Sequential(*layers)


def build_encoder(name: str, **kwargs) -> nn.Module:
    try:
        return ENCODERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}") from None
