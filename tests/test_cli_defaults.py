"""Every CLI flag's default is the library's: the field of the config it maps to, or the default of the
library function's keyword of the same name. A flag whose default drifted from the library is a flag
whose help lies about what ``compress.train(...)`` (or any command's function) does."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import typer

from compress.data import DataOptions
from compress.export import ExportOptions, export_model
from compress.measure.latency import TIMING
from compress.training.config import FitConfig
from compress.workflows.ablate import ablate
from compress.workflows.prune import HealConfig, prune
from compress.workflows.report import report
from compress.workflows.sweep import SWEEP_HEAL_EPOCHS, demo, sweep
from compress.workflows.train import train
from compress_cli.commands import ablate as ablate_cmd
from compress_cli.commands import demo as demo_cmd
from compress_cli.commands import export as export_cmd
from compress_cli.commands import prune as prune_cmd
from compress_cli.commands import report as report_cmd
from compress_cli.commands import sweep as sweep_cmd
from compress_cli.commands import train as train_cmd
from compress_cli.options import export_options, library_default


def flag_defaults(command) -> dict:
    """name -> default of every flag and argument of a typer command that has one."""
    out = {}
    for name, p in inspect.signature(command).parameters.items():
        d = getattr(p.default, "default", p.default)
        if d is not ... and d is not inspect.Parameter.empty:
            out[name] = d
    return out


def _same(a, b) -> bool:
    norm = lambda v: str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)  # noqa: E731
    return norm(a) == norm(b)


def config_mismatches(command, config, skip=()) -> list[tuple]:
    """(flag, its default, the field's) for every flag named as a field of ``config`` with another default."""
    flags = flag_defaults(command)
    return [(f.name, flags[f.name], f.default) for f in dataclasses.fields(config)
            if f.name in flags and f.name not in skip and not _same(flags[f.name], f.default)]


def function_mismatches(command, function, aliases=None) -> list[tuple]:
    """(flag, its default, the keyword's) for every flag named as a keyword of ``function`` (or aliased to one)."""
    flags, aliases = flag_defaults(command), aliases or {}
    params = inspect.signature(function).parameters
    out = []
    for flag, value in flags.items():
        p = params.get(aliases.get(flag, flag))
        if p is not None and p.default is not inspect.Parameter.empty and not _same(value, p.default):
            out.append((flag, value, p.default))
    return out


CONFIGS = [(train_cmd.train, FitConfig, ()), (train_cmd.train, DataOptions, ()),
           (prune_cmd.prune, HealConfig, ()), (prune_cmd.prune, DataOptions, ()),
           (sweep_cmd.sweep, HealConfig, ("epochs",))]   # a sweep heals SWEEP_HEAL_EPOCHS per point


@pytest.mark.parametrize("command,config,skip", CONFIGS, ids=[f"{c.__name__}-{k.__name__}" for c, k, _ in CONFIGS])
def test_flags_default_to_their_config_field(command, config, skip):
    assert set(flag_defaults(command)) & {f.name for f in dataclasses.fields(config)}  # the table maps something
    assert config_mismatches(command, config, skip) == []


FUNCTIONS = [(train_cmd.train, train, {}), (prune_cmd.prune, prune, {"export": "export_dir"}),
             (report_cmd.report, report, {}), (sweep_cmd.sweep, sweep, {}),
             (demo_cmd.demo, demo, {"out": "out_dir"}), (ablate_cmd.ablate, ablate, {}),
             (export_cmd.export, export_model, {})]


@pytest.mark.parametrize("command,function,aliases", FUNCTIONS, ids=[c.__name__ for c, _, _ in FUNCTIONS])
def test_flags_default_to_the_library_functions_keyword(command, function, aliases):
    assert function_mismatches(command, function, aliases) == []


def test_sweep_heals_as_many_epochs_from_the_cli_as_from_the_library():
    assert flag_defaults(sweep_cmd.sweep)["epochs"] == SWEEP_HEAL_EPOCHS


_EXPORT_FLAGS = ("atol", "rtol", "min_argmax_agreement", "min_top5_agreement", "int8", "int8_force", "int8_schemes",
                 "int8_seconds", "max_acc_drop", "calib_data")


@pytest.mark.parametrize("command", [export_cmd.export, report_cmd.report, sweep_cmd.sweep],
                         ids=["export", "report", "sweep"])
def test_export_flags_map_to_the_default_export_options(command):
    flags = flag_defaults(command)
    shared = {k: flags[k] for k in _EXPORT_FLAGS if k in flags}
    if command is export_cmd.export:
        shared.update(formats=flags["fmt"], opset=flags["opset"], batch=flags["batch"],
                      parity_images=flags["parity_images"], force=flags["force"])
    assert export_options(**shared) == ExportOptions()


@pytest.mark.parametrize("command", [report_cmd.report, sweep_cmd.sweep], ids=["report", "sweep"])
def test_timing_flags_map_to_the_default_timing(command):
    f = flag_defaults(command)
    options = report_cmd.report_options(f["threads"], f["batch"], f["warmup"], f["runs"], f["seconds"], f["onednn"])
    assert options == {**dataclasses.asdict(TIMING), "batch_sizes": list(TIMING.batch_sizes)}


def test_the_checks_see_a_drifted_default():
    def drifted(lr: float = typer.Option(1.0), epochs: int = typer.Option(HealConfig.epochs),
                criterion: str = typer.Option("random"), model: Path = typer.Argument(...)):
        pass

    assert config_mismatches(drifted, HealConfig) == [("lr", 1.0, HealConfig.lr)]
    assert function_mismatches(drifted, prune) == [("criterion", "random", library_default(prune, "criterion"))]
    with pytest.raises(TypeError, match="no default"):
        library_default(prune, "model_path")
