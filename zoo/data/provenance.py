"""What a run's card says about the data it trained on: `provenance["training"]`, read into a type.

    >>> from zoo.data.provenance import TrainingData, same_data
    >>> run = TrainingData.of(card)          # None: a model `zoo train` did not make
    >>> run.data, run.val_dir, run.test_split, run.seed
    >>> run.held_out_name("photos/val")      # "validation", "test" or None

`zoo train` writes the record (its data options, TrainConfig's `data`, `val_split`, `val_dir`,
`test_dir`, `test_split`, `seed`, beside its other options); `zoo.data.heldout` makes the splits again
from it. Imports nothing heavy: a reader of cards stays torch-free.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..card import ModelCard


@dataclass(frozen=True)
class TrainingData:
    """The data options `zoo train` recorded on a run's card: what it trained on and how it split it."""

    data: str  # the --data value
    val_split: float = 0.0  # a fraction (< 1) or a number of training images held out for validation
    val_dir: str | None = None  # a validation folder of its own
    test_dir: str | None = None  # a test folder of its own
    test_split: float | None = None  # images held out of train for the test split
    seed: int | None = None  # the seed of the random splits (None: the record does not say)

    @classmethod
    def of(cls, card: ModelCard) -> TrainingData | None:
        """The record on `card`; None for a model that `zoo train` did not make (no record, or no data)."""
        t = card.provenance.get("training")
        if not isinstance(t, dict) or not t.get("data"):
            return None
        return cls(
            data=t["data"],
            val_split=t.get("val_split") or 0.0,
            val_dir=t.get("val_dir"),
            test_dir=t.get("test_dir"),
            test_split=t.get("test_split"),
            seed=t.get("seed"),
        )

    def split_options(self) -> dict:
        """The keyword arguments of `zoo.data.datasets.open_source` that make the run's splits again."""
        splits = ("val_split", "val_dir", "test_dir", "test_split")
        return {**{k: getattr(self, k) for k in splits}, "seed": self.seed or 0}

    def folder(self, split: str) -> str | None:
        """The folder of its own that a held-out split ("val", "test") came from, if it had one."""
        return {"val": self.val_dir, "test": self.test_dir}.get(split)

    def held_out_name(self, data: str | None) -> str | None:
        """The held-out split ("validation" or "test") whose own folder `data` names, else None."""
        if same_data(data, self.val_dir):
            return "validation"
        if same_data(data, self.test_dir):
            return "test"
        return None


def same_data(a: str | None, b: str | None) -> bool:
    """Whether two --data values name the same data (the same string, or paths to the same directory)."""
    if not a or not b:
        return False
    if a == b:
        return True
    pa, pb = pathlib.Path(a).expanduser(), pathlib.Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
