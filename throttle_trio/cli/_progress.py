"""Progress for a batch: a live line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO, final

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@final
@dataclass
class Progress:
    """Counts a batch's progress and shows it.

    On a terminal one line is redrawn at most ``refresh`` times a second (requests done, tokens
    per minute, 429s, ETA), and by :meth:`tick` between completions; elsewhere a log line is
    printed after the first completion, every ``log_every`` seconds and at the end.
    """

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    refresh: float = 4.0
    log_every: float = 10.0
    done: int = 0
    failed: int = 0
    tokens: float = 0.0
    rate_limited: int = 0
    started: float = field(default_factory=time.monotonic)
    _last_draw: float = 0.0

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, *, ok: bool, tokens: float, rate_limited: int) -> None:
        """Count one finished request (``rate_limited``: 429s seen so far, in total)."""
        self.done += 1
        self.failed += 0 if ok else 1
        self.tokens += tokens
        self.rate_limited = rate_limited
        now = time.monotonic()
        interval = 1 / self.refresh if self.interactive else self.log_every
        if now - self._last_draw >= interval or self.done == self.total:
            self._last_draw = now
            self._draw(now)

    def tick(self, *, rate_limited: int) -> None:
        """Redraw the live line between completions (a terminal only), so that the elapsed
        time, the ETA and the 429s move on while requests wait out a pause."""
        self.rate_limited = rate_limited
        if self.interactive and self.done != self.total:
            now = time.monotonic()
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The progress as one line of text."""
        elapsed = max(1e-9, (now if now is not None else time.monotonic()) - self.started)
        per_minute = self.tokens / elapsed * 60
        remaining = self.total - self.done
        eta = remaining * elapsed / self.done if self.done else math.inf
        percent = 100 * self.done / self.total if self.total else 100.0
        return (
            f"{self.done}/{self.total} requests ({percent:.0f}%), {self.failed} failed, "
            f"{per_minute:,.0f} tokens/min, {self.rate_limited} 429s, "
            f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}"
        )

    def _draw(self, now: float) -> None:
        if self.interactive:
            self.stream.write("\r\x1b[2K" + self.line(now))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the live line (if any)."""
        if self.interactive and self.done != self.total:
            self.stream.write("\n")
            self.stream.flush()
