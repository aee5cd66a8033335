"""The sidecar: the JSON file next to a weights file that makes it usable.

A ``.pdparams`` file holds weights only. ``MODEL.compress.json`` says what the weights
belong to (architecture, input shape, classes, data, pre-processing), which blocks
were removed, and what was measured (statistics, metrics, lineage). :class:`Sidecar`
is its typed form, in the spirit of timm's ``PretrainedCfg``: one field per documented
key, read with :meth:`Sidecar.from_json` and written with :meth:`Sidecar.to_json`.
The file's content does not change: the same keys in the same order, ``format``
first; keys this version does not know are kept and written back; a known key absent
from a file stays absent while it keeps its default.

A ``Sidecar`` also reads like the JSON object it comes from (``sidecar["blocks"]``,
``sidecar.get("lineage")``, ``{**sidecar}``), so code written against the plain dict
keeps working.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import CompressError
from ..common.fileio import atomic_path, json_default, not_a_file, sha256, sync_dir
from .weights import WEIGHT_SUFFIXES

SIDECAR_SUFFIX = ".compress.json"
SIDECAR_FORMAT = "compress-sidecar/1"


LINEAGE_KINDS = ("train", "prune")


@dataclass(frozen=True, eq=False)
class LineageStep(Mapping):
    """One step of a model's history, as its sidecar's ``lineage`` lists them: ``kind`` "train" (trained or
    fine-tuned from ``parent``) or "prune" (pruned from ``parent``; the record also holds what the step did and
    measured: keep ratios, FLOPs, the surgery check, healing, accuracy).

    The JSON object is ``record`` (``{"parent": ..., "step": kind, ...}``), and a step reads like it
    (``step["keep_total"]``, ``step.get("granularity")``). A prune step written before steps named their
    kind is recognised by its ``keep_total``.
    """

    kind: str
    record: dict

    def __post_init__(self):
        if self.kind not in LINEAGE_KINDS:
            raise ValueError(f"a lineage step is one of {', '.join(LINEAGE_KINDS)}, not {self.kind!r}")

    @classmethod
    def from_json(cls, d: Mapping) -> "LineageStep":
        kind = d.get("step") or ("prune" if "keep_total" in d else "train")
        return cls(kind, dict(d))

    @classmethod
    def of(cls, kind: str, parent: str, **fields) -> "LineageStep":
        """A new step: its parent first, then its kind, then the rest."""
        return cls(kind, {"parent": parent, "step": kind, **fields})

    @property
    def parent(self) -> str | None:
        return self.record.get("parent")

    def to_json(self) -> dict:
        return dict(self.record)

    def __getitem__(self, key):
        return self.record[key]

    def __iter__(self):
        return iter(self.record)

    def __len__(self) -> int:
        return len(self.record)


@dataclass(eq=False)
class Sidecar(Mapping):
    """Everything compress knows about a weights file (see the README's sidecar table)."""

    arch: dict | None = None                 # {"spec": ..., "kwargs": {...}}
    input_shape: list | None = None          # [C, H, W]
    num_classes: int | None = None
    class_names: list | None = None
    data: dict | None = None                 # source and split sizes
    preprocess: dict | None = None           # pixel normalisation, to repeat on the device
    removed_blocks: list = field(default_factory=list)   # paths removed from the architecture
    blocks: list = field(default_factory=list)           # the current removable blocks
    blocks_from: str | None = None           # the path pattern that picked the blocks (None: skip connections)
    granularity: str | None = None           # the units trained and pruned: "block" (None: the same) or "branch"
    branches: list = field(default_factory=list)          # the current branches (granularity "branch")
    removed_branches: list = field(default_factory=list)  # branches removed: block path, call, kind, body, shape
    params: int | None = None
    flops: int | None = None
    training: dict | None = None             # settings, schedule, history, seconds
    statistics: list | None = None           # per-block survival statistics
    statistics_sums: dict | None = None      # their raw running sums
    metrics: dict = field(default_factory=dict)
    lineage: list = field(default_factory=list)          # one entry per train-from/prune step
    pretrained: dict | None = None           # the foreign checkpoint fine-tuned from: path, sha256, reinitialized keys
    weights_sha256: str | None = None        # of the weights file it was written with (see compress.model.storage)
    format: str = SIDECAR_FORMAT
    extra: dict = field(default_factory=dict)            # keys this version does not know
    absent: frozenset = frozenset()          # known keys the file did not have

    # -- JSON
    @classmethod
    def from_json(cls, data: Mapping) -> "Sidecar":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "absent"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known},
                   absent=frozenset(_KEYS) - set(data))

    def to_json(self) -> dict:
        out = {"format": self.format}
        for name in _KEYS:
            value = getattr(self, name)
            if name in self.absent and value == _DEFAULTS[name]:
                continue
            out[name] = value
        out.update(self.extra)
        return out

    def replace(self, **changes) -> "Sidecar":
        """A copy with ``changes`` (``drop=("key", ...)`` also leaves those keys out of the file)."""
        drop = frozenset(changes.pop("drop", ()))
        absent = (self.absent - set(changes)) | drop  # a key given a value is written, as with dict.update
        changes.update({k: _DEFAULTS[k] for k in drop})
        return dataclasses.replace(self, absent=absent, **changes)

    # -- derived
    @property
    def spec(self) -> str | None:
        return self.arch.get("spec") if self.arch else None

    @property
    def data_source(self) -> str | None:
        """The data source recorded by ``train`` (a registry name or an absolute path)."""
        return self.data.get("source") if self.data else None

    @property
    def schedule(self) -> dict:
        """The drop-rate schedule the statistics were recorded under ({} if none)."""
        return (self.training.get("schedule") if self.training else None) or {}

    @property
    def steps(self) -> list[LineageStep]:
        """The lineage, typed: one :class:`LineageStep` per train-from or prune step, oldest first."""
        return [LineageStep.from_json(s) for s in self.lineage]

    @property
    def prune_steps(self) -> list[LineageStep]:
        return [s for s in self.steps if s.kind == "prune"]

    @property
    def removed_units(self) -> list[dict]:
        """Every unit its prune steps removed, oldest first: {"unit", "kind" (attn, mlp, block), "label"}
        (a branch-level step names its branches: ``attn at depth 3``; depth counts the blocks it was pruned from)."""
        out = []
        for step in self.prune_steps:
            if step.get("granularity") == "branch" and isinstance(step.get("removed_units"), list):
                out += [u for u in step["removed_units"] if isinstance(u, dict)]
            else:
                out += [{"unit": p, "kind": "block", "label": p} for p in step.get("removed") or []]
        return out

    # -- read like the JSON object
    def __getitem__(self, key):
        if key in self.extra:
            return self.extra[key]
        if key == "format" or (key in _DEFAULTS and (key not in self.absent or getattr(self, key) != _DEFAULTS[key])):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self):
        return iter(self.to_json())

    def __len__(self):
        return len(self.to_json())

    def __eq__(self, other):
        if isinstance(other, Mapping):
            return self.to_json() == dict(other)
        return NotImplemented


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


_DEFAULTS = {f.name: _default(f) for f in dataclasses.fields(Sidecar) if f.name not in ("format", "extra", "absent")}
_KEYS = tuple(_DEFAULTS)


def sidecar_path(weights: str | os.PathLike) -> Path:
    p = Path(weights)
    return p.with_name(p.stem + SIDECAR_SUFFIX) if p.suffix in WEIGHT_SUFFIXES else p.with_name(p.name + SIDECAR_SUFFIX)


def pending_path(weights: str | os.PathLike) -> Path:
    """The journal of a write in progress: the new sidecar, waiting for its weights (``.M.compress.json.pending``)."""
    sc = sidecar_path(weights)
    return sc.with_name(f".{sc.name}.pending")


# --------------------------------------------------------------------------- checking what a file says
MAX_INPUT_ELEMENTS = 1 << 26   # C*H*W of one image: 64 M values (256 MB as float32), e.g. 3 x 4729 x 4729
MAX_CLASSES = 1_000_000


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_input_shape(shape, param: str | None = None) -> tuple[int, int, int]:
    """``shape`` as (C, H, W) if it is three positive integers of a sane size; else a CompressError
    (checked before anything of that size is allocated). ``param``: the parameter that gave it."""
    what = f"`{param}`" if param else "input_shape"
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(v) and v > 0 for v in shape):
        raise CompressError(f"{what} must be [C, H, W] with positive integers, got {json.dumps(shape, default=str)}",
                            param=param)
    if shape[0] * shape[1] * shape[2] > MAX_INPUT_ELEMENTS:
        raise CompressError(f"{what} {list(shape)} is too large: {shape[0] * shape[1] * shape[2]:,} values per image, "
                            f"at most {MAX_INPUT_ELEMENTS:,} are supported", param=param)
    return tuple(shape)


def _is_sha256(v) -> bool:
    return isinstance(v, str) and len(v) == 64


def _of(kind, *, optional=True, items=None):
    def ok(v):
        if v is None:
            return optional
        return isinstance(v, kind) and (items is None or all(isinstance(i, items) for i in v))
    return ok


def _number(v, low=0.0, high=math.inf, *, open_low=False) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > low if open_low else v >= low) and v <= high)


def _lineage_step_ok(step) -> bool:
    """A prune step's typed fields (absent or null where optional): the FLOPs budget and ratios in (0, 1],
    the surgery self-check's figure {max_abs_diff >= 0, images >= 1, tolerance >= 0}."""
    if not isinstance(step, dict) or step.get("step", "train") not in LINEAGE_KINDS:
        return False
    ratios = all(step.get(k) is None or _number(step[k], 0.0, 1.0, open_low=True)
                 for k in ("keep_flops", "flops_ratio", "flops_ratio_total"))
    check = step.get("surgery_check")
    check_ok = check is None or (isinstance(check, dict) and _number(check.get("max_abs_diff"))
                                 and _is_int(check.get("images")) and check["images"] >= 1
                                 and _number(check.get("tolerance", 0.0)))
    return ratios and check_ok


def _removed_branch_ok(r) -> bool:
    """A removed branch's record: its block's path, DropPath call number, body (child names), compute shape."""
    return (isinstance(r, dict) and isinstance(r.get("block"), str) and _is_int(r.get("call")) and r["call"] >= 0
            and _of(list, optional=False, items=str)(r.get("body")) and bool(r["body"])
            and isinstance(r.get("shape"), list) and all(_is_int(v) and v > 0 for v in r["shape"]))


_FIELD_RULES = {  # field -> (check, what it must be)
    "arch": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("spec"), str) and v["spec"]
                                     and isinstance(v.get("kwargs", {}), dict)),
             'an object {"spec": "name or module:Class", "kwargs": {...}}'),
    "num_classes": (lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_CLASSES),
                    f"a positive integer (at most {MAX_CLASSES:,})"),
    "class_names": (_of(list, items=str), "a list of strings"),
    "data": (_of(dict), "an object"), "preprocess": (_of(dict), "an object"), "training": (_of(dict), "an object"),
    "statistics_sums": (_of(dict), "an object"), "metrics": (_of(dict, optional=False), "an object"),
    "removed_blocks": (_of(list, optional=False, items=str), "a list of block paths"),
    "blocks": (_of(list, optional=False, items=dict), "a list of objects"),
    "blocks_from": (_of(str), "a path pattern (text)"),
    "granularity": (lambda v: v is None or v in ("block", "branch"), '"block" or "branch"'),
    "branches": (_of(list, optional=False, items=dict), "a list of objects"),
    "removed_branches": (lambda v: isinstance(v, list) and all(_removed_branch_ok(r) for r in v),
                         'a list of objects {"block": path, "call": integer >= 0, "body": [child names], '
                         '"shape": [positive integers]}'),
    "statistics": (_of(list, items=dict), "a list of objects"),
    "lineage": (lambda v: isinstance(v, list) and all(_lineage_step_ok(s) for s in v),
                "a list of objects (keep_flops, flops_ratio, flops_ratio_total: numbers in (0, 1]; surgery_check: "
                "{max_abs_diff: number >= 0, images: integer >= 1, tolerance: number >= 0})"),
    "params": (lambda v: v is None or _is_int(v), "an integer"), "flops": (lambda v: v is None or _is_int(v), "an integer"),
    "weights_sha256": (lambda v: v is None or _is_sha256(v), "a sha256 hex digest"),
    "pretrained": (lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("path"), str)
                                           and _is_sha256(v.get("sha256"))
                                           and _of(list, items=str)(v.get("reinitialized", []))),
                   'an object {"path": ..., "sha256": ..., "reinitialized": [keys]}'),
}


def check_sidecar(sc: Sidecar, path) -> Sidecar:
    """Refuse a sidecar whose known fields have the wrong type or an insane value (exit code 2)."""
    for name, (ok, must) in _FIELD_RULES.items():
        value = getattr(sc, name)
        if not ok(value):
            raise CompressError(f"{path}: not a valid sidecar: {name} must be {must}, got "
                                f"{json.dumps(value, default=str)[:80]}")
    if sc.input_shape is not None:
        try:
            check_input_shape(sc.input_shape)
        except CompressError as e:
            raise CompressError(f"{path}: not a valid sidecar: {e}") from None
    return sc


# --------------------------------------------------------------------------- reading and writing
def parse_sidecar(text: str, path) -> Sidecar:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CompressError(f"{path}: not a valid sidecar ({e})") from None
    except RecursionError:
        raise CompressError(f"{path}: not a valid sidecar (nested too deeply)") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise CompressError(f"{path}: not a compress sidecar (format is not {SIDECAR_FORMAT})")
    return check_sidecar(Sidecar.from_json(data), path)


def _read(path: Path) -> Sidecar:
    try:
        return parse_sidecar(path.read_text(), path)
    except OSError as e:
        raise CompressError(f"{path}: cannot read it ({e.strerror or e})") from None


def _journal(weights: Path) -> Sidecar | None:
    """The journal (pending sidecar) of a write that was interrupted after its weights went in: it names these
    weights' sha256 while the sidecar in place does not. None otherwise; a journal beside a sidecar that matches
    the weights (stale, or planted) is ignored, and said so on the ``compress`` logger."""
    pending = pending_path(weights)
    if not pending.is_file() or not weights.is_file():
        return None
    try:
        sc = parse_sidecar(pending.read_text(), pending)
    except (CompressError, OSError, RecursionError):
        return None
    sha = sha256(weights)
    if sc.weights_sha256 is None or sc.weights_sha256 != sha:
        return None
    try:
        current = _read(sidecar_path(weights)) if sidecar_path(weights).is_file() else None
    except CompressError:
        current = None
    if current is not None and current.weights_sha256 == sha:
        logging.getLogger("compress").warning(f"{pending}: ignored (the sidecar in place matches the weights; only "
                                              "an interrupted write's own journal stands in for it)")
        return None
    return sc


def finish_journal(weights: Path) -> None:
    """Under the directory's lock (a writer's): move an interrupted write's journal into place."""
    if _journal(weights) is not None:
        os.replace(pending_path(weights), sidecar_path(weights))
        sync_dir(weights.parent)


def read_sidecar(weights: str | os.PathLike, required: bool = True) -> Sidecar | None:
    """The sidecar next to ``weights``, checked; None if there is none and it is not ``required``.

    A write of weights + sidecar that was interrupted between its two renames is completed
    here (see :mod:`compress.model.storage`).
    """
    weights = Path(weights)
    done = _journal(weights)   # read as it is: a reader never moves it (finish_journal)
    if done is not None:
        return done
    path = sidecar_path(weights)
    if not path.is_file():
        if path.exists() or path.is_symlink():
            raise not_a_file(path, "sidecar file")
        if required:
            raise CompressError(f"{weights}: no sidecar {path.name} next to it; use a model written by compress "
                                "(`compress train` writes one), or give `arch` where the command has it", param="arch")
        return None
    return _read(path)


def sidecar_text(sidecar: Sidecar | Mapping) -> str:
    """The JSON text of a sidecar (a plain mapping is taken as its JSON)."""
    sc = sidecar if isinstance(sidecar, Sidecar) else Sidecar.from_json(sidecar)
    return json.dumps({**sc.to_json(), "format": SIDECAR_FORMAT}, indent=2, default=json_default) + "\n"


def write_sidecar(weights: str | os.PathLike, sidecar: Sidecar | Mapping) -> Path:
    """Write the sidecar of ``weights`` alone, atomically (a model's weights and sidecar together go
    through :func:`compress.model.storage.write_model_files`)."""
    path = sidecar_path(weights)
    text = sidecar_text(sidecar)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
