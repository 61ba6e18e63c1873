"""The verification record: what `zoo export --int8` measured of a model, and what `auto` reads back.

    >>> v = Verification.from_card(card)            # None where the export verified nothing
    >>> v.verified, v.accuracy["int8"]              # ["fp32", "int8", "bf16"], 0.981
    >>> v.speed.of("int8", "openvino")              # img/s measured while verifying, on `v.speed.cpu`

Written by `export.quantize` into the cards of model.onnx and model.int8.onnx
(`provenance["verification"]`, the JSON shape of `to_dict`), read by `infer` (`Verification.from_card`).
Every field is optional on reading: records of earlier versions, and ones written by hand, lack some.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.card import ModelCard

KEY = "verification"  # in a card's provenance


def _key(precision: str, runtime: str) -> str:
    """An option's key in the record's img/s table: "int8 on openvino"."""
    return f"{precision} on {runtime}"


def _option(key: str) -> tuple[str, str] | None:
    """(precision, runtime) from a key of the img/s table; None for one that is not a key."""
    precision, on, runtime = str(key).partition(" on ")
    return (precision, runtime) if on and precision and runtime else None


@dataclass
class Speed:
    """How fast each (precision, runtime) ran while the export verified it, on one CPU model."""

    cpu: str | None = None  # zoo.hardware.cpu().name of the machine that measured
    batch_size: int | None = None
    img_s: dict[tuple[str, str], float] = field(default_factory=dict)  # (precision, runtime) -> img/s

    def of(self, precision: str, runtime: str) -> float | None:
        """img/s measured for `precision` on `runtime` (None where it was not timed)."""
        return self.img_s.get((precision, runtime))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "batch_size": self.batch_size,
            "img_s": {_key(p, r): round(v, 1) for (p, r), v in self.img_s.items() if v},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Speed:
        timed = [(_option(k), v) for k, v in (d.get("img_s") or {}).items()]
        return cls(
            cpu=d.get("cpu"),
            batch_size=d.get("batch_size"),
            img_s={option: float(v) for option, v in timed if option is not None and v},
        )


@dataclass
class Verification:
    """Top-1 accuracies on a held-out split by precision (the worst counted runtime) and by runtime, the
    precisions within `max_accuracy_drop` points of fp32 (`verified`), and the speeds measured."""

    data: str | None = None  # the --data the held-out images came from
    split: str | None = None  # "test", "val" or "all"
    n: int = 0  # images
    max_accuracy_drop: float | None = None  # points of top-1
    accuracy: dict[str, float] = field(default_factory=dict)  # precision -> top-1
    by_runtime: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> runtime -> top-1
    verified: list[str] = field(default_factory=lambda: ["fp32"])
    speed: Speed = field(default_factory=Speed)
    int8_agreement: float | None = None  # how often the runtimes' int8 answers agree (2+ runtimes)

    def to_dict(self) -> dict[str, Any]:
        """The record as a card keeps it (JSON)."""
        d = {
            "data": self.data,
            "split": self.split,
            "n": self.n,
            "max_accuracy_drop": self.max_accuracy_drop,
            "accuracy": dict(self.accuracy),
            "by_runtime": {p: dict(r) for p, r in self.by_runtime.items()},
            "verified": list(self.verified),
            # how fast each ran while verified, on this CPU model: `auto` ranks by it there
            "speed": self.speed.to_dict(),
        }
        if self.int8_agreement is not None:
            d["int8_agreement"] = self.int8_agreement
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verification:
        """Read a record of any version (missing fields take their defaults)."""
        return cls(
            data=d.get("data"),
            split=d.get("split"),
            n=int(d.get("n") or 0),
            max_accuracy_drop=d.get("max_accuracy_drop"),
            accuracy=dict(d.get("accuracy") or {}),
            by_runtime={p: dict(r) for p, r in (d.get("by_runtime") or {}).items()},
            verified=list(d.get("verified") or ["fp32"]),
            speed=Speed.from_dict(d.get("speed") or {}),
            int8_agreement=d.get("int8_agreement"),
        )

    @classmethod
    def from_card(cls, card: ModelCard) -> Verification | None:
        """The record in `card`'s provenance; None where the export verified nothing."""
        record = card.provenance.get(KEY)
        return cls.from_dict(record) if isinstance(record, dict) else None

    def write(self, card: ModelCard) -> None:
        """Put the record into `card`'s provenance (replacing any there)."""
        card.provenance[KEY] = self.to_dict()

    def images(self) -> str:
        """The held-out images in words: "2,000 test images" ("all" names no split)."""
        split = f"{self.split} " if self.split and self.split != "all" else ""
        return f"{self.n:,} {split}images"
