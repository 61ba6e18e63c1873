"""Which images of which data score a run: the one held-out split policy (`zoo evaluate`, int8's verification).

    >>> from zoo.data.heldout import held_out
    >>> images = held_out(card)                  # the run's own data, split as training split it: test, else val
    >>> images.data, images.split, images.held_out, len(images)
    >>> image_set, skipped = images.load(card)   # uint8 at the card's input shape
    >>> held_out(card, "photos/")                # other data: its test split if it has one, else all of it

The run's own data (named on its card, `zoo.data.provenance.TrainingData`) is split exactly as its
training split it: `run_source`. Its held-out split is its test split, else its validation split, else
(a run that held nothing out) its training images, which the result says are not held out
(`held_out` False). Other data is labelled with the card's classes by name; its test split when it has
one (MNIST-small, MNIST's t10k files, a folder of only those), else all of it; `held_out` True where
it is one of the run's own held-out folders, None where the card does not say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..card import ModelCard
from .datasets import DataError, ImageSet, RawSplit, Source, open_source
from .provenance import TrainingData, same_data


@dataclass
class Images:
    """Images picked from a --data value, not yet decoded: where they come from, which, and whether the
    run never trained on them."""

    data: str  # what --data names, or the run's own validation / test folder
    split: str  # "train", "val", "test", or "all" (data without splits)
    raw: RawSplit
    held_out: bool | None = None  # False: images the run trained on; None: data its card does not name
    seed: int | None = None  # the seed of a random pick
    source: str | None = None  # the --data value they were read from (default: `data`)
    ignored: list[str] = field(default_factory=list)  # files of the data's folders of another kind than images

    def __len__(self) -> int:
        return len(self.raw)

    def describe(self) -> str:
        return self.data if self.split == "all" else f"{self.data} {self.split}"

    def load(self, card: ModelCard, *, workers: int = 0) -> tuple[ImageSet, list[str]]:
        """The images at the card's input shape, and the files left out ("path: why")."""
        source = Source(self.source or self.data, list(card.class_names), {self.split: self.raw}, ignored=self.ignored)
        sets, skipped = source.load(card, workers=workers, progress=False)
        return sets[self.split], skipped


def run_source(card: ModelCard, remedy: str = "--data") -> Source:
    """The run's own data, split exactly as its training split it (DataError, ending "pass REMEDY",
    where the card names none, it cannot be read here or its classes are no longer the model's)."""
    run = TrainingData.of(card)
    if run is None:
        raise DataError(f"the model's card does not say what data it was trained on; pass {remedy}")
    try:
        source = open_source(run.data, **run.split_options())
    except DataError as e:
        raise DataError(f"the run's training data {run.data} cannot be read here ({e}); pass {remedy}") from None
    if source.class_names != list(card.class_names):
        raise DataError(
            f"{run.data}: its classes ({', '.join(source.class_names)}) are no longer the model's "
            f"({', '.join(card.class_names)}); pass {remedy}"
        )
    return source


def held_out(card: ModelCard, data: str | None = None, split: str = "auto", *, remedy: str = "--data") -> Images:
    """The images to score the model of `card` on: `data` (a --data value; None: the data it trained on),
    its `split` ("auto": the held-out one, see above). DataError (one line) where there is none;
    `remedy` names the option that passes other data."""
    run = TrainingData.of(card)
    own = data is None or (run is not None and same_data(data, run.data))
    if own and run is not None:
        source, label = run_source(card, remedy), run.data
    else:
        label = data or card.provenance.get("data", {}).get("source")
        if not label:
            raise DataError(f"the model's card does not say what data it was trained on; pass {remedy}")
        source = open_source(label, class_names=card.class_names)
    if split == "auto":
        split = next((s for s in ("test", "val") if s in source.splits), "train")
    if split not in source.splits:
        raise DataError(f"{label} has no {split} split (it has {', '.join(source.splits)})")
    if own:
        held: bool | None = split != "train"
        label = (run.folder(split) if run else None) or label
    else:
        held = True if run is not None and run.held_out_name(data) else None
    return Images(label, split, source.splits[split], held, source=source.name, ignored=source.ignored)
