"""The answer about one image, one vocabulary for `zoo classify`, `zoo serve` and `zoo visualize`.

    >>> top_k(np.array([[0.0, 2.0, 1.0]]), ["cat", "dog", "fox"], 2)
    [[{'label': 'dog', 'index': 1, 'probability': 0.665241}, {'label': 'fox', 'index': 2, 'probability': 0.244728}]]

Per image: the k most probable classes, best first, each `{"label", "index", "probability"}` (the class
name, its index in the model's output, the softmax probability rounded to DIGITS places). `zoo classify`
writes it as a JSON line's `"top_k"` (beside `path`, and `label` / `correct` where the folder names the
class); the server answers `{"model", "predictions": [{"top_k": [...]}, ...]}`, one object per image.
NumPy only: the ONNX Runtime path never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIGITS = 6  # decimal places of a probability in every answer


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over each row of [N, classes] logits, in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k(logits: np.ndarray, class_names: Sequence[str], k: int) -> list[list[dict]]:
    """[N, classes] logits -> per row the k (at most the number of classes) most probable classes as
    {"label", "index", "probability"}, best first (ties: the lower index first)."""
    probs = softmax(logits)
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, probs.shape[1])]
    return [
        [{"label": class_names[i], "index": i, "probability": round(row[i], DIGITS)} for i in idx]
        for row, idx in zip(probs.tolist(), order.tolist())
    ]
