"""The server's decode memory as a whole: `DecodeBudget`, a semaphore that counts bytes.

Every image decoded off the event loop first takes the bytes its decoding holds at its peak (estimated
from its header by zoo.data.preprocess.decode_bytes: width x height x bytes a pixel of its mode and of
the conversions to the model's), and gives them back once decoded. Decodes that would take the server
past `limit` wait, first come first served, so the images decoding at once never hold more than `limit`
together; an image that alone needs more is refused (`DecodeTooLarge`: 413). The pixel limit bounds one
image; this bounds all of them (eight 16-bit 64-megapixel PNGs at once held 2.3 GB before it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

MB = 1024 * 1024


class DecodeTooLarge(Exception):
    """One image needs more decode memory than the whole budget."""


class DecodeBudget:
    """`limit` bytes of decode memory, shared by the decodes of one event loop (one app).
    `in_use`: bytes held now; `peak`: the most held at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self.waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    def check(self, nbytes: int, what: str = "this image") -> None:
        """DecodeTooLarge if `nbytes` alone is over the limit."""
        if nbytes > self.limit:
            raise DecodeTooLarge(
                f"{what} takes about {nbytes / MB:,.0f} MB to decode, over the server's decode memory of "
                f"{self.limit / MB:,.0f} MB (--max-decode-mb)"
            )

    async def acquire(self, nbytes: int, what: str = "this image") -> None:
        """Take `nbytes`, waiting (behind the decodes that came first) until they fit."""
        self.check(nbytes, what)
        if not self.waiting and self.in_use + nbytes <= self.limit:
            self._take(nbytes)
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (nbytes, granted)
        self.waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(nbytes)  # granted, then cancelled before it ran: give them back
            else:
                self.waiting.remove(entry)
                self._grant()  # those behind it may fit now
            raise

    def release(self, nbytes: int) -> None:
        """Give back `nbytes` taken by `acquire`."""
        self.in_use -= nbytes
        self._grant()

    @contextlib.asynccontextmanager
    async def held(self, nbytes: int, what: str = "this image") -> AsyncIterator[None]:
        """`nbytes` held for the block (see acquire)."""
        await self.acquire(nbytes, what)
        try:
            yield
        finally:
            self.release(nbytes)

    def _take(self, nbytes: int) -> None:
        self.in_use += nbytes
        self.peak = max(self.peak, self.in_use)

    def _grant(self) -> None:
        while self.waiting and self.in_use + self.waiting[0][0] <= self.limit:
            nbytes, granted = self.waiting.popleft()
            self._take(nbytes)
            granted.set_result(None)
