"""Per-frame CNN encoders: (N, 1, S, S) grayscale frames -> (N, feature_dim) vectors.

Each encoder is one `nn.Sequential` of named parts, as torchvision's ResNet names its layers:
`pool` (input average-pool, an identity when off), `stem` (ResNet only), `stage1`..`stageN`, `head`.
Weight names therefore read like the architecture (`encoder.stage3.1.0.weight`) and do not shift when
an option such as `input_pool` is switched. Encoders are registered by name with keyword arguments
(timm style), so any CNN-based variant can swap them (`model.encoder=resnet`).
"""

from __future__ import annotations

from collections import OrderedDict
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


def _input_pool(factor: int) -> nn.Module:
    """Average-pool the frame by `factor` before any convolution (an identity when factor is 1).

    Why: a 3x3 conv at full resolution is where most of a small encoder's compute goes, and it buys
    nothing on frames without detail at that scale (heavily compressed or upscaled video). Off by default.
    """
    if factor < 1:
        raise ValueError(f"model.input_pool must be at least 1, not {factor}")
    return nn.AvgPool2d(factor) if factor > 1 else nn.Identity()


@register_encoder("small_cnn")
def small_cnn(width: int = 24, feature_dim: int = 128, dropout: float = 0.0, input_pool: int = 1) -> nn.Module:
    """VGG-style: four stages of two 3x3 conv-BN-ReLU + 2x2 max-pool, widths w, 2w, 4w, 8w.

    48x48 -> 3x3 after the four stages, then global average pool and a dense layer: the design known to
    work on FER2013 from scratch, small enough at w=16-32 to train on two CPU cores.
    """
    parts: list[tuple[str, nn.Module]] = [("pool", _input_pool(input_pool))]
    cin = 1
    for i in range(4):
        parts.append((f"stage{i + 1}", ConvStage(cin, width * 2**i)))
        cin = width * 2**i
    parts.append(("head", _head(cin, feature_dim, dropout)))
    return nn.Sequential(OrderedDict(parts))


@register_encoder("resnet")
def resnet(
    width: int = 32, feature_dim: int = 128, dropout: float = 0.0, depth: tuple = (2, 2, 2, 2), input_pool: int = 1
) -> nn.Module:
    """ResNet-18-style encoder for small faces: 3x3 stem without max-pool, four stages of basic blocks.

    The ImageNet stem (7x7 stride 2 + max-pool) would shrink a 48x48 face to 12x12 before any
    residual stage, so it is replaced by a single stride-1 3x3 conv.
    """
    parts: list[tuple[str, nn.Module]] = [("pool", _input_pool(input_pool)), ("stem", conv_bn_relu(1, width))]
    cin = width
    for stage, blocks in enumerate(depth):
        cout = width * 2**stage
        layers = []
        for b in range(blocks):
            layers.append(BasicBlock(cin, cout, stride=2 if (b == 0 and stage > 0) else 1))
            cin = cout
        parts.append((f"stage{stage + 1}", nn.Sequential(*layers)))
    parts.append(("head", _head(cin, feature_dim, dropout)))
    return nn.Sequential(OrderedDict(parts))


def build_encoder(name: str, **kwargs) -> nn.Module:
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}") from None
    return factory(**kwargs)
