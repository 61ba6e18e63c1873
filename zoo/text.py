"""Small helpers for the words of the messages people read."""

from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """ "1 image", "2 images", "1,200 images"; `nouns` where the plural is not noun + "s"."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def first_line(error: BaseException) -> str:
    """What a library's exception says, in one line: its message's first line, or its type's name where
    the message is empty (for messages that quote the reason: "... (truncated)")."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
