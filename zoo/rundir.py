"""The run directory: what `zoo train` writes and every later stage reads.

    runs/lenet5-20261121-101500/
      card.json            the model card
      model.safetensors    the best weights (by validation accuracy): what export/classify/serve load
      last.safetensors     the weights after the last finished epoch
      checkpoint.pt        resumable training state (weights_only-safe tensors and plain types)
      history.csv / .json  one row per epoch
      curves.png           loss, accuracy and learning rate against epoch
      epoch-005.safetensors  weight snapshots (`zoo train --snapshot-every 5`)

Every file is written atomically (zoo.atomic).
"""

from __future__ import annotations

import os
import pathlib

from . import atomic
from .card import ModelCard

CARD = "card.json"
WEIGHTS = "model.safetensors"
LAST = "last.safetensors"
CHECKPOINT = "checkpoint.pt"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CURVES = "curves.png"
SNAPSHOT = "epoch-{epoch:03d}.safetensors"


class RunError(FileNotFoundError):
    """Not a run directory / weights file; the message says what is missing."""


def save_weights(path: str | os.PathLike, model, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic.write_with(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def resolve_weights(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """(weights file, card file) for a run directory or a .safetensors file with card.json beside it."""
    path = pathlib.Path(path)
    if path.is_dir():
        weights, card = path / WEIGHTS, path / CARD
    elif path.suffix == ".safetensors":
        weights, card = path, path.parent / CARD
    elif not path.exists():
        raise RunError(f"{path}: no such run directory or file")
    else:
        raise RunError(f"{path}: expected a run directory or a .safetensors weights file")
    for f, what in ((weights, "weights"), (card, "model card")):
        if not f.is_file():
            raise RunError(f"{path}: {what} {f.name} is missing (is this a finished `zoo train` run?)")
    return weights, card


def load_model(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode, card) from a run directory or a weights file with card.json beside it."""
    from safetensors.torch import load_file

    from .models import create

    weights, card_path = resolve_weights(path)
    card = ModelCard.load(card_path)
    model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    model.load_state_dict(load_file(str(weights), device=device), strict=True)
    return model.to(device).eval(), card


def newest_run(root: str | os.PathLike = "runs") -> pathlib.Path:
    """The most recently modified run directory under `root` that holds finished weights."""
    root = pathlib.Path(root)
    runs = [p for p in root.glob("*") if (p / WEIGHTS).is_file() and (p / CARD).is_file()]
    if not runs:
        raise RunError(f"no finished run under {root}/ (train one with `zoo train lenet`)")
    return max(runs, key=lambda p: (p / WEIGHTS).stat().st_mtime)
