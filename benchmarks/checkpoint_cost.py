"""Benchmark: what the per-epoch checkpoint of ``train`` costs (time to write it, its size), per model.

Each shipped sample's architecture is trained from its seeded initialisation on digits (its own input
size, the samples' recipe: adaptive schedule) for ``--epochs`` epochs with checkpoints on, timing
every ``Checkpointing.save`` (reading the statistics' device-side sums included) against the epoch's
training time.

    python benchmarks/checkpoint_cost.py                       # vit_tiny and resnet_tiny, 2 epochs
    python benchmarks/checkpoint_cost.py --models resnet_tiny --epochs 1 --out /tmp/x.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from compress.training.checkpoint import Checkpointing, checkpoint_path
from compress.data import ModelData
from compress.graph.flops import blocks_with_flops
from compress.measure.latency import machine_info
from compress.model.bundle import ArchSpec, build_model
from compress.model.sidecar import read_sidecar
from compress.training.config import FitConfig
from compress.training.loop import fit, seed_everything
from compress.workflows.sweep import DEMO_TRAIN, sample_model

ROOT = Path(__file__).resolve().parent.parent


class TimedCheckpointing(Checkpointing):
    def __post_init__(self):
        super().__post_init__()
        self.seconds: list[float] = []

    def save(self, epoch, arrays, meta):
        t0 = time.perf_counter()
        super().save(epoch, arrays, meta)
        self.seconds.append(time.perf_counter() - t0)


def measure(name: str, epochs: int, workdir: Path) -> dict:
    sc = read_sidecar(sample_model(name))
    shape = tuple(sc.input_shape)
    data = ModelData.open("digits", shape)
    seed_everything(0)
    model = build_model(ArchSpec(sc.arch["spec"], sc.arch.get("kwargs") or {}), shape, data.num_classes)
    blocks, _ = blocks_with_flops(model, shape)
    ck = TimedCheckpointing(checkpoint_path(workdir / f"{name}.pdparams"), {})
    t0 = time.perf_counter()
    res = fit(model, data, FitConfig(epochs=epochs, **DEMO_TRAIN), blocks=blocks, checkpoint=ck)
    total = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in ck.path.iterdir())
    save = statistics.median(ck.seconds)
    epoch = (total - sum(ck.seconds)) / epochs
    return {"model": name, "input_shape": list(shape), "epochs": epochs, "epoch_s": round(epoch, 3),
            "save_s_median": round(save, 4), "save_s_all": [round(s, 4) for s in ck.seconds],
            "save_share_of_epoch": round(save / epoch, 4), "checkpoint_bytes": size,
            "history_loss": [h["loss"] for h in res.history]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vit_tiny,resnet_tiny")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "checkpoint_cost.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, args.epochs, Path(tmp)) for m in args.models.split(",")]
    out = {"machine": machine_info(), "rows": rows}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(f"{r['model']}: epoch {r['epoch_s']:.2f} s, checkpoint {r['save_s_median'] * 1000:.0f} ms "
              f"({r['save_share_of_epoch'] * 100:.1f} %), {r['checkpoint_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
