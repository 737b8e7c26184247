"""The argument values of a case that are not plain data, shared by the oracle and the world.

`OUT` is an out-parameter the caller passed a valid pointer for; `Unknown` a reference to an
object that does not exist. The oracle predicts with them and the world turns them into
what a provider is called with, so they sit below both: this module imports nothing of the
harness.
"""

from __future__ import annotations

from dataclasses import dataclass

OUT = "out"  # an out-parameter the caller passed a valid pointer for


@dataclass(frozen=True)
class Unknown:
    """A reference to an object of `step` that does not exist."""

    step: str
    n: int = 1

    @property
    def name(self) -> str:
        return f"{self.step}?{self.n}"
