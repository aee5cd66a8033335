"""The ``sweep`` and ``demo`` commands: prune, heal, export and measure a model at several
keep ratios, then report.

A sweep is resumable: each keep ratio's result is recorded in ``OUT/sweep.json``
as it finishes; run again, finished points are skipped, and a failed point is
recorded and reported without stopping the others.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from .errors import CompressError
from .fileio import write_json
from .healing import HealConfig, prune
from .progress import NULL, Progress


def parse_keeps(text: str) -> list[float]:
    try:
        keeps = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CompressError(f"--keep must be comma-separated ratios, e.g. 1.0,0.75,0.5; got {text!r}") from None
    if not keeps or any(not 0.0 < k <= 1.0 for k in keeps):
        raise CompressError(f"--keep ratios must be in (0, 1]; got {text!r}")
    return sorted(set(keeps), reverse=True)


def sweep(model, keeps: list[float], out_dir, criterion: str = "survival", heal: HealConfig | None = None,
          data: str | None = None, report_options: dict | None = None, progress: Progress = NULL) -> dict:
    """Prune+heal+export ``model`` at every keep ratio, then write the report over all of them."""
    from .evaluation import ensure_export, report
    from .loading import check_weights_path, read_sidecar

    model = check_weights_path(model)
    if not model.is_file():
        raise CompressError(f"{model}: no such file")
    read_sidecar(model)
    heal = heal or HealConfig()
    out_dir = Path(out_dir)
    models_dir = out_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "sweep.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    settings = {"model": str(model), "criterion": criterion, "heal": asdict(heal), "data": data}
    if state.get("settings") not in (None, settings):
        raise CompressError(f"{out_dir} holds a sweep with other settings; use another --out or delete it")
    state["settings"] = settings
    points = state.setdefault("points", {})
    original = models_dir / model.name
    if not original.is_file():
        shutil.copy2(model, original)
        shutil.copy2(model.with_name(model.stem + ".compress.json"), original.with_name(original.stem + ".compress.json"))
    paths = []
    for keep in keeps:
        key = f"{keep:g}"
        if keep == 1.0:
            paths.append(original)
            continue
        target = models_dir / f"{model.stem}.keep{key}.pdparams"
        done = points.get(key, {})
        if done.get("status") == "done" and target.is_file():
            progress.log(f"keep {key}: done earlier, skipped")
            paths.append(target)
            continue
        progress.log(f"keep {key}: pruning and healing")
        try:
            res = prune(original, keep=keep, criterion=criterion, out=target, data=data, heal=heal, progress=progress)
            ensure_export(target, out_dir / "exports" / target.stem, progress=progress)
            points[key] = {"status": "done", "model": str(target), "accuracy": res["accuracy"],
                           "removed": res["plan"]["remove_paths"]}
            paths.append(target)
        except Exception as e:  # noqa: BLE001 - one failed point must not stop the others
            msg = str(e) if isinstance(e, CompressError) else f"{type(e).__name__}: {e}"
            points[key] = {"status": "failed", "error": msg}
            progress.log(f"keep {key}: failed: {msg}")
        write_json(state_path, state)
    write_json(state_path, state)
    rep = report(paths, out_dir, data=data, progress=progress, **(report_options or {}))
    rep["sweep"] = {k: v for k, v in points.items()}
    failed = {k: v["error"] for k, v in points.items() if v.get("status") == "failed"}
    rep["failed"] = failed
    return rep


def sample_model(name: str) -> Path:
    """Path of a shipped sample model (``resnet_tiny`` or ``vit_tiny``)."""
    from importlib import resources

    try:
        root = Path(str(resources.files("compress_samples")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent / "sample_models"
    path = root / f"{name}.pdparams"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.pdparams"))
        raise CompressError(f"no sample model {name!r}; shipped: {', '.join(known) or 'none'}")
    return path


DEMO_REPORT = {"min_runs": 100, "max_seconds": 40.0}


def demo(out_dir="compress-demo", sample: str = "vit_tiny", keeps=(1.0, 0.75, 0.5), heal_epochs: int = 3,
         report_options: dict | None = None, progress: Progress = NULL) -> dict:
    """The main job on the embedded default: sweep a shipped sample model on digits and report."""
    heal = HealConfig(epochs=heal_epochs, patience=heal_epochs)
    return sweep(sample_model(sample), list(keeps), out_dir, heal=heal, progress=progress,
                 report_options=report_options or DEMO_REPORT)
