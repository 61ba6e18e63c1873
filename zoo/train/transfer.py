"""Transfer learning: import pretrained weights, replace the head, adapt the input, freeze stages.

    provenance = load_pretrained(model, "resnet18", "imagenet")      # or a run dir / .safetensors / .pth
    frozen = freeze(model, "resnet18", "backbone")                     # or "none", or N last stages
    groups = param_groups(model, "resnet18", backbone_lr_mult=0.1)  # "lr_mult" per group

Weights are never unpickled: torchvision checkpoints go through `torch.load(weights_only=True)`, our own
through safetensors.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable

import torch
import torch.nn as nn

from .. import download, rundir
from ..models import get_spec, list_models


class PretrainedError(ValueError):
    """Weights that cannot be loaded as asked; the message says why and what to do."""


def imagenet_checkpoint(arch: str, base_url: str | None = None) -> pathlib.Path:
    """The cached ImageNet checkpoint `arch`'s spec publishes, downloaded if missing; SHA-256 checked
    against its full digest where the spec has it, else against the 8 hex digits in its name.

    `base_url` (or `$ZOO_WEIGHTS_URL`) replaces https://download.pytorch.org/models/, e.g. for a mirror.
    """
    import os

    spec = get_spec(arch)
    if spec.weights is None:
        published = [name for name in list_models() if get_spec(name).weights is not None]
        raise PretrainedError(
            f"there are no published ImageNet weights for {spec.name}; they exist for {', '.join(published)}"
        )
    weights = spec.weights
    try:
        return download.fetch(
            weights.url(base_url or os.environ.get("ZOO_WEIGHTS_URL")),
            download.cache_dir("weights", weights.file),
            digest=weights.digest,
        )
    except download.DownloadError as e:
        raise PretrainedError(str(e)) from None


def read_state_dict(source: str | pathlib.Path, arch: str) -> tuple[dict, pathlib.Path]:
    """(state_dict, file) from a run directory, a .safetensors file or a torchvision-format .pth."""
    if str(source) == "imagenet":
        path = imagenet_checkpoint(arch)
    else:
        path = pathlib.Path(source)
        if path.is_dir() or path.suffix == ".safetensors":
            try:
                path, card_path = rundir.resolve_weights(path)
            except rundir.RunError as e:
                if not (path.suffix == ".safetensors" and path.is_file()):
                    raise PretrainedError(str(e)) from None
                card_path = None  # a bare weights file: nothing says which architecture it was
            if card_path is not None:
                try:
                    made_for = rundir.read_card(path).architecture
                except rundir.RunError as e:
                    raise PretrainedError(str(e)) from None
                if made_for != get_spec(arch).name:
                    raise PretrainedError(f"{source} holds {made_for} weights, not {get_spec(arch).name}")
        elif not path.is_file():
            raise PretrainedError(f"{source}: no such file or run directory (or use --pretrained imagenet)")
    if path.suffix == ".safetensors":
        try:
            return rundir.read_weights(path), path
        except rundir.RunError as e:
            raise PretrainedError(str(e)) from None
    try:  # torch's own messages would advise loading unsafely: none of them is passed on
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (pickle errors, not-a-checkpoint, refused globals)
        raise PretrainedError(
            f"{path}: not a loadable weights file (damaged, or not a plain state dict of tensors)"
        ) from None
    for key in ("state_dict", "model", "model_state", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}, path


def _fold_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-layer kernel of C input channels to `in_channels` (sum for 1, tile and rescale else)."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    c = weight.shape[1]
    reps = math.ceil(in_channels / c)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c / in_channels)


def load_pretrained(
    model: nn.Module, arch: str, source: str, *, partial: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Load `source` into `model` (built for `arch`): new head where the class count differs, first
    convolution folded when the input channels differ. Other mismatches are an error naming them unless
    `partial`. Returns the provenance to put in the model card."""
    state, path = read_state_dict(source, arch)
    spec, own = get_spec(arch), model.state_dict()
    absent = [f"{n}." for n in (spec.aux.modules if spec.aux else ()) if n not in spec.aux_modules(model)]
    for k in [k for k in state if k.startswith(tuple(absent))]:  # aux heads the file has, the model not
        del state[k]
    notes = _fold_first_conv(state, own)
    new_head, head_notes = _new_heads(state, own, [layer for _, layer in spec.heads(model)])
    notes += head_notes
    problems, misfits = _misfits(state, own, new_head)
    if problems and not partial:
        raise PretrainedError(
            f"{path} does not fit {spec.name}: keys "
            + "; ".join(problems)
            + " (--pretrained-partial loads the keys that fit)"
        )
    for k in misfits:
        state.pop(k, None)
    model.load_state_dict(state, strict=False)
    if problems:
        notes.append(f"partial load: {len(state)} of {len(own)} tensors; skipped " + "; ".join(problems))
    for note in notes:
        log(note)
    provenance = {
        "source": str(source),
        "file": str(path),
        "sha256": download.file_digest(path),
        "loaded_tensors": len(state),
        "new_head": bool(new_head),
        "notes": notes,
    }
    norm = normalization(arch, str(source))
    if norm:
        provenance["normalization"] = {"mean": norm[0], "std": norm[1]}
    return provenance


def _fold_first_conv(state: dict, own: dict) -> list[str]:
    """The file's first convolution folded in place where its input channels differ from the model's;
    the note that says so, if any."""
    first_conv = next(k for k, v in own.items() if v.ndim == 4)
    if first_conv not in state or state[first_conv].ndim != 4 or state[first_conv].shape[1] == own[first_conv].shape[1]:
        return []
    c_from, c_to = state[first_conv].shape[1], own[first_conv].shape[1]
    state[first_conv] = _fold_input_conv(state[first_conv], c_to)
    plural = "s" if c_to > 1 else ""
    return [f"{first_conv}: adapted the pretrained {c_from}-channel filters to {c_to} input channel{plural}"]


def _new_heads(state: dict, own: dict, classifiers: list[str]) -> tuple[list[str], list[str]]:
    """The classifier layers whose class count differs from the file's, dropped from `state` (they stay
    freshly initialised): their keys, and a note each."""
    new_head, notes = [], []
    for head in classifiers:
        keys = [f"{head}.{suffix}" for suffix in ("weight", "bias")]
        if any(k in state and k in own and state[k].shape != own[k].shape for k in keys):
            n_from = state[keys[0]].shape[0]
            for k in keys:
                state.pop(k, None)
            new_head += keys
            notes.append(f"new head {head}: {n_from} -> {own[keys[0]].shape[0]} classes (freshly initialised)")
    return new_head, notes


def _misfits(state: dict, own: dict, new_head: list[str]) -> tuple[list[str], list[str]]:
    """What does not fit between the file's tensors and the model's: the problems, one phrase per kind
    (missing, unexpected, of another shape), and the file's keys that cannot be loaded."""
    missing = [k for k in own if k not in state and k not in new_head]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    kinds = ((missing, "missing"), (unexpected, "unexpected"), (mismatched, "of another shape"))
    problems = [
        f"{len(keys)} {what} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})" for keys, what in kinds if keys
    ]
    return problems, unexpected + mismatched


def _params(modules):
    for m in modules:
        yield from m.parameters()


def _lock_eval(module: nn.Module, args) -> None:
    module.training = False  # frozen batch norm: use and keep the pretrained running statistics


def freeze(model: nn.Module, arch: str, spec: str | int = "none") -> dict:
    """Freeze `model` in place: "none" (full fine-tuning), "backbone" (everything but the head: feature
    extraction) or N (everything but the last N stages trainable). Frozen batch-norm layers stay in eval
    mode (their running statistics never change), whatever `model.train()` says."""
    all_stages = get_spec(arch).stages(model)
    if spec == "none":
        n_train = len(all_stages)
    elif spec == "backbone":
        n_train = 1
    else:
        try:
            n_train = int(spec)
        except ValueError:
            raise PretrainedError(
                f"--freeze takes backbone, none or a number of trainable stages, not {spec!r}"
            ) from None
        if n_train < 1:
            raise PretrainedError("--freeze N needs N >= 1 (the head always trains)")
    frozen = all_stages[: max(0, len(all_stages) - n_train)]
    for _, modules in frozen:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(False)
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.register_forward_pre_hook(_lock_eval)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {
        "freeze": str(spec),
        "frozen_stages": [n for n, _ in frozen],
        "trainable_stages": [n for n, _ in all_stages[len(frozen) :]],
        "frozen_params": n_frozen,
        "trainable_params": sum(p.numel() for p in model.parameters()) - n_frozen,
    }


def param_groups(model: nn.Module, arch: str, backbone_lr_mult: float = 1.0) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters, each with an "lr_mult" that scales the
    schedule's learning rate: 1 for the head, `backbone_lr_mult` for the rest (discriminative rates)."""
    head_ids = {id(p) for _, ms in get_spec(arch).stages(model)[-1:] for p in _params(ms)}
    head = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr_mult": 1.0, "name": "head"}]
    if body:
        groups.append({"params": body, "lr_mult": backbone_lr_mult, "name": "backbone"})
    return groups


def normalization(arch: str, source: str | None) -> tuple[list[float], list[float]] | None:
    """The input mean/std that pretrained weights from `source` expect, where it differs from the model's."""
    weights = get_spec(arch).weights
    if source != "imagenet" or weights is None or weights.mean is None:
        return None
    return list(weights.mean), list(weights.std)
