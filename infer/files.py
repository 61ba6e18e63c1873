"""Which model files are at a path, what each computes in, and the card each carries.

A run directory holds up to one file of each kind (`zoo.rundir.MODEL_FILES`: weights, onnx, onnx_fp16,
onnx_int8, engine, engine_int8); a single file is the one kind its own precision makes it. FILE_KINDS is
the one table from a file's format and precision to its kind (`export.tensorrt` names engines by it).
Imports no heavy library: onnx is imported to read an ONNX file's card.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib

from zoo import rundir
from zoo.card import ONNX_METADATA_KEY, CardError, ModelCard

from .predictor import ModelFileError

# (format, the precision a file of it computes in by itself) -> its kind, a key of rundir.MODEL_FILES
FILE_KINDS = {
    ("engine", "fp32"): "engine",
    ("engine", "fp16"): "engine",
    ("engine", "int8"): "engine_int8",
    ("onnx", "fp32"): "onnx",
    ("onnx", "fp16"): "onnx_fp16",
    ("onnx", "int8"): "onnx_int8",
    ("weights", "fp32"): "weights",
}
FORMATS = {"tensorrt": "engine", "onnxruntime": "onnx", "openvino": "onnx", "torch": "weights"}  # runtime -> format
# the runtimes that compute bf16 and fp16 themselves from the float32 model (the others run a file in its own)
FROM_FLOAT32 = ("openvino", "torch")


def kind_of(fmt: str, precision: str) -> str:
    """The kind of a file in format `fmt` ("engine", "onnx", "weights") that computes in `precision`."""
    return FILE_KINDS.get((fmt, precision), fmt)


def found(path: pathlib.Path) -> dict[str, pathlib.Path]:
    """file kind ("engine", "engine_int8", "onnx", "onnx_fp16", "onnx_int8", "weights") -> the file, for
    what exists at `path`. A single file is one kind, named after its precision."""
    if path.is_dir():
        present = {kind: path / name for kind, name in rundir.MODEL_FILES.items()}
        return {k: f for k, f in present.items() if f.is_file()}
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix in rundir.ENGINE_SUFFIXES:
        return {kind_of("engine", engine_precision(path)): path}
    if suffix == ".onnx":
        return {kind_of("onnx", onnx_card(path).precision): path}
    if suffix == ".safetensors":
        return {"weights": path}
    raise ModelFileError(f"{path}: expected a run directory, a .safetensors, .onnx or .engine file")


def file_for(runtime: str, precision: str, files: dict[str, pathlib.Path]) -> pathlib.Path | None:
    """The file `runtime` runs to compute in `precision`, among `files` (from `found`; None: none)."""
    computed = runtime in FROM_FLOAT32 and precision in ("bf16", "fp16")
    file = files.get(FILE_KINDS.get((FORMATS[runtime], "fp32" if computed else precision), ""))
    if file is not None and runtime == "tensorrt" and engine_precision(file) != precision:
        return None  # an fp16 engine is no fp32 one
    return file


def metadata_card(text: str | None, path: str | os.PathLike) -> ModelCard:
    """The card an ONNX file carries in its metadata (`text`, None where the key is absent), read by every
    runtime that opens one; ModelFileError naming the file where it is missing or damaged."""
    if text is None:
        raise ModelFileError(
            f"{path}: no model card in the ONNX metadata (key {ONNX_METADATA_KEY!r}); "
            "export it with `zoo export RUN --onnx`"
        )
    try:
        return ModelCard.from_json(text)
    except CardError as e:
        raise ModelFileError(f"{path}: damaged model card in its metadata (key {ONNX_METADATA_KEY!r}): {e}") from None


def onnx_card(path: str | os.PathLike) -> ModelCard:
    """The card in an ONNX file's metadata (onnx reads the file; weights are not kept); read once while
    the file is unchanged, and each caller gets a copy of its own."""
    path = pathlib.Path(path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _CARDS:
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # a truncated or foreign file: onnx raises DecodeError and others
            raise ModelFileError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0]})") from None
        meta = {p.key: p.value for p in proto.metadata_props}
        _CARDS[key] = metadata_card(meta.get(ONNX_METADATA_KEY), path)
    return copy.deepcopy(_CARDS[key])  # the caller's own, to change at will


_CARDS: dict = {}


def engine_precision(engine: pathlib.Path) -> str:
    """The precision an engine's card beside it names (fp32 where it names none or cannot be read)."""
    try:
        return json.loads(rundir.engine_card(engine).read_text()).get("precision", "fp32")
    except (OSError, ValueError, AttributeError):
        return "fp32"


def own_precision(file: pathlib.Path) -> str:
    """The precision a model file computes in by itself (an engine's, an ONNX file's card's)."""
    if file.suffix.lower() in rundir.ENGINE_SUFFIXES:
        return engine_precision(file)
    if file.suffix.lower() == ".onnx":
        return onnx_card(file).precision
    return "fp32"


def card_of(file: pathlib.Path) -> ModelCard:
    """The card of a model file: an ONNX file's own, an engine's beside it, a run's card.json."""
    if file.suffix == ".onnx":
        return onnx_card(file)
    engine = file.suffix in rundir.ENGINE_SUFFIXES
    card = rundir.engine_card(file) if engine else file.parent / rundir.CARD
    try:
        return ModelCard.load(card)
    except CardError as e:  # its message names the file
        raise ModelFileError(str(e)) from None


def stale(exported: pathlib.Path, weights: pathlib.Path | None) -> bool:
    """Whether an exported file in a run directory is older than the weights it was made from."""
    return weights is not None and exported != weights and exported.stat().st_mtime < weights.stat().st_mtime
