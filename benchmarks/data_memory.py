"""Benchmark (issue 9): peak memory of the whole process tree and throughput of the streaming loader.

Generates N synthetic 640x480 JPEGs (smooth colour gradients plus noise, 3 class folders, written
to a temporary directory), then, each in a fresh process whose whole tree (main process plus
loader workers) is sampled from /proc every 0.2 s:

- ``load``: the train split through ``make_loader`` (224x224, batch 64, the folder defaults:
  short-side resize, ImageNet normalisation, standard augmentation) feeding a trivial consumer,
  then the val and test splits once through the evaluation loader; for 0, 1 and 2 workers;
- ``train``: a small 224x224 model trained by the same loader (resnet_tiny, 3 input channels,
  behind a stride-4 patchify convolution so that a 64-image batch's activations stay small),
  recording the compute-only step rate and the time spent waiting for data.

Every set size passes the same number of training images (whole epochs: by default the largest
set's train split, i.e. 1 epoch of 5,000 images and 10 of 500): Paddle's allocator grows over
the first ~10 training steps, so one epoch of 500 images (5 steps) against one of 5,000 (47 steps)
would measure the step count, not the data set size;
- ``baseline`` (optional): the data loading of the code before streaming (``compress/data.py`` at
  a given commit) on the smallest set, for comparison.

Summed RSS counts pages that forked workers share once per process; summed PSS
(``/proc/PID/smaps_rollup``) divides each shared page among its sharers, so it is the honest total.

    python benchmarks/data_memory.py                                   # 500 and 5,000 images
    python benchmarks/data_memory.py --images 500 --train-workers 2 --baseline-commit 42d7142
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 224, 224)
BATCH = 64


# --------------------------------------------------------------------------- the images
def make_images(root: Path, n: int, classes: int = 3, seed: int = 0) -> None:
    """``n`` 640x480 JPEGs (quality 90) in ``root/class<k>/``: smooth gradients plus noise compress like photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"class{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((640, 480), Image.BICUBIC)
        a = np.asarray(coarse, np.int16) + rng.normal(0, 8, (480, 640, 3)).astype(np.int16)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"{i:05d}.jpg", quality=90)


# --------------------------------------------------------------------------- measuring a process tree
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p))
    return kids


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, processes) of ``pid`` and its descendants, in kB."""
    kids, todo, rss, pss, count = _children(), [pid], 0, 0, 0
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:])
        except (OSError, ValueError):
            continue
        rss += int(fields["Rss"].split()[0])
        pss += int(fields["Pss"].split()[0])
        count += 1
    return rss, pss, count


def run_measured(args: list[str], period: float = 0.2) -> dict:
    """Run this script as a child with ``args``; its JSON result plus the tree's peak RSS/PSS (MB)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak_rss = peak_pss = peak_procs = 0
    while proc.poll() is None:
        rss, pss, count = tree_memory(proc.pid)
        peak_rss, peak_pss, peak_procs = max(peak_rss, rss), max(peak_pss, pss), max(peak_procs, count)
        time.sleep(period)
    out = proc.stdout.read()
    if proc.returncode:
        print(f"child {args} failed with exit code {proc.returncode}", file=sys.stderr)
        return {"failed": proc.returncode, "peak_rss_mb": round(peak_rss / 1024), "peak_pss_mb": round(peak_pss / 1024),
                "processes": peak_procs}
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mb": round(peak_rss / 1024),
            "peak_pss_mb": round(peak_pss / 1024), "processes": peak_procs}


# --------------------------------------------------------------------------- the children
def _open(data: str):
    import sklearn.model_selection  # noqa: F401 - imported before the clock starts: time the header check only

    from compress.data import Preprocess, open_source

    t = time.perf_counter()
    src = open_source(data)
    opened = time.perf_counter() - t
    n = sum(src.size(s) for s in ("train", "val", "test"))
    return src, Preprocess.for_source(src, SHAPE), {"open_s": round(opened, 2), "files_per_s": round(n / opened)}


def _epochs(loader, images: int = 0, step=None) -> dict:
    """Whole epochs until at least ``images`` have passed (one epoch at least); ``step(x, y)`` consumes
    each batch. Images/s overall and the time spent waiting for data."""
    n = epoch = 0
    wait, t0 = 0.0, time.perf_counter()
    while epoch == 0 or n < images:
        loader.set_epoch(epoch)
        it = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - t
            if step is not None:
                step(x, y)
            n += int(y.shape[0])
        epoch += 1
    total = time.perf_counter() - t0
    return {"epochs": epoch, "images": n, "seconds": round(total, 2), "images_per_s": round(n / total, 1),
            "data_wait_s": round(wait, 2)}


def child_load(data: str, workers: int, images: int) -> dict:
    from compress.data import make_loader

    src, pre, rec = _open(data)
    train = make_loader(src, "train", pre, BATCH, train=True, num_workers=workers, rank=0, world=1)
    rec["train"] = _epochs(train, images, lambda x, y: float(x[0, 0, 0, 0]))
    train.close()  # done with it: its workers exit (an open loader keeps them, prefetching the next epoch)
    evals = [_epochs(make_loader(src, s, pre, BATCH, num_workers=workers, rank=0, world=1)) for s in ("val", "test")]
    n, secs = sum(e["images"] for e in evals), sum(e["seconds"] for e in evals)
    rec["eval"] = {"images": n, "seconds": round(secs, 2), "images_per_s": round(n / secs, 1)}
    return rec


def child_train(data: str, workers: int, images: int) -> dict:
    import paddle
    import paddle.nn.functional as F

    from compress.model.architectures import resnet_tiny
    from compress.data import make_loader

    src, pre, rec = _open(data)
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 3, 4, stride=4),
                                 resnet_tiny(in_chans=3, num_classes=src.num_classes))
    opt = paddle.optimizer.AdamW(learning_rate=1e-3, parameters=model.parameters())
    model.train()

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)  # wait for the step to finish

    loader = make_loader(src, "train", pre, BATCH, train=True, num_workers=workers, rank=0, world=1)
    rec["train"] = _epochs(loader, images, step)
    compute = rec["train"]["seconds"] - rec["train"]["data_wait_s"]
    rec["train"]["compute_images_per_s"] = round(rec["train"]["images"] / compute, 1)
    return rec


def child_baseline(data: str, commit: str) -> dict:
    """The loading of ``compress/data.py`` at ``commit`` (everything decoded and kept, in float32)."""
    import importlib.util

    code = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:compress/data.py"], check=True,
                          capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_data.py"
        path.write_text(code.replace("from .errors import", "from compress.common.errors import"))
        spec = importlib.util.spec_from_file_location("old_data", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["old_data"] = mod
        spec.loader.exec_module(mod)
    t = time.perf_counter()
    ds = mod.load_data(data, SHAPE)
    return {"seconds": round(time.perf_counter() - t, 2), "images": int(sum(len(ds.split(s)[1])
                                                                        for s in ("train", "val", "test")))}


# --------------------------------------------------------------------------- the report
def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def report(results: dict, command: str) -> str:
    out = ["# Data loading: peak memory and throughput (`benchmarks/data_memory.py`)", "",
           f"Command: `{command}`", "",
           f"Machine: {_cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
           f"Synthetic 640x480 JPEGs (quality 90), 3 classes, stratified 60/20/20 split; input 224x224, "
           f"batch {BATCH}; folder defaults (short-side resize 256 + centre crop, ImageNet normalisation, "
           f"standard augmentation on train). Each run passes {results['train_images']} train-split images "
           "(whole epochs, so every set size runs the same number of steps), then val and test once. Peak memory is of the whole process tree (main process "
           "plus loader workers), sampled every 0.2 s; summed RSS counts the pages forked workers share "
           "once per process, summed PSS shares them out.", "",
           "| images | run | workers | epochs | peak RSS (MB) | peak PSS (MB) | processes | train img/s | eval img/s | "
           "compute-only img/s | data wait (s) | header check (files/s) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        t, e = r.get("train", {}), r.get("eval", {})
        out.append(f"| {r['n']} | {r['run']} | {r.get('workers', '')} | {t.get('epochs', '')} | {r['peak_rss_mb']} | "
                   f"{r['peak_pss_mb']} | "
                   f"{r['processes']} | {t.get('images_per_s', '')} | {e.get('images_per_s', '')} | "
                   f"{t.get('compute_images_per_s', '')} | {t.get('data_wait_s', '')} | {r.get('files_per_s', '')} |")
    out += ["", "Columns: *train img/s* is the train-split pass including any wait for data; *data wait* the "
            "time blocked on the loader; *compute-only img/s* the images over the rest (the training step rate); "
            "*header check* the source's opening (every file's header) per second. The *baseline* row is the data "
            "loading of the code before streaming (`compress/data.py`, every image decoded to float32 and kept) "
            "on the same images, loading only.", "", *results.get("verdict", [])]
    return "\n".join(out) + "\n"


def verdict(runs: list[dict], sizes: list[int]) -> list[str]:
    """The issue's targets: at most 4 GB at the largest set, at most 10 % above the smallest set."""
    lines = []
    small, large = min(sizes), max(sizes)
    for run, workers in sorted({(r["run"], r.get("workers")) for r in runs if r["run"] != "baseline"}):
        by_n = {r["n"]: r for r in runs if r["run"] == run and r.get("workers") == workers}
        if small in by_n and large in by_n and small != large:
            a, b = by_n[small], by_n[large]
            for key in ("peak_rss_mb", "peak_pss_mb"):
                growth = 100 * (b[key] / a[key] - 1)
                ok = b[key] <= 4096 and growth <= 10
                lines.append(f"- {run}, {workers} workers, {key[5:8].upper()}: {a[key]} MB at {small} images, "
                             f"{b[key]} MB at {large} ({growth:+.1f} %): {'meets' if ok else 'MISSES'} the "
                             "targets (<= 4 GB, <= +10 %)")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="for the loading runs")
    ap.add_argument("--train-workers", type=int, nargs="*", default=[0, 1, 2], help="for the training runs")
    ap.add_argument("--train-images", type=int, default=None,
                    help="train-split images each run passes through, in whole epochs (default: the largest set's "
                         "train split, so every set size runs the same number of steps)")
    ap.add_argument("--baseline-commit", default=None, help="also measure compress/data.py at this commit")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/data_memory"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, data, *rest = a.child
        fn = {"load": lambda: child_load(data, int(rest[0]), int(rest[1])),
              "train": lambda: child_train(data, int(rest[0]), int(rest[1])),
              "baseline": lambda: child_baseline(data, rest[0])}[kind]
        print(json.dumps(fn()))
        return
    runs = []
    same = a.train_images if a.train_images is not None else round(0.6 * max(a.images))
    for n in a.images:
        with tempfile.TemporaryDirectory(prefix=f"data_memory_{n}_") as tmp:
            t = time.perf_counter()
            make_images(Path(tmp), n)
            print(f"{n} JPEGs written in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            plan = [("load", w) for w in a.workers] + [("train", w) for w in a.train_workers]
            if a.baseline_commit and n == min(a.images):
                plan.append(("baseline", a.baseline_commit))
            for run, arg in plan:
                r = run_measured(["--child", run, tmp, str(arg), str(same)])
                r.update(n=n, run=run, **({"workers": arg} if run != "baseline" else {"commit": arg}))
                runs.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    command = "python benchmarks/data_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": command.strip(), "cpu": _cpu(), "cores": os.cpu_count(), "shape": SHAPE,
               "train_images": same,
               "batch": BATCH, "runs": runs, "verdict": verdict(runs, a.images)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(results, indent=1))
    Path(a.out + ".md").write_text(report(results, results["command"]))
    print(report(results, results["command"]))


if __name__ == "__main__":
    main()
