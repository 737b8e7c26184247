"""A live progress line for long runs: checks done / total, failures so far, what runs now.

Written to a terminal only; when output is a pipe or a CI log the line stays quiet and the
final summary says it all.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None):
        self.total = total
        self.done = 0
        self.failures = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._width = 0

    def starting(self, name: str) -> None:
        self._show(name)

    def finished(self, name: str, failed: bool) -> None:
        self.done += 1
        self.failures += int(failed)
        self._show(name)

    def line(self, name: str) -> str:
        return f"[{self.done}/{self.total}] {self.failures} failed  {name}"

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
