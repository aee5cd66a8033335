"""compress: stochastic-depth block pruning for PaddlePaddle vision models.

The public API mirrors the CLI: every command is a function here.
"""
import os as _os
import warnings as _warnings

# paddle warns on import that ccache (a C++ build cache) is missing; irrelevant here.
_warnings.filterwarnings("ignore", message="No ccache found")

# Paddle's C++ logging (glog) is chatty on stderr; keep warnings and errors only.
_os.environ.setdefault("GLOG_minloglevel", "2")
# paddle2onnx's constant folding must never pip-install anything at run time.
_os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")

__version__ = "0.1.0"

from .errors import CompressError  # noqa: E402
from .loading import load_model, save_model, load_weights, resolve_arch  # noqa: E402
from .training import train  # noqa: E402
from .healing import prune  # noqa: E402
from .export import export_model  # noqa: E402
from .evaluation import report  # noqa: E402
from .sweep import sweep, demo  # noqa: E402

__all__ = ["CompressError", "load_model", "save_model", "load_weights", "resolve_arch", "train", "prune",
           "export_model", "report", "sweep", "demo", "__version__"]
