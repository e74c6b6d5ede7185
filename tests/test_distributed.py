"""Data-parallel training (DDP): two CPU processes (gloo) take one step of each stage on halves of a
batch and end with the weights of one process stepping on the whole batch; they train one epoch of
each stage and end identical."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vemo.config import PrepareConfig, load_config
from vemo.data.loading.loader import iterate
from vemo.data.loading.prepare import load_prepared, prepare
from vemo.training.distributed import inference_device, launch

REPO = Path(__file__).resolve().parents[1]


def test_shards_are_disjoint_and_cover_the_epoch():
    x, y = torch.arange(23).view(23, 1), torch.zeros(23, dtype=torch.long)
    seen = []
    for rank in range(3):
        gen = torch.Generator().manual_seed(5)  # every process holds the same generator state
        batches = list(iterate(x, y, 4, True, gen, shard=(rank, 3)))
        assert len(batches) == 2  # 23 -> 21 samples, 7 per process, batches of 4 + 3
        seen += [int(v) for xb, _ in batches for v in xb.view(-1)]
    assert len(seen) == len(set(seen)) == 21


def test_a_run_calibrates_and_evaluates_where_it_trained(tmp_path, monkeypatch):
    """After training, calibration and evaluation run on the training device (a GPU machine's CPU would
    take minutes), which `inference_device` resolves from train.device."""
    from types import SimpleNamespace

    from vemo import pipeline
    from vemo.config import Config

    assert inference_device("cpu") == "cpu"
    assert inference_device("cuda") == "cuda"
    assert inference_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    got = {}
    best = tmp_path / "best.pt"
    monkeypatch.setattr(pipeline, "describe_data", lambda *a: {})
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: SimpleNamespace(best_checkpoint=best))
    monkeypatch.setattr(pipeline, "inference_device", lambda name: f"resolved-{name}")
    monkeypatch.setattr(pipeline, "calibrate_checkpoint", lambda *a, device, **k: got.update(calibrate=device))
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, device, **k: got.update(evaluate=device) or {})
    monkeypatch.setattr(pipeline, "write_report", lambda out: out / "report.md")
    cfg = Config()
    cfg.train.device = "cuda"
    prepared = SimpleNamespace(indices=lambda split: [])
    pipeline.train_evaluate_report(cfg, prepared, tmp_path, False, False, log=lambda *_: None)
    assert got == {"calibrate": "resolved-cuda", "evaluate": "resolved-cuda"}


CASES = ("pretrain", "joint", "joint-frozen-encoder", "joint-no-reconstruction")
MOVES = {  # which parts of the model (and the pretraining probe, "weight"/"bias") one step changes
    "pretrain": {"encoder", "bottleneck", "decoder", "weight", "bias"},
    "joint": {"encoder", "bottleneck", "decoder", "temporal"},
    "joint-frozen-encoder": {"bottleneck", "decoder", "temporal"},
    "joint-no-reconstruction": {"encoder", "bottleneck", "temporal"},
}


def _one_step(cfg_dict: dict, case: str, rank: int = 0, world: int = 1) -> dict:
    """One SGD step of a stage's objective on rows rank::world of a fixed batch of 8 clips (in DDP when
    world > 1); the model's and probe's weights before and after it. The model is in eval mode: batch-norm
    statistics of half a batch differ from the whole batch's, and dropout would draw differently."""
    from vemo.config import config_from_dict
    from vemo.models.registry import model_from_config
    from vemo.training.distributed import Dist, data_parallel
    from vemo.training.trainer import FramePretrainer, freeze, joint_objective, optimizer_step

    cfg = config_from_dict(cfg_dict)
    if case == "joint-no-reconstruction":
        cfg.train.recon_weight = 0.0
    d, gen = Dist(rank, world, rank), torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = model_from_config(cfg.model, 6, 48).eval()
    probe = torch.nn.Linear(model.code_dim, 6)
    clips, labels = torch.randn(8, 4, 48, 48, generator=gen), torch.arange(8) % 6
    noisy = clips + 0.1 * torch.randn(clips.shape, generator=gen)
    rows = slice(rank, None, world)
    weights = {
        "before": {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
        | {f"probe.{k}": v.clone() for k, v in probe.state_dict().items()}
    }
    if case == "pretrain":
        step = FramePretrainer(model, probe)
        step = data_parallel(step, d, torch.device("cpu"), idle=step.idle())
        params = [p for n, p in model.named_parameters() if not n.startswith("temporal.")] + list(probe.parameters())
        frames = noisy[:, 1][rows]  # one frame per clip; the first half of them reconstructed
        logits, rec = step(frames, clips[:, 1][rows][: len(frames) // 2])
        loss = torch.nn.functional.cross_entropy(logits, labels[rows]) + rec
    else:
        if case == "joint-frozen-encoder":
            freeze(model.encoder)
        step = joint_objective(model, cfg, d)
        params = [p for p in model.parameters() if p.requires_grad]
        b = len(labels[rows])
        pick = (torch.tensor([[1, 3]]) + 4 * torch.arange(b).unsqueeze(1)).reshape(-1)  # frames 1 and 3 of each clip
        logits, rec = step(noisy[rows], clips[rows], None if cfg.train.recon_weight == 0 else pick)
        loss = torch.nn.functional.cross_entropy(logits, labels[rows])
        loss = loss if rec is None else loss + cfg.train.recon_weight * rec
    optimizer_step(loss, torch.optim.SGD(params, lr=0.5), None, params)
    weights["after"] = {f"model.{k}": v for k, v in model.state_dict().items()} | {
        f"probe.{k}": v for k, v in probe.state_dict().items()
    }
    return weights


def _step_worker(cfg_dict: dict, results: str) -> None:
    from vemo.training.distributed import setup

    d = setup("cpu")
    for case in CASES:
        torch.save(_one_step(cfg_dict, case, d.rank, d.world)["after"], Path(results, f"{case}-rank{d.rank}.pt"))


def test_a_ddp_step_on_two_shards_equals_one_step_on_the_whole_batch(tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml", ["train.threads=1"])
    launch(_step_worker, 2, cfg.to_dict(), str(tmp_path))
    for case in CASES:
        r0, r1 = (torch.load(tmp_path / f"{case}-rank{r}.pt") for r in range(2))
        alone = _one_step(cfg.to_dict(), case)  # one process, the whole batch
        for k, v in alone["after"].items():
            assert torch.equal(r0[k], r1[k]), (case, k)  # identical on every rank
            torch.testing.assert_close(r0[k], v, rtol=1e-4, atol=1e-6, msg=lambda m, k=k, c=case: f"{c} {k}: {m}")
        moved = {k.split(".")[1] for k, v in alone["after"].items() if not torch.equal(v, alone["before"][k])}
        assert moved == MOVES[case], case  # every part the stage trains took part, and only those


def _worker(cfg_dict: dict, data: str, out: str, results: str) -> None:
    import os

    from vemo.config import config_from_dict
    from vemo.training.trainer import train

    result = train(config_from_dict(cfg_dict), load_prepared(data), out, progress=False, log=lambda *_: None)
    rank = os.environ["RANK"]
    Path(results, f"rank{rank}.json").write_text(json.dumps({"sha": result.weights_sha256, "n": result.processes}))


# one pretraining and one sequence epoch on one thread per process: what both DDP tests train
SHORT_RUN = ["train.pretrain_epochs=1", "train.epochs=1", "train.threads=1"]


def _prepare_tiny(tiny_synth: Path, tmp_path: Path):
    """The tiny synthetic set cached with a quarter of its actors each for val and test."""
    pcfg = PrepareConfig(root=str(tiny_synth), cache_dir=str(tmp_path / "cache"), frames=10, workers=1)
    pcfg.val_fraction = pcfg.test_fraction = 0.25
    return prepare(pcfg, progress=False, log=lambda *_: None)


def test_two_gloo_processes_agree(tiny_synth, tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml", SHORT_RUN)
    prepared = _prepare_tiny(tiny_synth, tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    launch(_worker, 2, cfg.to_dict(), str(prepared.path), str(tmp_path / "run"), str(results))
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["n"] == ranks[1]["n"] == 2
    assert ranks[0]["sha"] == ranks[1]["sha"]  # DDP-averaged gradients, synced buffers: identical weights
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "history.csv").exists()
    # and it is not a copy of one process training alone on everything
    from vemo.training.trainer import train

    alone = train(cfg, prepared, tmp_path / "alone", progress=False, log=lambda *_: None)
    assert alone.processes == 1 and alone.weights_sha256 != ranks[0]["sha"]


@pytest.mark.slow
def test_torchrun_launches_the_cli_and_its_processes_leave_together(tiny_synth, tmp_path):
    """The documented multi-machine launch, on one machine: torchrun starts `vemo.cli train` twice; both
    processes train, rank 0 evaluates and writes the run, and both leave the process group without error."""
    prepared = _prepare_tiny(tiny_synth, tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vemo.cli"]
    cmd += ["train", "--config", str(REPO / "configs/tiny.yaml"), "--data", str(prepared.path), "--out", str(out)]
    cmd += ["--quiet", *[a for s in SHORT_RUN for a in ("--set", s)]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "train.json").read_text())["processes"] == 2
    assert (out / "metrics.json").exists() and (out / "report.md").exists()
