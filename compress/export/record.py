"""``export.json`` as a typed record: what an export is, filled in by the exporters as they run.

Each exporter says what it learned through a method (:meth:`ExportRecord.set_output_name`,
:meth:`ExportRecord.add_parity`, ...) instead of writing keys into a nested dict; :meth:`ExportRecord.to_json`
writes the documented keys in their documented order, so the file reads as it always has (readers of
export.json, :mod:`compress.export.verify` and the report, take the JSON object).
"""
from __future__ import annotations

from dataclasses import dataclass, field

EXPORT_FORMAT = "compress-export/1"


@dataclass
class ExportRecord:
    """Everything ``export.json`` holds. ``has_onnx`` / ``has_int8``: whether the export built ONNX (the
    opset keys are written) and an INT8 step ran (the ``int8`` key is written)."""

    created: str
    source: dict
    versions: dict
    formats: list
    options: dict
    opset_requested: int | None
    batch: str | int
    input: dict                      # name, dtype, layout, shape, preprocess (+ onnx_shape)
    output_shape: list
    labels: list | None = None
    output_names: dict = field(default_factory=dict)   # format -> the output tensor's name
    opset: int | None = None
    parity: dict | None = None
    int8: dict | None = None
    files: dict | None = None
    graphs: dict | None = None
    seconds: dict | None = None
    paddle_legacy: dict | None = None
    has_onnx: bool = True
    has_int8: bool = True
    format: str = EXPORT_FORMAT

    # -- what the exporters learn
    def set_input_shape(self, shape) -> None:
        self.input["shape"] = shape

    def set_onnx(self, opset: int, input_shape) -> None:
        """The ONNX file's opset (paddle2onnx may raise the one asked for) and its input shape."""
        self.opset = int(opset)
        self.input["onnx_shape"] = [d if isinstance(d, int) else None for d in input_shape]

    def set_output_name(self, fmt: str, name: str) -> None:
        self.output_names[fmt] = name

    def start_parity(self, data: str, n_inputs: int, tolerance: dict, reference: str) -> None:
        self.parity = {"data": data, "n_inputs": int(n_inputs), "tolerance": tolerance, "reference": reference,
                       "runtimes": {}}

    def add_parity(self, runtime: str, figures: dict) -> None:
        if self.parity is None:
            self.parity = {}
        self.parity.setdefault("runtimes", {})[runtime] = figures

    def int8_section(self, make) -> dict:
        """The ``int8`` section, made by ``make()`` on first use."""
        if not self.int8:
            self.int8 = make()
        return self.int8

    # -- JSON
    def to_json(self) -> dict:
        out = {"format": self.format, "created": self.created, "source": self.source, "versions": self.versions,
               "formats": self.formats, "options": self.options}
        if self.has_onnx:
            out.update(opset=self.opset, opset_requested=self.opset_requested)
        out.update(batch=self.batch, input=self.input,
                   output={"shape": self.output_shape, "names": dict(self.output_names)},
                   labels=self.labels, parity=self.parity)
        if self.has_int8:
            out["int8"] = self.int8
        out.update(files=self.files, graphs=self.graphs, seconds=self.seconds)
        if self.paddle_legacy is not None:
            out["paddle_legacy"] = self.paddle_legacy
        return out
