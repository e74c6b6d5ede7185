import pytest
import torch
import torch.nn.functional as F

from vemo.config import ModelConfig
from vemo.models.registry import MODELS, build_model

VARIANTS = sorted(MODELS)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet"])
def test_shapes(name, encoder):
    cfg = ModelConfig(name=name, encoder=encoder, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    model = build_model(cfg, n_classes=6, frame_size=48)
    out = model(torch.randn(3, 12, 48, 48))
    assert out["logits"].shape == (3, 6)
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


@pytest.mark.parametrize("name", ["cnn_lstm", "cnn_ae_lstm"])
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
