"""Progress of a long run: checks done / total, failures so far, and what runs now.

On a terminal, a live line rewritten in place. Piped (a CI log, `| tee`), a plain line at most
every `every` seconds on stdout, so that a log shows the run is alive and how far it is, and a
run that takes minutes is never silent until its end.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

EVERY = 10.0  # seconds between two lines when the output is not a terminal


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        every: float = EVERY,
        clock=time.monotonic,
    ):
        """`enabled`: True a live line, False nothing, None a live line on a terminal and
        periodic lines otherwise."""
        self.total = total
        self.done = 0
        self.failures = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.periodic = enabled is None and not self.enabled
        self.every = every
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._width = 0

    def starting(self, name: str) -> None:
        self._show(name)

    def finished(self, name: str, failed: bool) -> None:
        self.done += 1
        self.failures += int(failed)
        self._show(name)
        self._tick()

    def line(self, name: str) -> str:
        return f"[{self.done}/{self.total}] {self.failures} failed  {name}"

    def _tick(self) -> None:
        """A periodic line for a log, when `every` seconds have passed since the last one."""
        if not self.periodic:
            return
        now = self._clock()
        if now - self._last < self.every:
            return
        self._last = now
        out = sys.stdout
        out.write(
            f"progress: {self.done}/{self.total} checks, {self.failures} failed, "
            f"{now - self._started:.0f} s elapsed\n"
        )
        out.flush()

    def _show(self, name: str) -> None:
        if not self.enabled:
            return
        columns = shutil.get_terminal_size((100, 20)).columns
        text = self.line(name)[: columns - 1]
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
