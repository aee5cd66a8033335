"""Check: the same seeded training gives the same weights and statistics on two code versions.

Trains both shipped samples for 2 epochs (adaptive schedule, target keep 0.5, seed 0) and writes
the weights' sha256, the statistics sums and the history to a JSON file; run it once per code
version and compare:

    python benchmarks/stats_same_as_main.py /tmp/new.json
    PYTHONPATH=/path/to/main/checkout python benchmarks/stats_same_as_main.py /tmp/old.json
    python benchmarks/stats_same_as_main.py --compare /tmp/old.json /tmp/new.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

import compress
from compress.graph.blocks import find_blocks
from compress.data import ModelData
from compress.model.bundle import load_model
from compress.training.config import FitConfig
from compress.training.loop import fit

ROOT = Path(__file__).resolve().parent.parent


def run(out: str) -> None:
    result = {"code": compress.__file__}
    for name in ("resnet_tiny", "vit_tiny"):
        bundle = load_model(ROOT / "sample_models" / f"{name}.pdparams")
        data = ModelData.open("digits", bundle.input_shape)
        cfg = FitConfig(epochs=2, batch_size=64, seed=0, drop_path_rate=0.2, schedule="adaptive", warmup_epochs=1,
                        target_keep=0.5)
        res = fit(bundle.model, data, cfg, blocks=find_blocks(bundle.model, bundle.input_shape))
        weights = b"".join(v.numpy().tobytes() for v in bundle.model.state_dict().values())
        result[name] = {"weights_sha256": hashlib.sha256(weights).hexdigest(),
                        "sums": {k: v.tolist() for k, v in res.stats.sums.items()}, "history": res.history}
    Path(out).write_text(json.dumps(result))


def compare(old: str, new: str) -> None:
    a, b = json.loads(Path(old).read_text()), json.loads(Path(new).read_text())
    print(f"old: {a['code']}\nnew: {b['code']}")
    for m in ("resnet_tiny", "vit_tiny"):
        same = a[m]["weights_sha256"] == b[m]["weights_sha256"]
        print(f"{m}: weights {'identical' if same else 'DIFFER'}, history "
              f"{'identical' if a[m]['history'] == b[m]['history'] else 'DIFFERS'}")
        for k in a[m]["sums"]:
            x, y = np.array(a[m]["sums"][k]), np.array(b[m]["sums"][k])
            rel = np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
            print(f"  {k}: {'identical' if np.array_equal(x, y) else f'max relative difference {rel:.2e}'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    compare(*args.compare) if args.compare else run(args.out)
