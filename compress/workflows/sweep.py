"""The ``sweep`` and ``demo`` commands: prune, heal, export and measure a model at several
keep ratios, then report.

A sweep is resumable: each keep ratio's result is recorded in ``OUT/sweep.json``
as it finishes; run again, finished points are skipped, and a failed point is
recorded and reported without stopping the others.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from ..data import DATA_SOURCES, source_kind
from ..common.errors import CompressError
from ..export import ExportOptions
from ..common.fileio import write_json
from ..common.progress import NULL, Progress
from ..model.paths import Output, check_outputs, data_inputs, model_inputs, model_outputs, same_file
from ..model.sidecar import read_sidecar
from ..model.storage import copy_model_files
from ..training.config import FitConfig
from ..model.weights import check_weights_path
from ..pruning.criteria import DEFAULT_CRITERION
from .prune import HealConfig, default_out, prune
from .report import ensure_export, report, report_outputs
from .train import train

SWEEP_STATE = "sweep.json"


def parse_keeps(text: str, param: str = "keeps") -> list[float]:
    """Keep ratios (or FLOPs budgets, ``param="keep_flops"``) from comma-separated text: distinct, in (0, 1],
    largest first."""
    try:
        keeps = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CompressError(f"`{param}` must be comma-separated ratios, e.g. 1.0,0.75,0.5; got {text!r}",
                            param=param) from None
    if not keeps or any(not 0.0 < k <= 1.0 for k in keeps):
        raise CompressError(f"`{param}` ratios must be in (0, 1]; got {text!r}", param=param)
    return sorted(set(keeps), reverse=True)


DEFAULT_KEEPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
SWEEP_HEAL_EPOCHS = 3   # healing epochs per point by default (a sweep heals many)


def _targets(model: Path, models_dir: Path, keeps, keep_flops) -> tuple[bool, dict[str, tuple[dict, Path]]]:
    """(whether the original is a point: 1.0 is asked for, and per pruned point, named ``0.8`` for a keep ratio
    or ``F0.8`` for a FLOPs budget: prune's target and its file)."""
    if keeps and keep_flops:
        raise CompressError("give `keeps` or `keep_flops`, not both", param=("keeps", "keep_flops"))
    name, ratios = ("keep_flops", keep_flops) if keep_flops else ("keep", keeps or DEFAULT_KEEPS)
    pruned = {("F" if keep_flops else "") + f"{r:g}": ({name: r}, default_out(models_dir / model.name, **{name: r}))
              for r in ratios if r != 1.0}
    return 1.0 in ratios, pruned


def _state(out_dir: Path, settings: dict) -> dict:
    """The sweep's state file, refused if an earlier sweep there had other settings."""
    path = out_dir / SWEEP_STATE
    state = json.loads(path.read_text()) if path.is_file() else {}
    if state.get("settings") not in (None, settings):
        raise CompressError(f"{out_dir} holds a sweep with other settings; use another `out_dir` or delete it",
                            param="out_dir")
    state["settings"] = settings
    state.setdefault("points", {})
    return state


def _copy_model(model: Path, dst: Path) -> None:
    """The original model and its sidecar, copied into the sweep as one unit (the report names it from there)."""
    if not dst.is_file():
        copy_model_files(model, dst)


def _check_outputs(model: Path, out_dir: Path, original: Path, targets: list[Path], data) -> None:
    """Nothing the sweep writes may overwrite what it reads (the original copy may be the model itself: a resume)."""
    copies = [] if same_file(original, model) else model_outputs(original, "out_dir")
    outputs = [Output(out_dir / SWEEP_STATE, "out_dir"), *copies, *(o for t in targets for o in model_outputs(t, "out_dir")),
               *report_outputs(out_dir, [original.stem] + [t.stem for t in targets])]
    check_outputs(outputs, model_inputs(model) + data_inputs(data))


def _point(original: Path, key: str, how: dict, target: Path, out_dir: Path, criterion: str, heal: HealConfig,
           data: str | None, export: ExportOptions | None, progress: Progress) -> dict:
    """Prune, heal and export one point (``how``: prune's keep or keep_flops); a failure is recorded, not raised."""
    try:
        res = prune(original, criterion=criterion, out=target, data=data, heal=heal, progress=progress,
                    resume=None, **how)  # a point interrupted while healing goes on from its checkpoint
        ensure_export(target, out_dir / "exports" / target.stem, export, progress=progress)
        return {"status": "done", "model": str(target), "accuracy": res.accuracy.to_json(), "removed": res.plan.remove_paths,
                "flops_ratio": res.plan.flops_ratio}
    except Exception as e:  # noqa: BLE001 - one failed point must not stop the others
        msg = str(e) if isinstance(e, CompressError) else f"{type(e).__name__}: {e}"
        progress.log(f"keep {key}: failed: {msg}")
        return {"status": "failed", "error": msg}


def sweep(model, keeps: list[float] | None, out_dir, criterion: str = DEFAULT_CRITERION, heal: HealConfig | None = None,
          data: str | None = None, report_options: dict | None = None, progress: Progress = NULL,
          export: ExportOptions | None = None, keep_flops: list[float] | None = None) -> dict:
    """Prune+heal+export ``model`` at every keep ratio (or every FLOPs budget in ``keep_flops``, not both;
    neither: ``DEFAULT_KEEPS``), then write the report over all of them. ``heal``: default, ``HealConfig`` with
    ``SWEEP_HEAL_EPOCHS`` epochs (a sweep heals many points).

    ``export``: how every model is exported and verified (tolerances, INT8), as in ``report``.
    """
    model = check_weights_path(model)
    if not model.is_file():
        raise CompressError(f"{model}: no such file")
    read_sidecar(model)
    heal = heal or HealConfig(epochs=SWEEP_HEAL_EPOCHS)
    out_dir = Path(out_dir)
    models_dir = out_dir / "models"
    original = models_dir / model.name
    with_original, targets = _targets(model, models_dir, keeps, keep_flops)
    _check_outputs(model, out_dir, original, [path for _, path in targets.values()], data)
    models_dir.mkdir(parents=True, exist_ok=True)
    state = _state(out_dir, {"model": str(model), "criterion": criterion, "heal": asdict(heal), "data": data})
    points = state["points"]
    _copy_model(model, original)
    paths = [original] if with_original else []
    for key, (how, target) in targets.items():
        if points.get(key, {}).get("status") == "done" and target.is_file():
            progress.log(f"keep {key}: done earlier, skipped")
        else:
            progress.log(f"keep {key}: pruning and healing")
            points[key] = _point(original, key, how, target, out_dir, criterion, heal, data, export, progress)
            write_json(out_dir / SWEEP_STATE, state)
        if points[key]["status"] == "done":
            paths.append(target)
    write_json(out_dir / SWEEP_STATE, state)
    rep = report(paths, out_dir, data=data, progress=progress, export=export, **(report_options or {}))
    rep["sweep"] = dict(points)
    rep["failed"] = {k: v["error"] for k, v in points.items() if v.get("status") == "failed"}
    return rep


def sample_model(name: str) -> Path:
    """Path of a shipped sample model (``resnet_tiny`` or ``vit_tiny``)."""
    try:
        root = Path(str(resources.files("compress_samples")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2] / "sample_models"
    path = root / f"{name}.pdparams"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.pdparams"))
        raise CompressError(f"no sample model {name!r}; shipped: {', '.join(known) or 'none'}")
    return path


DEMO_REPORT = {"min_runs": 100, "max_seconds": 40.0}
# Training the sample's architecture on another built-in source first (``demo(data=...)``): the sample's recipe.
DEMO_TRAIN = {"drop_path_rate": 0.2, "schedule": "adaptive", "target_keep": 0.5, "max_rate": 0.7}


def _demo_model(out_dir: Path, sample: str, data: str, train_epochs: int, progress: Progress) -> Path:
    """The model the demo sweeps: the shipped sample (digits), else the sample's architecture trained on
    ``data`` in RGB at the sample's input size (once: a finished one in ``out_dir`` is reused)."""
    if data == "digits":
        return sample_model(sample)
    shipped = read_sidecar(sample_model(sample))
    path = Path(out_dir) / "models" / f"{sample}.pdparams"
    if not path.is_file():
        progress.log(f"training {shipped.arch['spec']} on {data!r} for {train_epochs} epochs (the demo's model)")
        train(path, arch=shipped.arch["spec"], arch_kwargs=shipped.arch.get("kwargs") or None, data=data,
              input_shape=(3, *shipped.input_shape[1:]), config=FitConfig(epochs=train_epochs, **DEMO_TRAIN),
              progress=progress, resume=None)  # interrupted: goes on from its checkpoint
    return path


def demo(out_dir="compress-demo", sample: str = "vit_tiny", keeps=(1.0, 0.75, 0.5), heal_epochs: int = 3,
         report_options: dict | None = None, progress: Progress = NULL, data: str = "digits",
         train_epochs: int = 10) -> dict:
    """The main job on a built-in source: sweep a shipped sample model on digits (the default) and report;
    with another ``data`` (e.g. ``shapes:2000``), the sample's architecture is trained on it first."""
    if data != "digits" and not DATA_SOURCES[source_kind(data)].builtin:
        raise CompressError(f"the demo runs on a built-in source (digits, shapes[:COUNT[:SEED]]); got {data!r}",
                            param="data")
    model = _demo_model(Path(out_dir), sample, data, train_epochs, progress)
    heal = HealConfig(epochs=heal_epochs, patience=heal_epochs)
    return sweep(model, list(keeps), out_dir, heal=heal, progress=progress,
                 report_options=report_options or DEMO_REPORT)
