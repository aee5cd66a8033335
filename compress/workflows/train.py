"""The ``train`` command: train (or fine-tune) under stochastic depth, write weights + sidecar."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ..graph.blocks import compile_pattern, explain_no_blocks
from ..graph.branches import Branch, sidecar_fields, units_with_flops
from ..training.checkpoint import Checkpointing, checkpoint_path, remove_checkpoint, room_needed
from ..data import DataOptions, ModelData
from ..training.distributed import data_parallel, world
from ..common.errors import CompressError
from ..common.fileio import owned
from ..common.layers import count_params
from ..model.bundle import (ArchSpec, build_model, canonical_spec, check_class_kwargs, check_num_classes,
                      default_input_shape, load_model, resolve_arch, save_model)
from ..model.paths import check_outputs, check_room, data_inputs, model_inputs, model_outputs
from ..model.pretrained import Pretrained, load_pretrained, read_pretrained
from ..common.progress import NULL, Progress
from ..model.sidecar import LineageStep, Sidecar, read_sidecar
from ..training.config import FitConfig, FitResult
from ..training.evaluate import accuracy
from ..training.loop import fit, seed_everything
from ..training.schedules import never_adapted
from ..model.weights import check_weights_path

@dataclass
class _Start:
    """Where training starts: a loaded model (fine-tuning) or an architecture to build."""

    model: object | None
    spec: ArchSpec
    shape: tuple
    lineage: list
    removed: list
    removed_branches: list = field(default_factory=list)
    blocks_from: str | None = None   # the block pattern of the model fine-tuned from
    pretrained: Pretrained | None = None   # a foreign checkpoint (no sidecar), loaded once the model is built
    preprocess: dict | None = None   # the preprocess of the model fine-tuned from (kept)


def _start(init, arch, arch_kwargs, input_shape) -> _Start:
    if init is not None and read_sidecar(init, required=False) is not None:
        bundle = load_model(init, arch=arch, arch_kwargs=arch_kwargs, input_shape=input_shape)
        base = bundle.sidecar
        return _Start(bundle.model, bundle.arch, bundle.input_shape,
                      list(base.lineage) + [LineageStep.of("train", str(init)).to_json()], base.removed_blocks,
                      list(base.removed_branches), base.blocks_from, preprocess=base.preprocess)
    pretrained = read_pretrained(init) if init is not None else None
    if arch is None and init is not None:
        raise CompressError(f"{init}: no sidecar next to it, so it is read as a pretrained checkpoint (a plain state "
                            "dict); give `arch` (and `arch_kwargs`) to build the model it fits",
                            param=("arch", "arch_kwargs"))
    if arch is None:
        raise CompressError("give `arch` (a shipped name, module:callable or file.py:callable) or an initial model",
                            param="arch")
    spec = ArchSpec(canonical_spec(arch), arch_kwargs or {})
    resolve_arch(arch)  # fail early on an unknown architecture
    shape = tuple(input_shape) if input_shape else default_input_shape(arch)
    if shape is None:
        raise CompressError(f"`input_shape` C,H,W is needed for {arch}", param="input_shape")
    return _Start(None, spec, shape, [], [], pretrained=pretrained)


def _build(start: _Start, ds: ModelData, seed: int, progress: Progress):
    """The model to train from an architecture: built for the data's classes (seeded), with a pretrained
    checkpoint's weights loaded into it if one is given (its classifier re-initialised if its classes differ)."""
    check_class_kwargs(start.spec.kwargs, ds.num_classes)
    seed_everything(seed)
    model = build_model(start.spec, start.shape, ds.num_classes)
    pre = start.pretrained
    if pre is not None:
        reinit = load_pretrained(model, pre, start.shape, ds.num_classes)
        if pre.stripped_prefix:
            progress.log(f"{pre.path.name}: took the prefix {pre.stripped_prefix!r} off every key")
        progress.log(f"loaded pretrained weights {pre.path.name} (sha256 {pre.sha256[:12]}); "
                     + (f"re-initialised the classifier for {ds.num_classes} classes: {', '.join(reinit)}" if reinit
                        else "nothing re-initialised"))
    return model


def _trained_sidecar(start: _Start, ds: ModelData, model, units, blocks, flops: int, config: FitConfig,
                     res: FitResult) -> Sidecar:
    test_acc = accuracy(model, ds, "test")
    val_acc = accuracy(model, ds, "val")
    return Sidecar(
        arch=start.spec.to_json(), input_shape=list(start.shape), num_classes=ds.num_classes,
        class_names=ds.class_names, data=ds.describe(),
        preprocess=ds.preprocess.to_json(), removed_blocks=start.removed, blocks=[b.to_json() for b in blocks],
        blocks_from=start.blocks_from, **sidecar_fields(config.granularity, units, start.removed_branches),
        params=count_params(model), flops=flops,
        training={"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                  "seed": config.seed, "drop_path_rate": config.drop_path_rate, "schedule": res.schedule,
                  "seconds": round(res.seconds, 2), "history": res.history},
        statistics=res.stats.summary() if res.stats is not None else None,
        statistics_sums=res.stats.to_json() if res.stats is not None else None,
        metrics={"test_accuracy": test_acc, "val_accuracy": val_acc},
        lineage=start.lineage, pretrained=start.pretrained.record() if start.pretrained is not None else None,
        absent=BRANCH_KEYS,  # a block-level model's file stays what it was (written when they say something)
    )


BRANCH_KEYS = frozenset(("granularity", "branches", "removed_branches"))


def train(out, arch: str | None = None, arch_kwargs: dict | None = None, init=None, data: str = "digits",
          input_shape=None, config: FitConfig | None = None, progress: Progress = NULL,
          blocks_from: str | None = None, data_options: DataOptions | None = None,
          resume: bool | None = False) -> Sidecar | None:
    """Train (or fine-tune ``init``) under stochastic depth; write weights + sidecar to ``out``.

    ``init``: a model written by compress (its sidecar gives the architecture), or a foreign checkpoint
    (no sidecar: a plain state dict, with ``arch``), whose classifier is re-initialised if it was trained
    for another number of classes (see :mod:`compress.model.pretrained`; the sidecar's ``pretrained`` records
    the file, its sha256 and the keys re-initialised).

    ``blocks_from``: pick the blocks by path pattern instead of by skip connection (see
    :func:`compress.graph.blocks.discover_blocks`); recorded in the sidecar, so later commands find the
    same blocks (default: the pattern ``init`` was trained with, if any). ``data_options``: resize,
    normalisation and augmentation (default: the source's; fine-tuning keeps the recorded resize and
    normalisation), loader workers. The preprocess is recorded in the sidecar. Every image's header is
    checked before training starts. Returns the sidecar written.

    After every epoch the run's state is saved to ``OUT.ckpt/`` (:mod:`compress.training.checkpoint`), removed once
    ``out`` is written; ``resume`` goes on from it (a checkpoint of another run, or none, is refused), and
    ends with the weights the uninterrupted run would have written; ``resume=None``: resume this run's
    checkpoint if there is one, else start afresh. Without ``resume`` a leftover checkpoint is refused.

    Under ``python -m paddle.distributed.launch --nproc_per_node N``: data parallel (each rank trains on
    its part of every global batch; the statistics are the global ones, see :class:`compress.training.loop.DepthRun`);
    only rank 0 writes (checkpoints included) and returns the sidecar, the other ranks return None.
    """
    config = config or FitConfig()
    shard = world()
    if shard[0] != 0:
        progress = NULL  # rank 0 reports
    out = check_weights_path(out)
    check_outputs(model_outputs(out), (model_inputs(init) if init is not None else []) + data_inputs(data))
    start = _start(init, arch, arch_kwargs, input_shape)
    if blocks_from is not None:
        compile_pattern(blocks_from)  # a bad pattern fails before the data is loaded
        start.blocks_from = blocks_from
    progress.log(f"loading data {data!r} at input shape {start.shape}")
    ds = ModelData.open(data, start.shape, start.preprocess, data_options)
    model = start.model if start.model is not None else _build(start, ds, config.seed, progress)
    check_num_classes(model, start.shape, ds.num_classes)
    units, blocks, flops = units_with_flops(model, start.shape, start.blocks_from, config.granularity)
    if config.drop_path_rate > 0 and not blocks:
        raise CompressError(f"DropPath has nothing to act on: {explain_no_blocks(model, start.shape, start.blocks_from)}; "
                            "or train without it (`drop_path_rate` 0)", param=("blocks_from", "drop_path_rate"))
    n_branches = sum(isinstance(u, Branch) for u in units)
    progress.log(f"{len(blocks)} removable blocks" + (f", {len(units)} units ({n_branches} branches)"
                                                      if config.granularity == "branch" else "")
                 + f"; training {config.epochs} epochs")
    if shard[0] == 0:
        check_room(out, room_needed(model))
    with owned(out) if shard[0] == 0 else contextlib.nullcontext():   # the output and its checkpoint are this run's
        ck = Checkpointing(checkpoint_path(out), {"arch": start.spec.to_json(), "input_shape": list(start.shape)},
                           resume=resume)
        res = fit(model, ds, config, blocks=units, progress=progress, shard=shard, wrap=data_parallel(shard),
                  checkpoint=ck)
        if shard[0] != 0:
            return None  # under the launcher only rank 0 writes
        sidecar = _trained_sidecar(start, ds, model, units, blocks, flops, config, res)
        save_model(model, out, sidecar)
        remove_checkpoint(ck.path)
    progress.log(f"wrote {out} (test accuracy {sidecar.metrics['test_accuracy']:.4f})")
    for w in train_warnings(sidecar):
        progress.log(f"warning: {w}")
    return sidecar


MIN_TEST_IMAGES = 100   # below this a test accuracy moves in steps of more than one point


def train_warnings(sidecar: Sidecar) -> list[str]:
    """One line per reason to doubt what a trained model's sidecar reports: an adaptive schedule that never
    adapted (its survival statistics carry nothing), a test split too small to measure accuracy on."""
    out = []
    training = sidecar.training or {}
    why = never_adapted(training.get("schedule"), training.get("history"))
    if why:
        out.append(f"{why}; survival then carries no information (prune ranks by importance)")
    n = (sidecar.data or {}).get("test")
    if isinstance(n, int) and n < MIN_TEST_IMAGES:
        out.append(f"only {n} test images: the test accuracy moves in steps of {100 / max(n, 1):.1f} points and "
                   "cannot tell models apart by less than that; use more images")
    return out
