"""Data-parallel training: two CPU processes (gloo) train one epoch of each stage and end identical."""

import json
from pathlib import Path

import torch

from vemo.config import PrepareConfig, load_config
from vemo.data.loader import iterate
from vemo.data.prepare import load_prepared, prepare
from vemo.training.distributed import launch

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


def _worker(cfg_dict: dict, data: str, out: str, results: str) -> None:
    import os

    from vemo.config import config_from_dict
    from vemo.training.trainer import train

    result = train(config_from_dict(cfg_dict), load_prepared(data), out, progress=False, log=lambda *_: None)
    rank = os.environ["RANK"]
    Path(results, f"rank{rank}.json").write_text(json.dumps({"sha": result.weights_sha256, "n": result.processes}))


def test_two_gloo_processes_agree(tiny_synth, tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml", ["train.pretrain_epochs=1", "train.epochs=1", "train.threads=1"])
    pcfg = PrepareConfig(root=str(tiny_synth), cache_dir=str(tmp_path / "cache"), frames=10, workers=1)
    pcfg.val_fraction = pcfg.test_fraction = 0.25
    prepared = prepare(pcfg, progress=False, log=lambda *_: None)
    results = tmp_path / "results"
    results.mkdir()
    launch(_worker, 2, cfg.to_dict(), str(prepared.path), str(tmp_path / "run"), str(results))
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["n"] == ranks[1]["n"] == 2
    assert ranks[0]["sha"] == ranks[1]["sha"]  # averaged gradients and synced buffers: identical weights
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "history.csv").exists()
    # and it is not a copy of one process training alone on everything
    from vemo.training.trainer import train

    alone = train(cfg, prepared, tmp_path / "alone", progress=False, log=lambda *_: None)
    assert alone.processes == 1 and alone.weights_sha256 != ranks[0]["sha"]
