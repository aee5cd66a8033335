"""Flags several commands share, and how they map to the library's typed configs.

Every default a flag shows is read from the library: a config dataclass's field (``FitConfig.lr``) or, for
a plain keyword argument, the library function's own default (:func:`library_default`).
"""
from __future__ import annotations

import inspect
from typing import Optional

import typer

from compress.export import ExportOptions

def library_default(function, name: str):
    """The default of ``function``'s keyword argument ``name``: the one home of a flag's default."""
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{function.__qualname__}({name}) has no default")
    return default


BLOCKS_FROM_HELP = ("Pick the blocks by path instead of by skip connection: a glob ('features.*': direct "
                    "children; '**' crosses levels) or a regex ('re:blocks\\.\\d+'). Recorded in the sidecar.")

GRANULARITY_HELP = ("Units of DropPath and removal: block (whole residual blocks) or branch (each DropPath call of a "
                    "block's own DropPath: attention and MLP apart; blocks without their own DropPath stay whole).")

ATOL = typer.Option(ExportOptions.atol, help="Parity: absolute tolerance on logits (|out - ref| <= atol + rtol * |ref|, "
                                       "|ref| the largest |logit| of the image).")
RTOL = typer.Option(ExportOptions.rtol, help="Parity: tolerance relative to the logits' magnitude.")
MIN_ARGMAX = typer.Option(ExportOptions.min_argmax_agreement * 100, "--min-argmax-agreement",
                          help="Parity: % of test images whose top-1 class must match the source model's.")
MIN_TOP5 = typer.Option(ExportOptions.min_top5_agreement * 100, "--min-top5-agreement",
                        help="Parity: mean % overlap of the top-5 classes with the source model's.")
INT8 = typer.Option(False, "--int8", help="Also build INT8 models (ONNX Runtime schemes; PaddleSlim for the Paddle "
                                          "formats), measure them on this CPU and keep the fastest one within "
                                          "--max-acc-drop if it beats FP32.")
INT8_FORCE = typer.Option(False, "--int8-force", help="As --int8, but keep the fastest accurate INT8 model even when "
                                                      "it is not faster than FP32.")
INT8_SCHEMES = typer.Option(None, "--int8-schemes", help="Only these INT8 candidates (comma-separated; default: "
                                                         "all that apply).")
INT8_SECONDS = typer.Option(ExportOptions.int8_seconds, "--int8-seconds", help="INT8: time budget for timing the candidates against FP32 "
                                                         "(at least 20 runs each).")
MAX_ACC_DROP = typer.Option(ExportOptions.max_acc_drop * 100, help="INT8: largest allowed test-accuracy drop against FP32, in points.")
CALIB_DATA = typer.Option(None, help="Calibration images for INT8: 'digits', an image folder or an .npz "
                                     "(default: the model's own training images).")


def export_options(*, atol: float, rtol: float, min_argmax_agreement: float, min_top5_agreement: float,
                   int8: bool = False, int8_force: bool = False, int8_schemes: Optional[str] = None,
                   int8_seconds: float = ExportOptions.int8_seconds,
                   max_acc_drop: float = ExportOptions.max_acc_drop * 100, calib_data: Optional[str] = None, **kwargs) -> ExportOptions:
    """The shared export flags (percentages and points as typed on the command line) as ExportOptions."""
    return ExportOptions(atol=atol, rtol=rtol, min_argmax_agreement=min_argmax_agreement / 100.0,
                         min_top5_agreement=min_top5_agreement / 100.0,
                         int8="force" if int8_force else ("auto" if int8 else "off"), int8_schemes=int8_schemes,
                         int8_seconds=int8_seconds,
                         max_acc_drop=max_acc_drop / 100.0, calib_data=calib_data, **kwargs)

AUGMENT_HELP = ("Training augmentation: none; light (a random shift, up to 1/16 of the side); standard "
                "(random-resized crop + horizontal flip). Default: the data's (light for digits, shapes and .npz, "
                "standard for photo folders and list files).")
AUGMENT = typer.Option(None, "--augment", help=AUGMENT_HELP)
NORMALIZE = typer.Option(None, "--normalize", help="Pixel normalisation: imagenet (ImageNet mean/std, for pretrained "
                                                   "models) or half ((x - 0.5) / 0.5). Default: the data's "
                                                   "(half for digits, shapes and .npz; imagenet for photos).")
RESIZE = typer.Option(None, "--resize", help="exact (resize to H,W) or short (shorter side to H/0.875, centre "
                                             "crop H,W). Default: the data's (exact for digits, shapes and .npz; "
                                             "short for photos).")
WORKERS = typer.Option(None, "--workers", help="Loader worker processes decoding images (default: up to 4, leaving "
                                               "two cores to training; 0 for in-memory data).")
