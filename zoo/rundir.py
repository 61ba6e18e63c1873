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
from .card import CardError, ModelCard

CARD = "card.json"
WEIGHTS = "model.safetensors"
LAST = "last.safetensors"
CHECKPOINT = "checkpoint.pt"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CURVES = "curves.png"
SNAPSHOT = "epoch-{epoch:03d}.safetensors"


class RunError(FileNotFoundError):
    """Not a run directory / weights file, or one whose files cannot be read; the message is one line
    that names the file and says what is wrong with it."""


def save_weights(path: str | os.PathLike, model, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic.write_with(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def read_weights(path: str | os.PathLike, device: str = "cpu") -> dict:
    """The state dict in a .safetensors file; RunError where the file is damaged or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"{path}: not a readable weights file, truncated or damaged ({reason})") from None


def load_weights(model, path: str | os.PathLike, device: str = "cpu") -> None:
    """Load a .safetensors file into `model` (every key, every shape); RunError where it does not fit."""
    state = read_weights(path, device)
    problem = _mismatch(model.state_dict(), state)
    if problem:
        raise RunError(f"{path}: the weights do not fit the model its card describes ({problem})")
    model.load_state_dict(state, strict=True)


def _mismatch(want: dict, got: dict) -> str | None:
    """What keeps state dict `got` from loading where `want` is expected, in a few words (None: it fits)."""
    missing = [k for k in want if k not in got]
    if missing:
        return f"{len(missing)} tensor(s) missing, the first {missing[0]}"
    unexpected = [k for k in got if k not in want]
    if unexpected:
        return f"{len(unexpected)} tensor(s) the model does not have, the first {unexpected[0]}"
    for k, v in want.items():
        if tuple(v.shape) != tuple(got[k].shape):
            return f"{k} is {list(got[k].shape)} in the file, {list(v.shape)} in the model"
    return None


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of a run directory or weights file; RunError where it is missing or damaged."""
    card = resolve_weights(path)[1]
    try:
        return ModelCard.load(card)
    except CardError as e:
        raise RunError(str(e)) from None


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
    """(model in eval mode, card) from a run directory or a weights file with card.json beside it;
    RunError, one line naming the file, for anything missing, damaged or not fitting together."""
    from .models import UnknownModelError, create

    weights, card_path = resolve_weights(path)
    card = read_card(path)
    try:
        model = create(card.architecture, num_classes=card.num_classes, in_channels=card.in_channels)
    except UnknownModelError as e:
        raise RunError(f"{card_path}: {e}") from None
    load_weights(model, weights, device)
    return model.to(device).eval(), card


def newest_run(root: str | os.PathLike = "runs") -> pathlib.Path:
    """The most recently modified run directory under `root` that holds finished weights."""
    root = pathlib.Path(root)
    runs = [p for p in root.glob("*") if (p / WEIGHTS).is_file() and (p / CARD).is_file()]
    if not runs:
        raise RunError(f"no finished run under {root}/ (train one with `zoo train lenet`)")
    return max(runs, key=lambda p: (p / WEIGHTS).stat().st_mtime)
