"""Small helpers for the words of the messages people read."""

from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """ "1 image", "2 images", "1,200 images"; `nouns` where the plural is not noun + "s"."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"
