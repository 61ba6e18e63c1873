"""The precision vocabulary, torch-free: the card's names and the float dtype each computes in.

A precision is named as the card names it (`zoo.card.PRECISIONS`: fp32, bf16, fp16, int8): runtimes,
`zoo export`, `zoo bench`, `--precision`. Its float dtype is named as torch and NumPy name it (float32,
bfloat16, float16): training speaks that way (`--amp bfloat16`, the checkpoint's and the card's
`provenance["precision"]`). DTYPES is the one map between them; a library's own type is looked up by the
dtype's name where the library is imported (`getattr(torch, dtype)`).

    >>> float_dtype("bf16"), precision_of("bfloat16"), precision_of("bf16")
    ('bfloat16', 'bf16', 'bf16')
"""

from __future__ import annotations

from zoo.card import PRECISIONS

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # precision -> its float dtype
FLOAT32 = DTYPES["fp32"]


def float_dtype(precision: str) -> str:
    """The float dtype `precision` computes in (int8: the float32 of the layers that are not int8)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return DTYPES.get(precision, FLOAT32)


def precision_of(name: str) -> str:
    """The card's name for a precision named either way ("bfloat16" or "bf16" -> "bf16")."""
    if name in PRECISIONS:
        return name
    for precision, dtype in DTYPES.items():
        if dtype == name:
            return precision
    raise ValueError(f"unknown precision {name!r}; use one of {', '.join(PRECISIONS + tuple(DTYPES.values()))}")
