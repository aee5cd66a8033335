"""`compress ablate`: every unit alone switched off (the true ablation) against the criteria's rankings."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from compress.workflows.ablate import ablate as ablate_model

from ..options import GRANULARITY_HELP, library_default
from ..output import emit_json, fmt, stdout
from ..progress import RichProgress

SHOWN = ("importance", "survival", "residual", "block-influence", "angular")


def ablate(
    model: Path = typer.Argument(..., help="A model written by compress (weights + sidecar)."),
    data: Optional[str] = typer.Option(None, help="Images to measure on (default: the sidecar's data source)."),
    split: Optional[str] = typer.Option(None, help="val, test or train (default: val, else test)."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="At most this many images of the split "
                                             "(default: all)."),
    granularity: Optional[str] = typer.Option(None, help=GRANULARITY_HELP + " Default: the model's (as trained)."),
    batch_size: int = typer.Option(library_default(ablate_model, "batch_size"), help="Evaluation batch size."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the result as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Switch every removable unit off alone (no healing) and compare the true loss increase with the free
    importance recorded while training, the residual ratio, block influence and angular distance: each one's
    Spearman and Kendall rank correlation with the truth, and its cost in forward passes."""
    res = ablate_model(model, data=data, split=split, max_images=max_images, granularity=granularity,
                       batch_size=batch_size, out=out, progress=RichProgress(quiet=as_json))
    if as_json:
        return emit_json(res)
    cols = [c for c in SHOWN if any(c in u.scores for u in res.units)]
    t = Table(title=f"{model.name}: each unit alone switched off, {res.base.images} {res.split} images (base loss "
                    f"{res.base.loss:.4f}, accuracy {res.base.accuracy * 100:.2f}%)")
    for c in ["#", "unit", "true loss increase", "accuracy change"] + cols:
        t.add_column(c, justify="left" if c == "unit" else "right")
    for u in res.units:
        cells = [fmt(u.scores.get(c)) if c != "importance" or u.importance_stderr is None
                 else f"{u.scores['importance']:.4f} ± {u.importance_stderr:.4f}" for c in cols]
        se = f" ± {u.loss_increase_stderr:.4f}" if u.loss_increase_stderr is not None else ""
        t.add_row(str(u.index), u.unit, f"{u.loss_increase:+.4f}{se}", f"{u.accuracy_change * 100:+.2f}", *cells)
    stdout.print(t)
    f = Table(title="how each criterion ranks the units against the true ablation (higher: better)")
    for c in ("criterion", "Spearman", "Kendall", "units", "extra forward passes"):
        f.add_column(c, justify="left" if c in ("criterion", "extra forward passes") else "right")
    for r in res.fidelity:
        f.add_row(r.criterion, fmt(r.spearman, ".3f"), fmt(r.kendall, ".3f"), str(r.units),
                  r.extra_passes + (f" ({r.note})" if r.note else ""))
    stdout.print(f)
    tied = sum(abs(u.loss_increase) < 2 * (u.loss_increase_stderr or 0) for u in res.units)
    if tied:
        stdout.print(f"{tied} of {len(res.units)} units' true loss increase is within 2 standard errors of 0: their "
                     "order is inside the noise of these images, and so is any criterion's ranking of them")
    stdout.print(f"true ablation: {res.true_passes} passes over {res.base.images} images, {res.seconds:.1f} s; "
                 f"with {res.base.images} images one image is {100 / max(res.base.images, 1):.2f} accuracy points"
                 + (f"; wrote {out}" if out else ""))
