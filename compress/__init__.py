"""compress: stochastic-depth block pruning for PaddlePaddle vision models.

The public API mirrors the CLI: every command is a function here.
"""
import os as _os

# Paddle's C++ logging (glog) is chatty on stderr; keep warnings and errors only.
_os.environ.setdefault("GLOG_minloglevel", "2")
# paddle2onnx's constant folding must never pip-install anything at run time.
_os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")

__version__ = "0.1.0"

from .errors import CompressError  # noqa: E402
from .loading import load_model, save_model, load_weights, resolve_arch  # noqa: E402

__all__ = ["CompressError", "load_model", "save_model", "load_weights", "resolve_arch", "__version__"]
