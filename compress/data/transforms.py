"""The preprocessing recipe: one frozen record, the ``paddle.vision.transforms`` it builds, its JSON.

Why one record: training, evaluation, export verification, the report and the device must apply
the same evaluation preprocessing. ``Preprocess`` is that recipe; ``to_json`` is what the sidecar
stores under ``preprocess`` (every number a device needs: resize rule and sizes, interpolation,
crop, channel order, scale, mean, std, layout) and ``from_json`` reads it back, including the
records written before this module existed (today's exact resize, ``(x - 0.5) / 0.5``).

The transforms are ``paddle.vision.transforms`` on PIL images (its numpy path needs OpenCV).
They end in ``Transpose`` + ``Normalize`` on the 8-bit array, so a sample comes out float32 CHW.
"""
from __future__ import annotations

from dataclasses import dataclass

from paddle.vision import transforms as T

from ..common.errors import CompressError

PREPROCESS_FORMAT = "compress-preprocess/1"
NORMALIZATIONS = {
    # name: (mean, std) per RGB channel, on pixels scaled to [0, 1]
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
RESIZES = ("exact", "short")
AUGMENTS = ("none", "light", "standard")
CROP_FRACTION = 0.875   # eval: resize the shorter side to size / 0.875, centre-crop size (256 -> 224)
INTERPOLATION = "bilinear"


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise CompressError(f"--{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input. ``input_shape`` is C,H,W with C = 1 (grey) or 3 (RGB).

    - ``resize``: ``exact`` resizes to H,W (small fixed-size data: digits, .npz); ``short`` resizes
      the shorter side to round(max(H, W) / 0.875) and centre-crops H,W (PaddleClas'
      ResizeImage(256) + CropImage(224) at 224).
    - ``normalize``: ``half`` is (x/255 - 0.5) / 0.5; ``imagenet`` is ImageNet's mean/std on x/255
      (what pretrained PaddleClas models expect; for a grey model, the mean of the three).
    - ``augment`` (training only): ``none``; ``light``, the eval resize then a random translation by
      up to max(1, round(max(H, W) / 16)) pixels (zero padding, no flip); ``standard``,
      RandomResizedCrop(H, W) + RandomHorizontalFlip (the ImageNet recipe).
    """

    input_shape: tuple[int, int, int]
    resize: str = "exact"
    normalize: str = "half"
    augment: str = "none"

    def __post_init__(self):
        shape = tuple(int(v) for v in self.input_shape)
        if len(shape) != 3 or shape[0] not in (1, 3) or min(shape[1:]) < 1:
            raise CompressError(f"input shape must be C,H,W with C 1 or 3 and H, W >= 1; got {list(self.input_shape)}")
        object.__setattr__(self, "input_shape", shape)
        _check_choice("resize", self.resize, RESIZES)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("augment", self.augment, AUGMENTS)

    # ------------------------------------------------------------------ derived numbers
    @property
    def channels(self) -> int:
        return self.input_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the model input."""
        return self.input_shape[1], self.input_shape[2]

    @property
    def short_side(self) -> int:
        return round(max(self.size) / CROP_FRACTION)

    @property
    def mean(self) -> list[float]:
        return self._per_channel(NORMALIZATIONS[self.normalize][0])

    @property
    def std(self) -> list[float]:
        return self._per_channel(NORMALIZATIONS[self.normalize][1])

    def _per_channel(self, rgb) -> list[float]:
        return list(rgb) if self.channels == 3 else [round(sum(rgb) / 3, 6)]

    @property
    def size_hint(self) -> tuple[int, int]:
        """(w, h) a decoder must deliver at least (JPEG draft): the eval resize's input size."""
        side = self.short_side if self.resize == "short" else max(self.size)
        return side, side

    @property
    def pad(self) -> int:
        """The ``light`` augmentation's largest shift in pixels (1 at 16x16, 14 at 224x224)."""
        return max(1, round(max(self.size) / 16))

    # ------------------------------------------------------------------ transforms
    def _resize_ops(self) -> list:
        if self.resize == "exact":
            return [T.Resize(self.size, interpolation=INTERPOLATION)]
        return [T.Resize(self.short_side, interpolation=INTERPOLATION), T.CenterCrop(self.size)]

    def _to_array_ops(self) -> list:
        return [T.Transpose((2, 0, 1)),
                T.Normalize([m * 255 for m in self.mean], [s * 255 for s in self.std], data_format="CHW")]

    def eval_transform(self):
        """PIL image (already ``L``/``RGB`` for this model) -> float32 C,H,W; deterministic."""
        return T.Compose(self._resize_ops() + self._to_array_ops())

    def train_transform(self):
        """The eval transform with this recipe's augmentation; random, driven by ``random`` and ``numpy``."""
        if self.augment == "none":
            return self.eval_transform()
        if self.augment == "light":
            ops = self._resize_ops() + [T.RandomCrop(self.size, padding=self.pad, fill=0)]
        else:
            ops = [T.RandomResizedCrop(self.size, interpolation=INTERPOLATION), T.RandomHorizontalFlip()]
        return T.Compose(ops + self._to_array_ops())

    # ------------------------------------------------------------------ the sidecar record
    def to_json(self) -> dict:
        """Everything a device needs to reproduce the eval preprocessing, plus the training augmentation."""
        c, h, w = self.input_shape
        resize = ({"rule": "exact", "size": [h, w]} if self.resize == "exact"
                  else {"rule": "short", "short_side": self.short_side})
        return {
            "format": PREPROCESS_FORMAT, "input_shape": [c, h, w], "layout": "NCHW", "dtype": "float32",
            "channel_order": "RGB" if c == 3 else "grey",
            "decode": {"bits": 8, "grey_to_rgb": "repeat", "rgb_to_grey": "ITU-R 601-2 luma (PIL convert('L'))",
                       "alpha": "composited over white", "sixteen_bit": "scaled by 255/65535, rounded",
                       "exif_orientation": "applied",
                       "jpeg": "DCT-scaled (PIL draft) to the smallest scale >= the resize input"},
            "resize": {**resize, "interpolation": INTERPOLATION, "library": "PIL (antialiased when shrinking)"},
            "crop": {"rule": "center", "size": [h, w]} if self.resize == "short" else None,
            "normalize": self.normalize, "scale": 1 / 255, "mean": self.mean, "std": self.std,
            "formula": "x[c] = (pixel[c] * scale - mean[c]) / std[c]",
            "augment": self.augment, "augment_pad": self.pad if self.augment == "light" else None,
        }

    @classmethod
    def from_json(cls, record: dict, input_shape=None) -> "Preprocess":
        """Read a sidecar's ``preprocess``; a record from before this format means exact/half."""
        if not isinstance(record, dict):
            raise CompressError(f"preprocess must be a JSON object, got {type(record).__name__}")
        if record.get("format") is None:  # written before streaming data: exact resize, (x - 0.5) / 0.5
            if (record.get("mean"), record.get("std")) != (0.5, 0.5) or input_shape is None:
                raise CompressError(f"unknown preprocess record {record!r}")
            return cls(tuple(input_shape), "exact", "half", "none")
        if record["format"] != PREPROCESS_FORMAT:
            raise CompressError(f"unknown preprocess format {record['format']!r} (this version reads {PREPROCESS_FORMAT})")
        try:
            p = cls(tuple(record["input_shape"]), record["resize"]["rule"], record["normalize"], record["augment"])
        except (KeyError, TypeError, ValueError) as e:
            raise CompressError(f"malformed preprocess record ({type(e).__name__}: {e})") from None
        if input_shape is not None and tuple(input_shape) != p.input_shape:
            raise CompressError(f"preprocess input shape {list(p.input_shape)} differs from the model's {list(input_shape)}")
        return p

    @classmethod
    def for_source(cls, source, input_shape, resize: str | None = None, normalize: str | None = None,
                   augment: str | None = None) -> "Preprocess":
        """The source's defaults (``Source.defaults``), each overridable (``None`` keeps the default)."""
        given = {"resize": resize, "normalize": normalize, "augment": augment}
        return cls(tuple(input_shape), **{**source.defaults, **{k: v for k, v in given.items() if v is not None}})
