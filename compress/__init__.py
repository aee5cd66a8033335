"""compress: stochastic-depth block pruning for PaddlePaddle vision models.

The public API mirrors the CLI: every command is a function here.
"""
from .common import native as _native

_native.quiet_environment()  # before anything imports paddle

from ._version import __version__  # noqa: E402
from .common.errors import CompressError  # noqa: E402
from .model.bundle import load_model, resolve_arch, save_model  # noqa: E402
from .model.weights import load_weights  # noqa: E402
from .export import export_model  # noqa: E402
from .workflows.ablate import ablate  # noqa: E402
from .workflows.inspect import describe_blocks, read_stats  # noqa: E402
from .workflows.prune import prune  # noqa: E402
from .workflows.report import report  # noqa: E402
from .workflows.sweep import demo, sweep  # noqa: E402
from .workflows.train import train  # noqa: E402

__all__ = ["CompressError", "load_model", "save_model", "load_weights", "resolve_arch", "train", "prune",
           "export_model", "report", "sweep", "demo", "describe_blocks", "read_stats", "ablate", "__version__"]
