"""Data: sources that index images, safe decoding, ``paddle.vision`` transforms, Paddle's loader.

- ``open_source(spec)``: ``digits`` (default), ``shapes`` (procedural, harder), an image folder, PaddleClas list files, an ``.npz``
  (``DATA_SOURCES`` maps each registry name to its class);
- ``Preprocess``: the resize / normalisation / augmentation recipe, recorded in the sidecar;
- ``make_loader``: a ``paddle.io.DataLoader`` over a split, sharded across ranks, reproducible;
- ``load_arrays``: a bounded number of evaluation-transformed images as one array;
- ``ModelData``: a source with the ``Preprocess`` a model uses, what training, evaluation, export and the
  report share.
"""
from .files import FolderSource, ListSource
from .images import IMAGE_SUFFIXES, MAX_PIXELS, check_images, load_image, to_channels
from .loader import GlobalBatchSampler, ImageDataset, Loader, load_arrays, make_loader, resolve_rank
from .model_data import DataOptions, ModelData
from .npz import NpzSource
from .registry import DATA_SOURCES, open_source, source_kind, stored_source
from .shapes import ShapesSource
from .sources import SPLIT_SEED, SPLITS, DigitsSource, Source
from .transforms import Preprocess

__all__ = [
    "DATA_SOURCES", "DataOptions", "DigitsSource", "FolderSource", "GlobalBatchSampler", "IMAGE_SUFFIXES",
    "ImageDataset", "ListSource", "Loader", "ModelData", "ShapesSource", "MAX_PIXELS", "NpzSource", "Preprocess", "SPLITS", "SPLIT_SEED",
    "Source", "check_images", "load_arrays", "load_image", "make_loader", "open_source",
    "resolve_rank", "source_kind", "stored_source", "to_channels",
]
