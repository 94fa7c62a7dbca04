"""How long work reports on itself: a progress line on stderr (rows done, rows/s, tokens/s
and ETA, silent when disabled), and `Say`, the one-line messages every stage takes as a
callback (the command line passes one that writes to stderr; the library default is
silence, never stdout)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Say = Callable[[str], None]  # a message for the person running the command


def silent(_message: str) -> None:
    """The default `Say`: library code never prints."""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        done: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        label: str = "rows",
        tokens: bool = True,  # show tokens/s
    ) -> None:
        self.total, self.done, self.label = total, done, label
        self.show_tokens = tokens
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.new_rows = 0
        self.tokens = 0
        self._last_draw = 0.0
        self._tty = self.stream.isatty()

    def advance(self, rows: int = 1, tokens: int = 0) -> None:
        self.done += rows
        self.new_rows += rows
        self.tokens += tokens
        now = time.monotonic()
        # Redraw at most 5 times a second on a terminal; at each 10% passed in a log file.
        step = max(1, self.total // 10)
        if (
            (self._tty and now - self._last_draw > 0.2)
            or (not self._tty and self.done // step > (self.done - rows) // step)
            or self.done >= self.total
        ):
            self._last_draw = now
            self.draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.new_rows / elapsed
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        tokens = f"{self.tokens / elapsed:.0f} tok/s  " if self.show_tokens else ""
        return (
            f"{self.done}/{self.total} {self.label}  {rate:.1f} {self.label}/s  "
            f"{tokens}elapsed {_clock(elapsed)}  ETA {eta}"
        )

    def draw(self) -> None:
        if not self.enabled:
            return
        end = "" if self._tty else "\n"
        prefix = "\r\033[K" if self._tty else ""
        print(prefix + self.line(), end=end, file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self._tty:
            print(file=self.stream, flush=True)
