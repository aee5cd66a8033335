"""`compress train`: train or fine-tune with DropPath, recording survival statistics."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.data import DataOptions
from compress.model.bundle import parse_input_shape, parse_kwargs
from compress.training.schedules import SCHEDULES
from compress.training.config import FitConfig
from compress.workflows.train import train as train_model, train_warnings

from ..output import emit_json, stdout
from ..options import AUGMENT, BLOCKS_FROM_HELP, GRANULARITY_HELP, NORMALIZE, RESIZE, WORKERS, library_default
from ..progress import RichProgress


def train(
    init: Optional[Path] = typer.Argument(
        None, help="Optional weights to fine-tune: a model written by compress (its sidecar gives the architecture), "
                   "or a pretrained checkpoint without a sidecar (.pdparams or .safetensors state dict; give --arch), "
                   "whose classifier is re-initialised if its number of classes differs from the data's."),
    arch: Optional[str] = typer.Option(None, help="Shipped name, module:callable or file.py:callable."),
    arch_kwargs: Optional[str] = typer.Option(None, help="JSON object of keyword arguments for --arch."),
    data: str = typer.Option(library_default(train_model, "data"), help="'digits', 'shapes[:COUNT[:SEED]]', an image-folder directory, a "
                                            "directory with train_list.txt, or an .npz with x and y."),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W the images are resized to."),
    epochs: int = typer.Option(FitConfig.epochs, help="Epochs (0: only evaluate and write the sidecar)."),
    batch_size: int = typer.Option(FitConfig.batch_size),
    lr: float = typer.Option(FitConfig.lr),
    weight_decay: float = typer.Option(FitConfig.weight_decay),
    drop_path_rate: float = typer.Option(FitConfig.drop_path_rate, help="Mean drop rate d in [0, 1)."),
    schedule: str = typer.Option(FitConfig.schedule, help=f"Drop-rate schedule: {', '.join(SCHEDULES)}."),
    target_keep: Optional[float] = typer.Option(FitConfig.target_keep, help="adaptive: the keep ratio you will prune to."),
    warmup_epochs: Optional[int] = typer.Option(FitConfig.warmup_epochs, help="adaptive: epochs at the mean rate before adapting."),
    max_rate: float = typer.Option(FitConfig.max_rate, help="adaptive with --target-keep: final drop rate of the targeted blocks."),
    seed: int = typer.Option(FitConfig.seed),
    augment: Optional[str] = AUGMENT,
    normalize: Optional[str] = NORMALIZE,
    resize: Optional[str] = RESIZE,
    workers: Optional[int] = WORKERS,
    blocks_from: Optional[str] = typer.Option(None, "--blocks-from", help=BLOCKS_FROM_HELP),
    granularity: str = typer.Option(FitConfig.granularity, help=GRANULARITY_HELP + " Recorded in the sidecar."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the weights (.pdparams or .safetensors)."),
    resume: bool = typer.Option(False, "--resume", help="Go on from the checkpoint an interrupted run with the same "
                                "command left next to --out (OUT.ckpt/, saved after every epoch)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Train or fine-tune with DropPath, recording survival statistics per block."""
    cfg = FitConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                    drop_path_rate=drop_path_rate, schedule=schedule, target_keep=target_keep,
                    warmup_epochs=warmup_epochs, max_rate=max_rate, granularity=granularity)
    data_options = DataOptions(resize=resize, normalize=normalize, augment=augment, workers=workers)
    sc = train_model(out, arch=arch, arch_kwargs=parse_kwargs(arch_kwargs), init=init, data=data,
                     input_shape=parse_input_shape(input_shape) if input_shape else None, config=cfg,
                     progress=RichProgress(), blocks_from=blocks_from, data_options=data_options,
                     resume=resume)
    if sc is None:
        return  # a non-zero rank under paddle.distributed.launch: rank 0 wrote and reports
    summary = {"out": str(out), "test_accuracy": sc.metrics["test_accuracy"],
               "val_accuracy": sc.metrics["val_accuracy"], "blocks": len(sc.blocks),
               "seconds": sc.training["seconds"], "pretrained": sc.pretrained, "warnings": train_warnings(sc)}
    if as_json:
        return emit_json(summary)
    stdout.print(f"wrote {out}: test accuracy {summary['test_accuracy'] * 100:.2f}%, "
                 f"{summary['blocks']} blocks, {summary['seconds']:.1f} s")
    if sc.pretrained and sc.pretrained["reinitialized"]:
        stdout.print(f"re-initialised (classifier): {', '.join(sc.pretrained['reinitialized'])}")
