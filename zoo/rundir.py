"""The run directory: what `zoo train` writes and every later stage reads.

    runs/lenet5-20261121-101500/
      card.json            the model card
      model.safetensors    the best weights (by validation accuracy): what export/classify/serve load
      last.safetensors     the weights after the last finished epoch
      checkpoint.pt        resumable training state (weights_only-safe tensors and plain types)
      history.csv / .json  one row per epoch
      curves.png           loss, accuracy and learning rate against epoch
      events.out.tfevents.*  TensorBoard event files (`tensorboard --logdir runs`), named by TensorBoard
      epoch-005.safetensors  weight snapshots (`zoo train --snapshot-every 5`)
      confusion.png        the confusion matrix (`zoo evaluate`)
      model.onnx           `zoo export`: float32 ONNX (input tensor `input`, output `logits`)
      model.fp16.onnx      `zoo export --fp16`
      model.int8.onnx      `zoo export --int8`
      model.engine(.json)  `zoo export --trt`: a TensorRT engine and its card; model.int8.engine(.json)
      train.lock           while `zoo train` writes the run: its lock, holding its PID (zoo.runlock); gone
                           when the run ends, left (unheld) by a killed run; never a run file
      torchrun.json        under torchrun: the launchers of the job that writes the run and a token every
                           process read back (zoo.train.elastic)

Every file is written atomically (zoo.atomic). This module owns the vocabulary: every name above, the
model files' tensor names and the Triton repository's file names; every other module imports them from
here. It imports nothing heavy (the torch-free ONNX Runtime path reads it).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

from . import atomic
from .card import CardError, ModelCard
from .text import first_line

if TYPE_CHECKING:  # torch only for the annotations: this module imports nothing heavy
    import torch

CARD = "card.json"
WEIGHTS = "model.safetensors"
LAST = "last.safetensors"
CHECKPOINT = "checkpoint.pt"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CURVES = "curves.png"
EVENTS_PREFIX = "events.out.tfevents."  # TensorBoard names its event files itself: this, then time and host
SNAPSHOT = "epoch-{epoch:03d}.safetensors"
CONFUSION = "confusion.png"
LOCK = "train.lock"  # zoo.runlock: the writer's lock (not a model file: no reader opens it)
GROUP = "torchrun.json"  # zoo.train.elastic: which torchrun job writes the run (its launchers), a token
ONNX = "model.onnx"
ONNX_FP16 = "model.fp16.onnx"
ONNX_INT8 = "model.int8.onnx"
ENGINE = "model.engine"
ENGINE_INT8 = "model.int8.engine"
ENGINE_SUFFIXES = (".engine", ".plan")  # .plan: TensorRT's other engine suffix
ENGINE_CARD_SUFFIX = ".json"  # an engine's card: model.engine -> model.engine.json
# What `zoo export` writes into a run directory, by kind (with the weights it starts from).
MODEL_FILES = {
    "engine": ENGINE,
    "engine_int8": ENGINE_INT8,
    "onnx": ONNX,
    "onnx_fp16": ONNX_FP16,
    "onnx_int8": ONNX_INT8,
    "weights": WEIGHTS,
}
# The tensors of every exported model (ONNX graph, TensorRT engine, Triton config, KServe metadata).
INPUT_TENSOR = "input"
OUTPUT_TENSOR = "logits"
# A Triton model repository: DIR/<name>/config.pbtxt, labels.txt and 1/<the platform's file name>.
TRITON_CONFIG = "config.pbtxt"
TRITON_LABELS = "labels.txt"
TRITON_VERSION = "1"
TRITON_FILES = {
    ".onnx": ("onnxruntime_onnx", "model.onnx"),
    ".engine": ("tensorrt_plan", "model.plan"),
    ".plan": ("tensorrt_plan", "model.plan"),
}  # model suffix -> (platform, file name)


def engine_card(engine: str | os.PathLike) -> pathlib.Path:
    """The card beside a TensorRT engine: model.engine -> model.engine.json."""
    engine = pathlib.Path(engine)
    return engine.parent / (engine.name + ENGINE_CARD_SUFFIX)


def model_name(path: str | os.PathLike) -> str:
    """A model's name from its path: the run directory's name (runs/lenet5-2026.../model.onnx ->
    "lenet5-2026..."), or the Triton model's (repo/lenet5/1/model.onnx -> "lenet5"), or the file's stem."""
    path = pathlib.Path(path).resolve()
    if path.is_dir():
        return path.name
    parent = path.parent
    if parent.name.isdigit():  # a Triton version directory
        parent = parent.parent
    if path.stem.split(".")[0] == "model" or path.name == WEIGHTS:
        return parent.name
    return path.stem


class RunError(FileNotFoundError):
    """Not a run directory / weights file, or one whose files cannot be read; the message is one line
    that names the file and says what is wrong with it."""


def save_weights(path: str | os.PathLike, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
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
        reason = first_line(e)
        raise RunError(f"{path}: not a readable weights file, truncated or damaged ({reason})") from None


def load_weights(model: torch.nn.Module, path: str | os.PathLike, device: str = "cpu") -> None:
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


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, ModelCard]:
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


# The MODEL argument: one rule for every command, said in these words in each command's help.
MODEL_SUFFIXES = (".safetensors", ".onnx", *ENGINE_SUFFIXES)
MODEL_HELP = (
    "MODEL is a run directory or a model file (.safetensors, .onnx, .engine); left out (where it is "
    "the last argument), the newest finished run under runs/."
)
WEIGHTS_HELP = "This command reads PyTorch weights: a run directory or a .safetensors file."
NAMES_HELP = "MODEL may also be a registered architecture name (random weights, seed 0)."


def resolve_model(
    arg: str | os.PathLike | None, *, runs: str | os.PathLike = "runs", weights: bool = False, names: bool = False
) -> pathlib.Path | str:
    """MODEL by the one rule (MODEL_HELP): a run directory or a model file; None or "": the newest
    finished run under `runs`. Two extensions a command opts into: `weights` (it needs PyTorch weights,
    so .onnx / .engine files are refused: WEIGHTS_HELP) and `names` (a registered architecture name,
    returned as its canonical name: NAMES_HELP). RunError, one line, for anything else; with `names`, a
    word that is neither a path nor a name is UnknownModelError (with the nearest names)."""
    if not arg:
        return newest_run(runs)
    path = pathlib.Path(arg)
    text = os.fspath(arg)
    if names and not path.exists() and "/" not in text and not path.suffix:
        from .models import resolve

        return resolve(text)
    if not path.exists():
        raise RunError(f"{path}: no such run directory or model file")
    if path.is_dir():
        return path
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise RunError(f"{path}: expected a run directory or a model file (.safetensors, .onnx, .engine)")
    if weights and path.suffix.lower() != ".safetensors":
        raise RunError(
            f"{path}: this command reads PyTorch weights (a run directory or a .safetensors "
            "file), not an exported model file"
        )
    return path
