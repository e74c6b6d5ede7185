"""Model variants by name (timm style): `build_model("cnn_ae_lstm", n_classes=7, width=32)`.

Each variant is a small function composing the same named parts; adding one is adding a function.
Keyword arguments are the fields of `ModelConfig` (unknown ones are a TypeError naming them);
`model_from_config` is the one adapter from a config section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from vemo.config import ModelConfig
from vemo.models.autoencoder import Bottleneck, FrameDecoder
from vemo.models.base import ClipModel
from vemo.models.c3d import C3D
from vemo.models.clip_model import FrameSequenceClassifier
from vemo.models.encoders import build_encoder
from vemo.models.temporal import LSTMHead

MODELS: dict[str, Callable[[ModelConfig, int, int], ClipModel]] = {}


def register_model(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn

    return wrap


def _encoder(cfg: ModelConfig) -> nn.Module:
    return build_encoder(cfg.encoder, width=cfg.width, feature_dim=cfg.feature_dim, input_pool=cfg.input_pool)


def _lstm(cfg: ModelConfig, in_dim: int, n_classes: int, attention: bool = False) -> LSTMHead:
    return LSTMHead(in_dim, cfg.hidden, n_classes, cfg.lstm_layers, cfg.bidirectional, cfg.dropout, attention)


@register_model("cnn_lstm")
def cnn_lstm(cfg: ModelConfig, n_classes: int, frame_size: int) -> ClipModel:
    """Frame CNN -> LSTM -> dense: the baseline the autoencoder is measured against."""
    return FrameSequenceClassifier(_encoder(cfg), _lstm(cfg, cfg.feature_dim, n_classes))


def _cnn_ae(cfg: ModelConfig, n_classes: int, frame_size: int, attention: bool) -> ClipModel:
    return FrameSequenceClassifier(
        _encoder(cfg),
        _lstm(cfg, cfg.bottleneck_dim, n_classes, attention),
        bottleneck=Bottleneck(cfg.feature_dim, cfg.bottleneck_dim),
        decoder=FrameDecoder(cfg.bottleneck_dim, frame_size),
    )


@register_model("cnn_ae_lstm")
def cnn_ae_lstm(cfg: ModelConfig, n_classes: int, frame_size: int) -> ClipModel:
    """Frame CNN -> denoising autoencoder bottleneck -> LSTM -> dense (vemo's main model)."""
    return _cnn_ae(cfg, n_classes, frame_size, attention=False)


@register_model("cnn_ae_lstm_attn")
def cnn_ae_lstm_attn(cfg: ModelConfig, n_classes: int, frame_size: int) -> ClipModel:
    """As cnn_ae_lstm, with soft attention over the LSTM outputs instead of the last step."""
    return _cnn_ae(cfg, n_classes, frame_size, attention=True)


@register_model("c3d")
def c3d(cfg: ModelConfig, n_classes: int, frame_size: int) -> ClipModel:
    """3D CNN over the whole clip (space and time together), no LSTM: the non-recurrent baseline.

    Half the 2D encoder's width: a 3x3x3 convolution costs 3x a 3x3 one at every frame, so at half width
    the 3D CNN needs fewer FLOPs per clip than the frame CNN + LSTM it is compared with.
    """
    return C3D(n_classes, width=max(4, cfg.width // 2), embed_dim=cfg.hidden, dropout=cfg.dropout)


def build_model(name: str, n_classes: int, frame_size: int = 48, **kwargs) -> ClipModel:
    """The variant `name` for `n_classes` classes and `frame_size`-pixel frames; `kwargs` override the
    `ModelConfig` defaults (encoder, width, feature_dim, bottleneck_dim, hidden, dropout, ...)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    cfg = ModelConfig(name=name, **kwargs)
    model = factory(cfg, n_classes, frame_size)
    model.flip_average = cfg.flip_average
    return model


def model_from_config(cfg: ModelConfig, n_classes: int, frame_size: int) -> ClipModel:
    """`build_model` with every setting taken from a config section."""
    return build_model(n_classes=n_classes, frame_size=frame_size, **asdict(cfg))


def to_channels_last(model: nn.Module) -> nn.Module:
    """The faster memory layout for CPU convolutions (bench/train_speed.py, bench/predict.py): channels-last
    for 2D convolutions, its 3D form for models with 3D convolutions (c3d)."""
    is_3d = any(isinstance(m, nn.Conv3d) for m in model.modules())
    return model.to(memory_format=torch.channels_last_3d if is_3d else torch.channels_last)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution in an `nn.Sequential` into that
    convolution's weights, in place, for inference (the model must be in eval mode).

    Why: in eval mode a batch norm is a fixed per-channel affine map, so conv + BN is one conv with
    rescaled weights and a bias; dropping the separate BN pass saves a memory-bound sweep over every
    feature map (bench/predict.py prints both). Every encoder keeps its convolution and batch norm together
    in one `nn.Sequential` (`blocks.conv_bn`), residual blocks included, so no batch norm is left after this.
    """
    if model.training:
        raise ValueError("fuse_conv_bn is for inference: call model.eval() first")
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.modules.conv._ConvNd) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                transpose = isinstance(conv, nn.modules.conv._ConvTransposeNd)  # the decoder's: weights (in, out, ...)
                module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn, transpose=transpose), nn.Identity()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_clip(model: nn.Module, frames: int, size: int) -> int:
    """Floating-point operations of one forward pass on one clip (multiply-add = 2), by PyTorch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, frames, size, size))
    model.train(was_training)
    return counter.get_total_flops()


def model_table(cfg: ModelConfig, frames: int, size: int, n_classes: int = 6) -> list[dict]:
    """One row per registered variant, built with `cfg`'s settings: name, parameters, FLOPs per clip and
    the first line of its docstring (what `vemo models` prints)."""
    rows = []
    for name, factory in sorted(MODELS.items()):
        model = model_from_config(ModelConfig(**{**asdict(cfg), "name": name}), n_classes, size)
        doc = (factory.__doc__ or "").strip().splitlines()[0]
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(model),
                "flops": flops_per_clip(model, frames, size),
                "description": doc,
            }
        )
    return rows
