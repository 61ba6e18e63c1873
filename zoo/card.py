"""The model card: what a model is and how to feed it, as one JSON object.

It travels with every model file: `card.json` beside the weights of a run directory, inside an ONNX
file's `metadata_props` (key `cnnzoo.card`), beside a TensorRT engine as `model.engine.json`.
Preprocessing is derived from the card (`zoo.data.preprocess`), never retyped at a call site.
This module imports nothing heavy: the ONNX and server paths use it without torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

from . import atomic

CARD_FORMAT = "cnnzoo.card/1"
ONNX_METADATA_KEY = "cnnzoo.card"
RESIZE_MODES = ("squash", "crop", "fill", "half-crop")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # the arithmetic a model file or a runtime computes in
MAX_LABEL = 256  # characters in a class name: every answer carries the names, so a card bounds them


class CardError(ValueError):
    """A model card that cannot be read or does not describe a model; the message is one line (naming
    the file where the card came from one)."""


@dataclass
class ModelCard:
    architecture: str  # registered model name, e.g. "lenet5"
    num_classes: int
    in_channels: int  # 1: grayscale ("L"), 3: RGB
    input_size: list[int]  # [H, W]
    class_names: list[str]
    mean: list[float]
    std: list[float]
    resize_mode: str = "squash"
    provenance: dict[str, Any] = field(default_factory=dict)  # data, epochs, metrics, weights source
    # The file's own arithmetic: "fp32" (weights, card.json, model.onnx), "fp16" (model.fp16.onnx),
    # "int8" (model.int8.onnx, quantize-dequantize; provenance["quantization"] says how it was made).
    precision: str = "fp32"
    format: str = CARD_FORMAT

    def __post_init__(self):
        self.input_size = [int(v) for v in self.input_size]
        if len(self.class_names) != self.num_classes:
            raise CardError(f"card has {self.num_classes} classes but {len(self.class_names)} names")
        long = next((i for i, name in enumerate(self.class_names) if len(name) > MAX_LABEL), None)
        if long is not None:
            raise CardError(
                f"card class name {long} is {len(self.class_names[long]):,} characters long; at most {MAX_LABEL}"
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise CardError("card mean/std must have one value per input channel")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise CardError(f"card input_size {self.input_size} is not a [height, width]")
        if self.resize_mode not in RESIZE_MODES:
            raise CardError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}")
        if self.precision not in PRECISIONS:
            raise CardError(f"precision must be one of {', '.join(PRECISIONS)}")

    @property
    def color_mode(self) -> str:
        """The PIL mode images are converted to before preprocessing."""
        return "L" if self.in_channels == 1 else "RGB"

    @property
    def input_shape(self) -> list[int]:
        """[C, H, W]."""
        return [self.in_channels, *self.input_size]

    @classmethod
    def for_model(
        cls,
        name: str,
        num_classes: int | None = None,
        in_channels: int | None = None,
        input_size: list[int] | None = None,
        class_names: list[str] | None = None,
        resize_mode: str = "squash",
        **provenance,
    ) -> "ModelCard":
        """A card from a registered model's defaults (imports the model registry, and so torch)."""
        from .models import get_spec

        spec = get_spec(name)
        c = in_channels or spec.input_size[0]
        n = num_classes or (len(class_names) if class_names else spec.num_classes)
        mean, std = spec.mean_std(c)
        return cls(
            spec.name,
            n,
            c,
            list(input_size or spec.input_size[1:]),
            list(class_names) if class_names else [str(i) for i in range(n)],
            mean,
            std,
            resize_mode,
            dict(provenance),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        """The card a JSON object describes; CardError says what is missing or of the wrong type."""
        if not isinstance(d, dict):
            raise CardError(f"not a model card ({_json_type(d)}, not a JSON object)")
        if str(d.get("format", CARD_FORMAT)).split("/")[0] != CARD_FORMAT.split("/")[0]:
            raise CardError(f"not a cnnzoo model card (format {d.get('format')!r})")
        known = cls.__dataclass_fields__
        required = [k for k, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise CardError(f"model card is missing {', '.join(missing)}")
        for key, (kind, item) in _FIELD_TYPES.items():
            value = d.get(key, kind())
            want = f"a list of {_JSON_NAMES[item][1]}" if item else _JSON_NAMES[kind][0]
            if not _is(value, kind):
                raise CardError(f"model card field {key!r} must be {want}, not {_json_type(value)}")
            wrong = [v for v in value if not _is(v, item)] if item else []
            if wrong:
                raise CardError(f"model card field {key!r} must be {want}; it holds {_json_type(wrong[0])}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"model card is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        except RecursionError:
            raise CardError("model card is not valid JSON (nested too deeply)") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelCard":
        """The card in a card.json file; CardError (naming the file) where it is damaged."""
        with open(path, "rb") as f:
            data = f.read()
        try:
            return cls.from_json(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise CardError(f"{path}: not a model card (not UTF-8 text)") from None
        except CardError as e:
            raise CardError(f"{path}: {e}") from None


# field -> (JSON type, type of each item for a list): what from_dict checks before building a card
_FIELD_TYPES = {
    "architecture": (str, None),
    "num_classes": (int, None),
    "in_channels": (int, None),
    "input_size": (list, int),
    "class_names": (list, str),
    "mean": (list, float),
    "std": (list, float),
    "resize_mode": (str, None),
    "provenance": (dict, None),
    "precision": (str, None),
    "format": (str, None),
}


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


_JSON_NAMES = {
    str: ("a string", "strings"),
    int: ("a whole number", "whole numbers"),
    float: ("a number", "numbers"),
    list: ("a list", "lists"),
    dict: ("an object", "objects"),
    bool: ("a boolean", "booleans"),
    type(None): ("null", "nulls"),
}


def _json_type(value: Any) -> str:
    """What a JSON value is, in words: "a string", "a list", "null", ..."""
    return _JSON_NAMES.get(type(value), ("a " + type(value).__name__,))[0]
