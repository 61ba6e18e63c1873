"""The answer about one image, one vocabulary for `zoo classify`, `zoo serve` and `zoo visualize`.

    >>> top_k(np.array([[0.0, 2.0, 1.0]]), ["cat", "dog", "fox"], 2)
    [[{'label': 'dog', 'index': 1, 'probability': 0.665241}, {'label': 'fox', 'index': 2, 'probability': 0.244728}]]
    >>> answers(np.array([[0.0, 2.0, 1.0]]), ["cat", "dog", "fox"], 1)
    [{'top_k': [{'label': 'dog', 'index': 1, 'probability': 0.665241}]}]

Per image: the k most probable classes, best first, each `{"label", "index", "probability"}` (the class
name, its index in the model's output, the softmax probability rounded to DIGITS places), wrapped as
`{"top_k": [...]}` by `image_answer`, the one producer of that object. `ImageAnswer` is its model (with
`Prediction`, one class): the server's OpenAPI page and the tests that check real answers use it; the
producers build plain dicts, which the hot paths serialize without validating. `zoo classify` writes it
in each JSON line (beside `path`, and `true_label` / `correct` where the folder names the class); the
server answers `{"model", "predictions": [ImageAnswer, ...]}`, one per image.
NumPy and pydantic only: the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DIGITS = 6  # decimal places of a probability in every answer
DEFAULT_TOP_K = 5  # classes per image where the caller does not say (zoo classify --top-k, /predict?top_k=)


class Prediction(BaseModel):
    """One class of an image's top-k."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="the class's name")
    index: int = Field(description="the class's index in the model's output")
    probability: float = Field(description=f"softmax probability, rounded to {DIGITS} decimal places")


class ImageAnswer(BaseModel):
    """The answer about one image: the object /predict gives per image and a `zoo classify` line holds."""

    model_config = ConfigDict(extra="forbid")

    top_k: list[Prediction] = Field(description="the most probable classes, best first")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over each row of [N, classes] logits, in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k(logits: np.ndarray, class_names: Sequence[str], k: int = DEFAULT_TOP_K) -> list[list[dict]]:
    """[N, classes] logits -> per row the k (at most the number of classes) most probable classes as
    {"label", "index", "probability"}, best first (ties: the lower index first)."""
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, probs.shape[1])]
    return [
        [{"label": class_names[i], "index": i, "probability": round(row[i], DIGITS)} for i in idx]
        for row, idx in zip(probs.tolist(), order.tolist())
    ]


def image_answer(top: list[dict]) -> dict:
    """The answer about one image from its top-k (as `top_k` gives it): an ImageAnswer as a dict."""
    return {"top_k": top}


def answers(logits: np.ndarray, class_names: Sequence[str], k: int = DEFAULT_TOP_K) -> list[dict]:
    """[N, classes] logits -> one `image_answer` per row."""
    return [image_answer(top) for top in top_k(logits, class_names, k)]


def read_top(d: Mapping) -> list[dict]:
    """The top-k of an image answer read back from a file (none where the image has an error); an
    entry without "index" (a CSV row's) stays without it. Raises KeyError, ValueError or TypeError on a
    malformed entry."""
    return [
        {
            "label": str(t["label"]),
            **({"index": int(t["index"])} if "index" in t else {}),
            "probability": float(t["probability"]),
        }
        for t in d.get("top_k", [])
    ]
