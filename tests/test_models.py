import pytest
import torch
import torch.nn.functional as F

from vemo.config import ModelConfig
from vemo.models.registry import MODELS, build_model, fuse_conv_bn

VARIANTS = sorted(MODELS)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_shapes(name, encoder):
    cfg = ModelConfig(name=name, encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    model = build_model(cfg, n_classes=6, frame_size=48)
    out = model(torch.randn(3, 12, 48, 48))
    assert out["logits"].shape == (3, 6) and out["embedding"].shape[0] == 3
    if name == "c3d":  # no per-frame codes: one 3D CNN over the clip
        assert "codes" not in out and not model.has_autoencoder
        return
    assert out["codes"].shape[:2] == (3, 12)
    if model.has_autoencoder:
        assert out["codes"].shape[2] == 16
        assert model.reconstruct(out["codes"][0]).shape == (12, 1, 48, 48)
    if name.endswith("_attn"):
        assert out["attention"].shape == (3, 12)
        assert torch.allclose(out["attention"].sum(1), torch.ones(3))


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="cnn_ae_lstm"):
        build_model(ModelConfig(name="nope"), 6, 48)


@pytest.mark.parametrize("name", VARIANTS)
def test_training_steps_reduce_loss(name):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, width=8, feature_dim=32, bottleneck_dim=16, hidden=24, dropout=0.0)
    model = build_model(cfg, 6, 48)
    x, y = torch.randn(8, 10, 48, 48), torch.arange(8) % 6
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn():
        out = model(x)
        loss = F.cross_entropy(out["logits"], y)
        if model.has_autoencoder:
            loss = loss + F.mse_loss(model.reconstruct(out["codes"].reshape(80, -1)).squeeze(1), x.reshape(80, 48, 48))
        return loss

    model.train()
    first = loss_fn()
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    # random frames: reconstruction improves slowly, but the total must clearly drop
    assert loss_fn().item() < 0.85 * first.item()


def test_attention_weights_are_a_distribution_over_frames():
    torch.manual_seed(0)
    cfg = ModelConfig(name="cnn_ae_lstm_attn", width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    model = build_model(cfg, 6, 48).eval()
    for t in (10, 16):
        w = model(torch.randn(4, t, 48, 48))["attention"]
        assert w.shape == (4, t) and (w >= 0).all()
        assert torch.allclose(w.sum(1), torch.ones(4), atol=1e-6)
        assert not torch.allclose(w, torch.full_like(w, 1 / t))  # not a constant average


def test_flops_counted_per_clip_grow_with_frames():
    from vemo.models.registry import flops_per_clip

    cfg = ModelConfig(name="c3d", width=8, hidden=24)
    model = build_model(cfg, 6, 48)
    assert 0 < flops_per_clip(model, 10, 48) < flops_per_clip(model, 20, 48)


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_input_pool_keeps_the_interface_and_cuts_the_cost(encoder):
    from vemo.models.registry import flops_per_clip

    def build(pool):
        cfg = ModelConfig(encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24, input_pool=pool)
        return build_model(cfg, 7, 48)

    full, pooled = build(1), build(2)
    out = pooled(torch.randn(2, 10, 48, 48))
    assert out["logits"].shape == (2, 7)
    assert pooled.reconstruct(out["codes"][0]).shape == (10, 1, 48, 48)  # the decoder still rebuilds 48x48
    # the convolutions run on a quarter of the pixels: well under half the FLOPs
    assert flops_per_clip(pooled, 10, 48) < 0.5 * flops_per_clip(full, 10, 48)
    with pytest.raises(ValueError, match="input_pool"):
        build(0)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_conv_bn_folding_keeps_the_outputs(name, encoder):
    cfg = ModelConfig(name=name, encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    model = build_model(cfg, n_classes=6, frame_size=48)
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(model)  # a training-mode batch norm is not a fixed map
    torch.manual_seed(0)
    for m in model.modules():  # statistics as after training, not the identity of a fresh batch norm
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 10, 48, 48)
    with torch.no_grad():
        before = model(x)["logits"]
        n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        fuse_conv_bn(model)
        after = model(x)["logits"]
    left = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert left < n_bn or n_bn == 0
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
