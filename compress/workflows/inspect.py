"""Looking at a model: its removable blocks (``compress blocks``) and the survival
statistics recorded while training it (``compress stats``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..graph.blocks import discover_blocks, group_rejections, no_blocks_message
from ..graph.branches import find_branches, flops_regions, units_of
from ..common.errors import CompressError
from ..common.fileio import atomic_path
from ..graph.flops import count_flops
from ..common.layers import count_params
from ..model.bundle import DEFAULT_INPUT_SHAPE, ArchSpec, build_model, default_input_shape, load_model
from ..model.paths import Output, check_outputs, model_inputs
from ..model.sidecar import read_sidecar
from ..model.weights import check_weights_path


def describe_blocks(model=None, arch: str | None = None, arch_kwargs: dict | None = None,
                    input_shape=None, num_classes: int | None = None, blocks_from: str | None = None,
                    all_rejected: bool = False) -> dict:
    """The ``blocks`` command: removable blocks of a model file or of an architecture, their branches (the
    units of ``granularity`` branch, :mod:`compress.graph.branches`), and every other sublayer with the reason it is
    not one (``rejected``).

    ``blocks_from``: pick the blocks by path pattern instead (default: a model file's recorded pattern).
    ``rejected_groups`` lists the rejections by reason, only the candidates a reader would weigh unless
    ``all_rejected`` (see :func:`compress.graph.blocks.group_rejections`).
    """
    if model is not None:
        bundle = load_model(model, arch=arch, arch_kwargs=arch_kwargs, input_shape=input_shape)
        net, shape, name = bundle.model, bundle.input_shape, bundle.sidecar.spec
        blocks_from = blocks_from if blocks_from is not None else bundle.sidecar.blocks_from
    elif arch is not None:
        shape = tuple(input_shape) if input_shape else (default_input_shape(arch) or DEFAULT_INPUT_SHAPE)
        net, name = build_model(ArchSpec(arch, arch_kwargs or {}), shape, num_classes), arch
    else:
        raise CompressError("give a model file or `arch`", param="arch")
    found = discover_blocks(net, shape, blocks_from)
    split = find_branches(net, shape, found.blocks)
    branches = [br for b in found.blocks for br in split.get(b.index, [])]
    units_of(found.blocks, split, "branch")   # numbers the branches as units (what `prune --blocks` takes)
    total, per = count_flops(net, shape, found.blocks, flops_regions(branches))
    rows, branch_rows = [], []
    for u in found.blocks + branches:
        d = u.to_json()
        d["flops"] = per[u.path]
        d["flops_share"] = per[u.path] / total if total else 0.0
        (branch_rows if u in branches else rows).append(d)
    groups, hidden = group_rejections(found, everything=all_rejected)
    return {"arch": name, "input_shape": list(shape), "params": count_params(net), "flops": total,
            "blocks_from": blocks_from, "blocks": rows, "branches": branch_rows, "message": None if rows else no_blocks_message(blocks_from, found),
            "probe_seconds": round(found.probe_seconds, 3),
            "rejected": [r.to_json() for r in found.rejected],
            "rejected_groups": [{"kind": g.kind, "title": g.title, "rejected": [r.to_json() for r in g.rejected]}
                                for g in groups],
            "rejected_not_grouped": hidden}


def read_stats(model) -> dict:
    """The ``stats`` command: per-unit statistics from a model's sidecar (blocks, or branches under ``granularity``
    branch), in model order."""
    path = check_weights_path(model)
    if not path.is_file():
        raise CompressError(f"{path}: no such file")
    sc = read_sidecar(path)
    if not sc.statistics:
        raise CompressError(f"{path}: no survival statistics recorded; run `compress train` with `drop_path_rate` > 0",
                            param="drop_path_rate")
    sched = sc.schedule
    return {"model": str(path), "schedule": sched.get("name"), "drop_path_rate": sched.get("rate"),
            "target_keep": sched.get("target_keep"), "granularity": sc.granularity or "block",
            "blocks": sc.statistics, "branches": sc.branches, "removed": sc.removed_units}


def _branch_grid(info: dict) -> dict | None:
    """{(kind, depth): kept?} of a branch-level model's branches (kept ones from its sidecar, removed ones
    from its prune steps); None for a block-level model."""
    if info.get("granularity") != "branch":
        return None
    grid = {(b["kind"], b["block"]): True for b in info.get("branches") or []}
    for u in info.get("removed") or []:
        kinds = ["attn", "mlp"] if u.get("kind") == "block" else [u.get("kind")]
        if isinstance(u.get("depth"), int):
            grid.update({(k, u["depth"]): False for k in kinds})
    return grid or None


def _draw_grid(ax, grid: dict) -> None:
    """Which branch went: one row per kind (attn, mlp), one column per depth; removed in red, named."""
    kinds = sorted({k for k, _ in grid}, key=lambda k: (k != "attn", k != "mlp", k))
    depths = sorted({d for _, d in grid})
    for r, kind in enumerate(kinds):
        for d in depths:
            state = grid.get((kind, d))
            color = "lightgrey" if state is None else ("tab:green" if state else "tab:red")
            ax.add_patch(matplotlib_rect(d - 0.45, r - 0.4, color))
            if state is False:
                ax.text(d, r, "removed", ha="center", va="center", fontsize=7, color="white")
    ax.set_xlim(min(depths) - 0.6, max(depths) + 0.6)
    ax.set_ylim(len(kinds) - 0.4, -0.6)  # attn on top
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("depth (block)")
    ax.set_title("branches: kept (green) / removed (red)", fontsize=9)


def matplotlib_rect(x: float, y: float, color: str):
    from matplotlib.patches import Rectangle  # optional heavy: only plotting needs it
    return Rectangle((x, y), 0.9, 0.8, color=color)


def plot_stats(info: dict, out) -> None:
    """Bar chart: survival rate and importance (with standard errors) per unit; for a branch-level model also
    which branch (attn / mlp, depth) was removed."""
    check_outputs([Output(Path(out), "plot")], model_inputs(info["model"]))
    import matplotlib  # optional heavy: only plotting needs it

    matplotlib.use("Agg")  # no display: choose the file backend before pyplot is imported
    import matplotlib.pyplot as plt  # optional heavy: only plotting needs it

    blocks = info["blocks"]
    names = [b["block"] for b in blocks]
    x = np.arange(len(names))
    grid = _branch_grid(info)
    fig, axes = plt.subplots(3 if grid else 2, 1, figsize=(max(6, 0.6 * len(names)), 8.5 if grid else 6),
                             gridspec_kw={"height_ratios": [3, 3, 2] if grid else [1, 1]})
    a1, a2 = axes[0], axes[1]
    a1.sharex(a2)
    a1.tick_params(labelbottom=False)
    a1.bar(x, [b["survival_rate"] or 0 for b in blocks], color="tab:blue")
    a1.set_ylabel("survival rate")
    a1.set_ylim(0, 1.05)
    imp = [b["importance"] if b["importance"] is not None else 0 for b in blocks]
    err = [b["importance_stderr"] if b["importance_stderr"] is not None else 0 for b in blocks]
    a2.bar(x, imp, yerr=err, color="tab:orange", capsize=3)
    a2.axhline(0, color="black", lw=0.8)
    a2.set_ylabel("importance\nE[loss|dropped] - E[loss|kept]")
    a2.set_xticks(x, names, rotation=45, ha="right")
    if grid:
        _draw_grid(axes[2], grid)
    removed = [u.get("label", u.get("unit")) for u in info.get("removed") or []]
    fig.suptitle(f"{Path(info['model']).name}: schedule {info['schedule']}"
                 + (f"\nremoved: {', '.join(removed)}" if removed else ""), fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
