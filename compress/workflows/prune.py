"""The ``prune`` command: plan which blocks go, remove them, then heal the shortened network
by fine-tuning with knowledge distillation from the unpruned one.

Healing scales out on Paddle's own launcher: run the same command under
``python -m paddle.distributed.launch --nproc_per_node N``; each rank trains on
its shard of every global batch inside ``paddle.DataParallel`` and only rank 0
writes files.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import paddle

from ..graph.blocks import compile_pattern, explain_no_blocks
from ..graph.branches import Branch, check_granularity, sidecar_fields, surgery_plan, units_with_flops
from ..training.checkpoint import Checkpointing, checkpoint_path, remove_checkpoint, room_needed
from ..pruning.criteria import (BLOCK_ONLY_CRITERIA, DATA_CRITERIA, DEFAULT_CRITERION, STATS_CRITERIA, Context,
                                evidence_warnings, select)
from ..data import DataOptions, ModelData, stored_source
from ..training.distributed import data_parallel, world
from ..common.errors import CompressError
from ..export import check_out_dir, export_model
from ..common.fileio import owned, sha256
from ..common.layers import count_params
from ..model.bundle import ModelBundle, check_num_classes, load_model, save_model
from ..model.paths import Output, check_outputs, check_room, data_inputs, model_inputs, model_outputs
from ..pruning.planning import PruneTarget, flops_budget
from ..common.progress import NULL, Progress
from ..training.schedules import n_keep, never_adapted
from ..model.sidecar import LineageStep, Sidecar
from ..graph.surgery import SELF_CHECK_IMAGES, RemovalCheck, RemovedUnit, check_removal, remove_blocks, remove_branches
from ..training.config import FitConfig
from ..training.evaluate import accuracy
from ..training.loop import fit
from ..model.weights import check_weights_path


# what healing distils from the unpruned model -> what that means (feeds `prune --distill-target`)
DISTILL_TARGETS = {"logits": "KL on the logits",
                   "hidden": "that plus an MSE on the final hidden state, the classifier's input"}


@dataclass
class HealConfig:
    """How to heal after removal; validates itself on construction (errors name the parameter)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    distill: bool = True
    temperature: float = 2.0
    alpha: float = 0.5
    patience: int = 2
    seed: int = 0
    distill_target: str = "logits"   # "hidden": the logits and the final hidden state (the classifier's input)

    def __post_init__(self):
        finite = all(math.isfinite(v) for v in (self.alpha, self.temperature, self.lr, self.weight_decay))
        if self.epochs < 0 or self.batch_size < 1 or self.patience < 0 or not finite \
                or not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise CompressError("`epochs` must be >= 0, `batch_size` >= 1, `patience` >= 0, `alpha` in [0, 1], "
                                "`temperature` > 0, `lr` > 0 and `weight_decay` >= 0 (finite numbers)",
                                param=("epochs", "batch_size", "patience", "alpha", "temperature", "lr",
                                       "weight_decay"))
        if self.distill_target not in DISTILL_TARGETS:
            raise CompressError(f"`distill_target` must be one of {', '.join(DISTILL_TARGETS)}, got "
                                f"{self.distill_target!r}", param="distill_target")

    def fit_config(self) -> FitConfig:
        """Fine-tuning with distillation, keeping the best epoch (the unhealed start included)."""
        return FitConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                         seed=self.seed, drop_path_rate=0.0, schedule="uniform", alpha=self.alpha,
                         temperature=self.temperature,
                         hidden_weight=1.0 if self.distill_target == "hidden" else 0.0,
                         patience=self.patience, keep_best=True)


@dataclass
class PrunePlan:
    """Which units go (indices into the model's current units: its blocks, or under ``granularity`` branch its
    blocks split into branches), and what that saves.

    ``removed``: the removed units (:class:`compress.graph.surgery.RemovedUnit`: index, path, a branch's name
    ``blocks.3:attn``, parameters, FLOPs, own DropPath layers; a branch also its block, DropPath call, kind, label
    and removal record);
    ``remove_paths``: the blocks removed whole; ``remove_branches``: the branches whose body goes;
    ``keep_flops``: the FLOPs budget it was planned for (None: planned by count or by hand).
    """

    blocks_before: int
    blocks_after: int
    keep: float | None
    criterion: str
    seed: int
    remove: list[int]
    remove_paths: list[str]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    out: str | None = None
    keep_flops: float | None = None
    removed: list[RemovedUnit] = field(default_factory=list)
    granularity: str = "block"
    remove_branches: list[dict] = field(default_factory=list)   # branches whose body goes (the rest of a block)
    warnings: list[str] = field(default_factory=list)   # reasons to doubt the ranking (weak statistics)

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / self.flops_before if self.flops_before else 1.0

    def removed_labels(self) -> list[str]:
        """The removed units as a reader names them: ``attn at depth 3``, ``block 5``."""
        return [u.name for u in self.removed]

    def to_json(self) -> dict:
        return {**asdict(self), "removed": [u.to_json() for u in self.removed], "flops_ratio": self.flops_ratio}

    @classmethod
    def from_json(cls, d: dict) -> "PrunePlan":
        """A plan as :meth:`to_json` wrote it (``removed`` entries with or without ``granularity``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names and k != "removed"},
                   removed=[RemovedUnit.from_json(r) for r in d.get("removed") or []])


@dataclass
class PruneAccuracy:
    """Test accuracies around a prune; None where not measured (no test data; no healing)."""

    original: float | None = None
    after_removal: float | None = None
    after_healing: float | None = None

    @property
    def final(self) -> float | None:
        """The pruned model's: after healing, else after removal."""
        return self.after_healing if self.after_healing is not None else self.after_removal

    def to_json(self) -> dict:
        """The measured ones only (as plans and lineage steps have always recorded them)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class PruneResult:
    """What ``prune`` did: the plan; unless a dry run, test accuracies (``original``,
    ``after_removal``, ``after_healing``), the best healing epoch, where the model went."""

    plan: PrunePlan
    written: bool
    dry_run: bool = False
    accuracy: PruneAccuracy = field(default_factory=PruneAccuracy)
    best_epoch: int | None = None
    out: str | None = None
    export: dict | None = None   # export.json of the healed model, when asked for
    surgery_check: RemovalCheck | None = None   # the self-check's figure

    def to_json(self) -> dict:
        if self.dry_run:
            return {"plan": self.plan.to_json(), "written": False}
        out = {"plan": self.plan.to_json(),
               "surgery_check": self.surgery_check.to_json() if self.surgery_check is not None else None,
               "accuracy": self.accuracy.to_json(),
               "best_epoch": self.best_epoch, "written": self.written, "out": self.out}
        if self.export is not None:
            out["export"] = self.export
        return out


def default_out(model_path, keep: float | None = None, n_kept: int = 0, keep_flops: float | None = None) -> Path:
    p = Path(model_path)
    tag = f"keep{keep:g}" if keep is not None else f"flops{keep_flops:g}" if keep_flops is not None else f"{n_kept}blocks"
    return p.with_name(f"{p.stem}.{tag}{p.suffix}")


# --------------------------------------------------------------------------- plan
def _explicit_removal(blocks: list[int], n_blocks: int) -> list[int]:
    if len(set(blocks)) != len(blocks):
        raise CompressError(f"`blocks` repeats a block: {','.join(map(str, blocks))}", param="blocks")
    bad = [b for b in blocks if not 0 <= b < n_blocks]
    if bad:
        raise CompressError(f"`blocks` {','.join(map(str, bad))} out of range: the model has blocks 0..{n_blocks - 1}",
                            param="blocks")
    if len(blocks) >= n_blocks:
        raise CompressError(f"`blocks` would remove all {n_blocks} blocks; keep at least one", param="blocks")
    return sorted(blocks)


def _n_remove(keep: float, n_blocks: int) -> int:
    if keep * n_blocks < 0.5:
        raise CompressError(f"`keep` {keep} of {n_blocks} blocks leaves no block; the smallest keep is "
                            f"{0.5 / n_blocks:.3f}", param="keep")
    return n_blocks - n_keep(n_blocks, keep)


def _criterion_context(bundle: ModelBundle, found: list, data, seed: int, granularity: str = "block",
                       criterion: str = "") -> Context:
    stats = bundle.sidecar.statistics or None
    by_path = {s["block"]: s for s in stats} if stats else {}
    recorded = bundle.sidecar.granularity or "block"
    if stats and criterion in STATS_CRITERIA and recorded != granularity and not any(u.path in by_path for u in found):
        raise CompressError(f"criterion {criterion!r} needs survival statistics per {granularity}, but this model's "
                            f"were recorded per {recorded}: prune with `granularity` {recorded}, or train with "
                            f"`granularity` {granularity}", param=("granularity", "criterion"))
    training = bundle.sidecar.training or {}
    return Context(blocks=found, stats=[by_path.get(b.path) for b in found] if stats else None,
                   schedule=bundle.sidecar.schedule.get("name"), model=bundle.model,
                   input_shape=bundle.input_shape, data=data, seed=seed,
                   adapted=never_adapted(bundle.sidecar.schedule, training.get("history")) is None)


def _removal(target: PruneTarget, criterion: str, ctx: Context, total: int) -> tuple[list[int], str]:
    """(indices of the blocks to remove, the criterion named in the plan) for ``target``."""
    n = len(ctx.blocks)
    if target.blocks is not None:
        return _explicit_removal(target.blocks, n), "explicit"
    if target.keep_flops is not None:
        refine = any(isinstance(u, Branch) for u in ctx.blocks)
        return flops_budget(criterion, ctx, [b.flops for b in ctx.blocks], total, target.keep_flops, refine), criterion
    return select(criterion, ctx, _n_remove(target.keep, n)), criterion


def _check_unit_criterion(criterion: str, units: list) -> None:
    if criterion in BLOCK_ONLY_CRITERIA and any(isinstance(u, Branch) for u in units):
        raise CompressError(f"criterion {criterion!r} compares a whole block's input and output, which a branch does "
                            "not have: use survival, importance, residual, every-other, last or random with "
                            "`granularity` branch", param=("criterion", "granularity"))


def plan(bundle: ModelBundle, keep=None, blocks=None, criterion=DEFAULT_CRITERION, seed=0, data=None,
         keep_flops=None, granularity: str | None = None) -> PrunePlan:
    """Which blocks go, and what that saves (parameters, FLOPs), without touching anything.

    Exactly one of ``keep`` (share of blocks kept), ``keep_flops`` (FLOPs budget: see
    :mod:`compress.pruning.planning` for how blocks of unequal cost are chosen) or ``blocks`` (indices).
    The blocks are found as the model's sidecar says (``blocks_from``: by path pattern, else by skip
    connection).
    """
    target = PruneTarget(keep, keep_flops, blocks)
    granularity = check_granularity(granularity) or bundle.sidecar.granularity or "block"
    pattern = bundle.sidecar.blocks_from
    found, _, total = units_with_flops(bundle.model, bundle.input_shape, pattern, granularity)
    n = len(found)
    if n == 0:
        raise CompressError(f"nothing to prune: {explain_no_blocks(bundle.model, bundle.input_shape, pattern)}", param="blocks_from")
    _check_unit_criterion(criterion, found)
    ctx = _criterion_context(bundle, found, data, seed, granularity, criterion)
    remove, criterion = _removal(target, criterion, ctx, total)
    params = count_params(bundle.model)
    gone = [found[i] for i in remove]
    surgery = surgery_plan(found, remove)
    return PrunePlan(blocks_before=n, blocks_after=n - len(remove), keep=keep, criterion=criterion, seed=seed,
                     remove=remove, remove_paths=surgery.block_paths,
                     params_before=params, params_after=params - sum(b.params for b in gone),
                     flops_before=total, flops_after=total - sum(b.flops for b in gone), keep_flops=keep_flops,
                     removed=[u.removed_unit() for u in gone], granularity=granularity,
                     remove_branches=[b.removal() for b in surgery.branches],
                     warnings=evidence_warnings(ctx, criterion) if target.blocks is None else [])


# --------------------------------------------------------------------------- prune
def _healing_data(teacher: ModelBundle, data: str | None, heal: HealConfig, criterion: str,
                  options: DataOptions | None = None):
    """(source, ModelData): the healing/criterion data through the parent's preprocess (``options`` may change
    its augmentation and the loader's workers), checked against the model's classes; every image header-checked."""
    source = data or teacher.sidecar.data_source
    if (heal.epochs > 0 or criterion in DATA_CRITERIA) and not source:
        raise CompressError("healing needs data: pass `data` (the model's sidecar names none), or set `epochs` to 0",
                            param=("data", "epochs"))
    ds = ModelData.of_model(teacher, source, options) if source else None
    if ds is not None:
        check_num_classes(teacher.model, teacher.input_shape, ds.num_classes)
    return source, ds


def _out_path(model_path: Path, out, p: PrunePlan, data: str | None, export_dir) -> Path:
    """The output model's path, refused if it (or the export directory) would overwrite what is read."""
    out = check_weights_path(default_out(model_path, p.keep, p.blocks_after, p.keep_flops) if out is None else out)
    exported = [Output(Path(export_dir), "export_dir", tree=True)] if export_dir is not None else []
    check_outputs(model_outputs(out) + exported, model_inputs(model_path) + data_inputs(data))
    return out


@dataclass
class _Healed:
    student: object
    accuracy: PruneAccuracy
    history: list
    best_epoch: int | None
    check: RemovalCheck | None = None
    augment: str | None = None   # healing's training augmentation


def _check_batch(ds: ModelData | None, input_shape, seed: int) -> paddle.Tensor:
    """The self-check's images: test images (training images without a test split), through the model's
    evaluation preprocess; else seeded noise."""
    if ds is not None:
        x, _ = ds.arrays("test" if ds.size("test") else "train", SELF_CHECK_IMAGES, seed)
        return paddle.to_tensor(x)
    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.standard_normal((SELF_CHECK_IMAGES, *input_shape)).astype("float32"))


def _removed(model_path: Path, teacher: ModelBundle, p: PrunePlan, ds: ModelData | None, seed: int,
             progress: Progress) -> tuple[object, RemovalCheck]:
    """A copy of the model with the plan's blocks removed, checked against the teacher with those blocks switched
    off (:func:`compress.graph.surgery.check_removal`; raises on a mismatch, nothing written). Copies of the teacher in
    memory, not new reads of ``model_path``: the input is read once, so a writer replacing it meanwhile cannot give
    the student other weights than the teacher's."""
    student = copy.deepcopy(teacher.model)
    remove_blocks(student, p.remove_paths)
    remove_branches(student, p.remove_branches)
    check = check_removal(teacher.model, student, p.removed, _check_batch(ds, teacher.input_shape, seed),
                          rebuild=lambda: copy.deepcopy(teacher.model))
    progress.log(f"surgery self-check: max abs diff {check.max_abs_diff:.2g} on {check.images} images "
                 f"(allowed {check.tolerance:g})")
    return student, check


def _remove_and_heal(model_path: Path, teacher: ModelBundle, p: PrunePlan, ds: ModelData | None, heal: HealConfig,
                     progress: Progress, shard: tuple[int, int], ck: Checkpointing | None = None) -> _Healed:
    wrap = data_parallel(shard)
    student, check = _removed(model_path, teacher, p, ds, heal.seed, progress)
    acc = PruneAccuracy()
    if ds is not None:
        acc.original, acc.after_removal = accuracy(teacher.model, ds, "test"), accuracy(student, ds, "test")
        progress.log(f"test accuracy: original {acc.original:.4f}, after removing "
                     f"{len(p.remove)} blocks {acc.after_removal:.4f}")
    healed = _Healed(student, acc, [], None, check,
                     ds.preprocess.augment if ds is not None and heal.epochs > 0 else None)
    if heal.epochs > 0:
        res = fit(student, ds, heal.fit_config(), teacher=teacher.model if heal.distill else None, progress=progress,
                  shard=shard, wrap=wrap, checkpoint=ck)
        healed.history, healed.best_epoch = res.history, res.best_epoch
        acc.after_healing = accuracy(student, ds, "test")
        progress.log(f"test accuracy after healing: {acc.after_healing:.4f} (best epoch {res.best_epoch})")
    return healed


def _branch_step(p: PrunePlan) -> dict:
    """A branch-level prune step's record: its granularity and the units removed, by name (attn at depth 3)."""
    if p.granularity != "branch":
        return {}
    units = [{"unit": u.path, "kind": u.kind or "block", "depth": u.depth if u.is_branch else u.index, "label": u.name}
             for u in p.removed]
    return {"granularity": "branch", "removed_units": units}


def _branch_fields(parent: Sidecar, p: PrunePlan, kept_units: list) -> dict:
    """The child's granularity, current branches and removed branches (a block removed whole takes its
    removed branches' records with it); nothing for a block-level model that never lost a branch."""
    gone = set(p.remove_paths)
    removed = [r for r in parent.removed_branches if r["block"] not in gone] + list(p.remove_branches)
    return sidecar_fields(p.granularity, kept_units, removed, had_removed=bool(parent.removed_branches))


def _child_sidecar(model_path: Path, teacher: ModelBundle, p: PrunePlan, healed: _Healed, keep, heal: HealConfig,
                   source: str | None) -> Sidecar:
    """The parent's sidecar with the blocks, sizes, statistics, metrics and lineage of the pruned model."""
    parent, acc = teacher.sidecar, healed.accuracy
    kept_units, kept_blocks, total = units_with_flops(healed.student, teacher.input_shape, parent.blocks_from,
                                                      p.granularity)
    kept_paths = {u.path for u in kept_units}
    all_removed = list(parent.removed_blocks) + p.remove_paths
    # the first parent's FLOPs: unknown when an earlier prune (before FLOPs were recorded) did not say
    original_flops = parent.prune_steps[0].get("flops_before") if parent.prune_steps else p.flops_before
    # the hash of the bytes the teacher was loaded from (checked against them when read), not of a new read
    parent_sha = teacher.sidecar.weights_sha256 or sha256(model_path)
    step = LineageStep.of("prune", str(model_path.resolve()), parent_sha256=parent_sha, keep=keep, **{
            "keep_total": len(kept_blocks) / (len(kept_blocks) + len(all_removed)), "criterion": p.criterion,
            "keep_flops": p.keep_flops, "flops_before": p.flops_before, "flops_after": total,
            "flops_ratio": total / p.flops_before,
            "flops_ratio_total": total / original_flops if original_flops else None,
            "surgery_check": healed.check.to_json(),
            "seed": heal.seed, "removed": p.remove_paths, **_branch_step(p), "blocks_before": p.blocks_before,
            "blocks_after": p.blocks_after,
            "healing": {**asdict(heal), "best_epoch": healed.best_epoch, "history": healed.history,
                        "data": stored_source(source), "augment": healed.augment},
            "accuracy": acc.to_json()})
    return parent.replace(
        drop=("statistics_sums",),  # the raw sums describe the parent's blocks
        removed_blocks=all_removed, blocks=[b.to_json() for b in kept_blocks],
        **_branch_fields(parent, p, kept_units),
        params=count_params(healed.student), flops=total,
        statistics=[s for s in parent.statistics if s["block"] in kept_paths] if parent.statistics else None,
        metrics={"test_accuracy": acc.final, "accuracy_original": acc.original,
                 "accuracy_after_removal": acc.after_removal, "accuracy_after_healing": acc.after_healing},
        lineage=list(parent.lineage) + [step.to_json()])


def prune(model_path, keep: float | None = None, blocks: list[int] | None = None,
          criterion: str = DEFAULT_CRITERION, out=None, data: str | None = None,
          heal: HealConfig | None = None, dry_run: bool = False, export_dir=None,
          progress: Progress = NULL, blocks_from: str | None = None, keep_flops: float | None = None,
          data_options: DataOptions | None = None, resume: bool | None = False,
          granularity: str | None = None) -> PruneResult:
    """The ``prune`` command: plan, remove, check the surgery, heal with distillation, write ``out`` (+ sidecar),
    optionally export.

    ``granularity``: the units removed, ``block`` or ``branch`` (:mod:`compress.graph.branches`: a block's attention
    and MLP branches apart; a block all of whose branches go is removed whole); default: the one the model
    was trained with (its sidecar's), else block.

    Exactly one of ``keep``, ``keep_flops`` (at most that share of the FLOPs stays, see
    :mod:`compress.pruning.planning`) or ``blocks``. Right after removal the pruned model must match the
    unpruned one with the same blocks switched off (:func:`compress.graph.surgery.check_removal`), else
    nothing is written (exit code 3). ``blocks_from``: pick the blocks by path pattern (default: as
    recorded in the model's sidecar, else by skip connection); recorded in the pruned model's sidecar.
    ``data_options``: healing's augmentation (default: the parent's, as its sidecar records) and the loader's
    worker processes. Healing saves its state after every epoch to ``OUT.ckpt/`` (removed once ``out``
    is written); ``resume`` goes on from there, ``resume=None`` if there is one of this run (see
    :mod:`compress.training.checkpoint`).
    """
    PruneTarget(keep, keep_flops, blocks)  # refuse a bad target before any work
    check_granularity(granularity)
    heal = heal or HealConfig()
    model_path = check_weights_path(model_path)
    if export_dir is not None:  # refuse a bad one before any work
        check_out_dir(Path(export_dir), False, model_path, param="export_dir")
    if blocks_from is not None:
        compile_pattern(blocks_from)
    teacher = load_model(model_path)
    if blocks_from is not None:
        teacher.sidecar = teacher.sidecar.replace(blocks_from=blocks_from)
    source, ds = _healing_data(teacher, data, heal, criterion, data_options)
    p = plan(teacher, keep, blocks, criterion, heal.seed, ds, keep_flops, granularity)
    for w in p.warnings:
        progress.log(f"warning: {w}")
    out = _out_path(model_path, out, p, source, export_dir)
    p.out = str(out)
    if dry_run:
        return PruneResult(p, written=False, dry_run=True)
    rank, n_ranks = world()
    if rank != 0:
        progress = NULL
    if rank == 0:
        check_room(out, room_needed(teacher.model))
    with owned(out) if rank == 0 else contextlib.nullcontext():   # the output and its checkpoint are this run's
        ck = Checkpointing(checkpoint_path(out), {"removed": p.remove_paths, **(
            {"removed_branches": p.remove_branches} if p.remove_branches else {})}, resume=resume)
        healed = _remove_and_heal(model_path, teacher, p, ds, heal, progress, (rank, n_ranks), ck)
        result = PruneResult(p, written=rank == 0, accuracy=healed.accuracy, best_epoch=healed.best_epoch,
                             out=str(out), surgery_check=healed.check)
        if rank == 0:
            save_model(healed.student, out, _child_sidecar(model_path, teacher, p, healed, keep, heal, source))
            progress.log(f"wrote {out}")
            remove_checkpoint(ck.path)
    if rank == 0 and export_dir is not None:
        result.export = export_model(out, export_dir, progress=progress)
    return result
