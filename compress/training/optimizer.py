"""The optimizer of a run and its state in a checkpoint, keyed by the model's names (not Paddle's)."""
from __future__ import annotations

import paddle

from ..common.errors import CompressError
from .config import FitConfig


def make_optimizer(model, config: FitConfig, steps_per_epoch: int):
    """AdamW under a one-cycle learning rate over all steps; returns (optimizer, scheduler or None)."""
    if config.epochs <= 0:
        return paddle.optimizer.AdamW(learning_rate=config.lr, parameters=model.parameters(),
                                      weight_decay=config.weight_decay), None
    sched = paddle.optimizer.lr.OneCycleLR(max_learning_rate=config.lr, total_steps=steps_per_epoch * config.epochs,
                                           phase_pct=0.1)
    return paddle.optimizer.AdamW(learning_rate=sched, parameters=model.parameters(),
                                  weight_decay=config.weight_decay), sched


def _param_names(model) -> list[tuple[str, str]]:
    """(state-dict key, Paddle's parameter name), longest names first (the optimizer's keys start with them)."""
    pairs = [(k, v.name) for k, v in model.state_dict().items()]
    return sorted(pairs, key=lambda p: -len(p[1]))


def optimizer_arrays(model, opt) -> tuple[dict, dict]:
    """The optimizer's state keyed by the model's state-dict names (``opt/KEY/moment1_0``; Paddle keys it by
    parameter names, which depend on how many layers the process built before), and the scheduler's."""
    arrays, sched = {}, None
    names = _param_names(model)
    for key, v in opt.state_dict().items():
        if key == "LR_Scheduler":
            sched = v
            continue
        own = next(((k, n) for k, n in names if key.startswith(n + "_")), None)
        if own is None:
            raise CompressError(f"optimizer state {key!r} belongs to no parameter of the model")
        arrays[f"opt/{own[0]}/{key[len(own[1]) + 1:]}"] = v.numpy()
    return arrays, {"scheduler": sched}


def load_optimizer_arrays(model, opt, arrays: dict, meta: dict) -> None:
    """Put back what :func:`optimizer_arrays` gave, under this process's parameter names."""
    names = dict(_param_names(model))
    state = {}
    for key, v in arrays.items():
        if key.startswith("opt/"):
            own, _, acc = key[4:].rpartition("/")
            state[f"{names[own]}_{acc}"] = paddle.to_tensor(v)
    if meta.get("scheduler") is not None:
        state["LR_Scheduler"] = meta["scheduler"]
    opt.set_state_dict(state)
