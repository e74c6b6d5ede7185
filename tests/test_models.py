import pytest
import torch
import torch.nn.functional as F

from vemo.config import ModelConfig
from vemo.models.base import ClipModel, ClipOutput
from vemo.models.registry import MODELS, build_model, fuse_conv_bn, model_from_config

VARIANTS = sorted(MODELS)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_shapes(name, encoder):
    model = build_model(name, n_classes=6, encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    assert isinstance(model, ClipModel)
    out = model(torch.randn(3, 12, 48, 48))
    assert isinstance(out, ClipOutput)
    assert out.logits.shape == (3, 6) and out.embedding.shape[0] == 3
    if name == "c3d":  # no per-frame codes: one 3D CNN over the clip
        assert out.codes is None and not model.has_autoencoder and not model.has_frame_encoder
        with pytest.raises(NotImplementedError):
            model.encode_frames(torch.randn(2, 48, 48))
        return
    assert model.has_frame_encoder and model.code_dim == out.codes.shape[2]
    assert out.codes.shape[:2] == (3, 12)
    if model.has_autoencoder:
        assert out.codes.shape[2] == 16
        assert model.reconstruct(out.codes[0]).shape == (12, 1, 48, 48)
    if name.endswith("_attn"):
        assert out.attention.shape == (3, 12)
        assert torch.allclose(out.attention.sum(1), torch.ones(3))


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="cnn_ae_lstm"):
        build_model("nope", 6, 48)
    with pytest.raises(TypeError, match="widht"):
        build_model("cnn_lstm", 6, widht=8)  # a misspelt setting is an error, not a silent default


def test_config_adapter_builds_the_same_model_as_keywords():
    cfg = ModelConfig(name="cnn_ae_lstm", width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    a = model_from_config(cfg, 7, 48)
    b = build_model("cnn_ae_lstm", 7, 48, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_encoder_weight_names_name_the_parts_and_do_not_shift_with_options(encoder):
    def names(pool):
        return list(build_model("cnn_lstm", 6, encoder=encoder, width=8, input_pool=pool).state_dict())

    plain = names(1)
    assert plain == names(2)
    parts = {k.split(".")[1] for k in plain if k.startswith("encoder.")}
    assert {"stage1", "stage2", "stage3", "stage4", "head"} <= parts


@pytest.mark.parametrize("name", VARIANTS)
def test_training_steps_reduce_loss(name):
    torch.manual_seed(0)
    model = build_model(name, 6, 48, width=8, feature_dim=32, bottleneck_dim=16, hidden=24, dropout=0.0)
    x, y = torch.randn(8, 10, 48, 48), torch.arange(8) % 6
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn():
        out = model(x)
        loss = F.cross_entropy(out.logits, y)
        if model.has_autoencoder:
            loss = loss + F.mse_loss(model.reconstruct(out.codes.reshape(80, -1)).squeeze(1), x.reshape(80, 48, 48))
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
    model = build_model("cnn_ae_lstm_attn", 6, 48, width=8, feature_dim=32, bottleneck_dim=16, hidden=24).eval()
    for t in (10, 16):
        w = model(torch.randn(4, t, 48, 48)).attention
        assert w.shape == (4, t) and (w >= 0).all()
        assert torch.allclose(w.sum(1), torch.ones(4), atol=1e-6)
        assert not torch.allclose(w, torch.full_like(w, 1 / t))  # not a constant average


def test_flops_counted_per_clip_grow_with_frames():
    from vemo.models.registry import flops_per_clip

    model = build_model("c3d", 6, 48, width=8, hidden=24)
    ten = flops_per_clip(model, 10, 48)
    assert ten > 1e6 and flops_per_clip(model, 20, 48) == pytest.approx(2 * ten, rel=0.01)  # convolutions dominate


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_input_pool_keeps_the_interface_and_cuts_the_cost(encoder):
    from vemo.models.registry import flops_per_clip

    def build(pool):
        return build_model(
            "cnn_ae_lstm",
            7,
            48,
            encoder=encoder,
            width=8,
            feature_dim=32,
            bottleneck_dim=16,
            hidden=24,
            input_pool=pool,
        )

    full, pooled = build(1), build(2)
    out = pooled(torch.randn(2, 10, 48, 48))
    assert out.logits.shape == (2, 7)
    assert pooled.reconstruct(out.codes[0]).shape == (10, 1, 48, 48)  # the decoder still rebuilds 48x48
    # the convolutions run on a quarter of the pixels: well under half the FLOPs
    assert flops_per_clip(pooled, 10, 48) < 0.5 * flops_per_clip(full, 10, 48)
    with pytest.raises(ValueError, match="input_pool"):
        build(0)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_conv_bn_folding_keeps_the_outputs(name, encoder):
    model = build_model(name, 6, 48, encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
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
        before = model(x).logits
        n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        fuse_conv_bn(model)
        after = model(x).logits
    left = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert n_bn > 0 and left == 0  # every batch norm folded, the residual blocks' and the decoder's included
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()


@pytest.mark.parametrize("name", ["cnn_ae_lstm_attn", "c3d"])
def test_flip_average_is_the_mean_of_both_views_and_mirror_invariant(name):
    torch.manual_seed(0)
    model = build_model(name, 6, width=8, feature_dim=32, bottleneck_dim=16, hidden=24, flip_average=True).eval()
    plain = build_model(name, 6, width=8, feature_dim=32, bottleneck_dim=16, hidden=24).eval()
    plain.load_state_dict(model.state_dict())  # same weights: the option adds none
    x = torch.randn(2, 5, 48, 48)
    x[..., :20] += 3.0  # a bright left side: an untrained net must still see the mirror as another image
    with torch.no_grad():
        for m in model.modules():  # running statistics of the input's scale, so features are not all alike
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None
        model.train()(x)
        model.eval()
        plain.load_state_dict(model.state_dict())
        out, a, b = model(x), plain(x), plain(x.flip(-1))
        mirrored = model(x.flip(-1))
    assert torch.allclose(out.logits, (a.logits + b.logits) / 2, atol=1e-5)
    assert torch.allclose(out.embedding, (a.embedding + b.embedding) / 2, atol=1e-5)
    assert not torch.allclose(a.logits, b.logits, atol=1e-3)  # else the test could not tell the views apart
    assert torch.allclose(mirrored.logits, out.logits, atol=1e-5)  # a face and its mirror get one answer
    if out.attention is not None:
        assert torch.allclose(out.attention.sum(1), torch.ones(2), atol=1e-5)
    model.train(), plain.train()  # training never mirrors: the augmentation already flips at random
    torch.manual_seed(1)
    trained = model(x).logits
    torch.manual_seed(1)
    assert torch.allclose(trained, plain(x).logits, atol=1e-5)
