"""The ``ablate`` command: check on the user's own model that the free importance ranks its units as removing
them does (:mod:`compress.pruning.ablation`), beside the activation criteria and their costs."""
from __future__ import annotations

import time
from pathlib import Path

from ..pruning.ablation import Ablation, UnitAblation, fidelity, leave_one_out
from ..graph.blocks import explain_no_blocks
from ..graph.branches import Branch, check_granularity, units_with_flops
from ..pruning.criteria import Context, angular_costs, influence_costs
from ..data import ModelData
from ..common.errors import CompressError
from ..common.fileio import write_json
from ..model.bundle import load_model
from ..model.paths import Output, check_outputs, data_inputs, model_inputs
from ..common.progress import NULL, Progress

SPLITS = ("val", "test", "train")
# what each criterion costs beyond training, in forward passes
COSTS = {"importance": "0 (recorded while training)", "survival": "0 (recorded while training)",
         "residual": "0 (recorded while training)", "block-influence": "1 pass over <= 256 val images",
         "angular": "the same pass as block-influence"}


def _stats_scores(bundle, units) -> tuple[dict, dict]:
    """{unit path: {criterion: score}} and {unit path: importance stderr} from the sidecar's statistics."""
    stats = {s["block"]: s for s in bundle.sidecar.statistics or []}
    adaptive = bundle.sidecar.schedule.get("name") == "adaptive"
    scores, se = {}, {}
    for u in units:
        s = stats.get(u.path)
        if s is None:
            continue
        scores[u.path] = {"importance": s.get("importance"), "residual": s.get("residual_ratio")}
        if adaptive:
            scores[u.path]["survival"] = s.get("survival_rate")
        se[u.path] = s.get("importance_stderr")
    return scores, se


def _activation_scores(bundle, units, data) -> dict:
    """{unit path: {block-influence, angular}} for whole blocks (a branch has no output of its own)."""
    blocks = [u for u in units if not isinstance(u, Branch)]
    if not blocks:
        return {}
    ctx = Context(blocks=blocks, stats=None, schedule=None, model=bundle.model, input_shape=bundle.input_shape,
                  data=data)
    bi, ang = influence_costs(ctx), angular_costs(ctx)
    return {b.path: {"block-influence": bi[i], "angular": ang[i]} for i, b in enumerate(blocks)}


def _batches(data, split: str, batch_size: int):
    def gen():
        loader = data.loader(split, batch_size)
        try:
            yield from loader
        finally:
            loader.close()
    return gen


def ablate(model, data: str | None = None, split: str | None = None, max_images: int | None = None,
           granularity: str | None = None, batch_size: int = 256, out=None, progress: Progress = NULL) -> Ablation:
    """Switch every removable unit (block, or branch under ``granularity`` branch; default: as the model was
    trained) off alone on ``split`` (default: val, else test) of ``data`` (default: the sidecar's), no healing;
    return the true loss and accuracy changes beside each criterion's score, and each criterion's rank
    correlation with the truth. ``out``: also write it as JSON. The model file is only read."""
    if max_images is not None and max_images < 1:
        raise CompressError("`max_images` must be >= 1", param="max_images")
    if split is not None and split not in SPLITS:
        raise CompressError(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}", param="split")
    if batch_size < 1:
        raise CompressError("`batch_size` must be >= 1", param="batch_size")
    t0 = time.perf_counter()
    if out is not None:
        check_outputs([Output(Path(out), "out")], model_inputs(model) + data_inputs(data))
    bundle = load_model(model)
    gran = check_granularity(granularity) or bundle.sidecar.granularity or "block"
    units, _, _ = units_with_flops(bundle.model, bundle.input_shape, bundle.sidecar.blocks_from, gran)
    if not units:
        raise CompressError(f"nothing to ablate: {explain_no_blocks(bundle.model, bundle.input_shape, bundle.sidecar.blocks_from)}")
    ds = ModelData.of_model(bundle, data)
    split = split or ("val" if ds.size("val") else "test")
    if ds.size(split) == 0:
        raise CompressError(f"the data's {split} split is empty: choose another `split`", param="split")
    progress.log(f"{len(units)} units; {len(units) + 1} passes over the {split} split")
    with progress.task("ablating units one by one", len(units) + 1) as advance:
        base, deltas = leave_one_out(bundle.model, [u.removed_unit() for u in units], _batches(ds, split, batch_size),
                                     max_images, advance)
    scores, se = _stats_scores(bundle, units)
    act = _activation_scores(bundle, units, ds)
    rows = [UnitAblation(i, u.path, d_loss, d_acc, {**scores.get(u.path, {}), **act.get(u.path, {})},
                         se.get(u.path), d_se) for i, (u, (d_loss, d_se, d_acc)) in enumerate(zip(units, deltas))]
    notes = {} if scores else {"importance": "no statistics recorded for these units"}
    result = Ablation(split, base, rows, fidelity(rows, COSTS, notes), len(units) + 1, time.perf_counter() - t0)
    if out is not None:
        write_json(out, result.to_json())
    return result
