"""Provider operations: counted for every run, priced by what the provider declares.

Against a real system a `reset`, a `setup` (create a portal group, log in to a target), a
`call` or an `observe` costs from milliseconds to seconds; the oracle costs microseconds. So
the harness counts every operation it asks of the provider (`Tally`, kept by
`budget.Budgeted` per check and for the run), and a provider may say what each costs in
`capabilities()["costs"]` (`Costs`), which the planner uses to choose the cheapest cases and to
estimate a run's time before it starts. `parse_budget` reads `--budget 10m` / `5000ops`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conformance.provider import ProviderUnavailable

KINDS = ("reset", "setup", "call", "observe")
# Seconds per operation when a provider declares no costs: what the reference simulator and a
# provider in a local worker take, within a factor of a few; only the ranking of cases and the
# order of magnitude of an estimate depend on it.
DEFAULT_SECONDS = 0.0002


@dataclass
class Tally:
    """Operations by kind, and the round trips (`batch`) they took."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0

    def add(self, kind: str, n: int = 1) -> None:
        if kind in self.counts:
            self.counts[kind] += n

    def merge(self, other: Tally | Mapping[str, Any]) -> None:
        data = other.as_dict() if isinstance(other, Tally) else other
        for kind in KINDS:
            self.counts[kind] += int(data.get(kind, 0) or 0)
        self.batches += int(data.get("batches", 0) or 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        """The results.json shape: `total` and each kind, and `batches` (round trips)."""
        return {"total": self.total, **self.counts, "batches": self.batches}

    def copy(self) -> Tally:
        return Tally(dict(self.counts), self.batches)


def request_kind(request: dict[str, Any]) -> str:
    """The operation kind of one batch request (`{"op": "setup", ...}`)."""
    return str(request.get("op", ""))


class CostsError(ProviderUnavailable, ValueError):
    """`capabilities()["costs"]` is not of the documented shape; names the place."""


@dataclass(frozen=True)
class Costs:
    """Seconds per operation, as a provider declares them (see the provider guide):

        "costs": {"reset": 2.0, "setup": {"portal_group": 1.5, "*": 0.2}, "call": 0.1,
                  "observe": {"sessions": 0.05}}

    Each kind is a number, or a map from a step, method or collection to a number with `*` for
    the rest. Anything not declared costs `DEFAULT_SECONDS`."""

    table: dict[str, float | dict[str, float]] = field(default_factory=dict)
    declared: bool = False

    @classmethod
    def of(cls, capabilities: dict[str, Any]) -> Costs:
        raw = capabilities.get("costs")
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise CostsError(
                f"capabilities()['costs'] is {type(raw).__name__}, not a map of "
                f"{', '.join(KINDS)} to seconds"
            )
        table: dict[str, float | dict[str, float]] = {}
        for kind, value in raw.items():
            if kind not in KINDS:
                raise CostsError(
                    f"capabilities()['costs'][{kind!r}]: not an operation kind ({', '.join(KINDS)})"
                )
            if isinstance(value, dict):
                table[kind] = {str(k): _seconds(v, f"[{kind!r}][{k!r}]") for k, v in value.items()}
            else:
                table[kind] = _seconds(value, f"[{kind!r}]")
        return cls(table, True)

    def of_op(self, kind: str, what: str = "*") -> float:
        """Seconds one operation of `kind` on `what` (a step, method or collection) takes."""
        value = self.table.get(kind)
        if value is None:
            return DEFAULT_SECONDS
        if isinstance(value, dict):
            return value.get(what, value.get("*", DEFAULT_SECONDS))
        return value

    def as_dict(self) -> dict[str, Any]:
        return dict(self.table)


def _seconds(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise CostsError(
            f"capabilities()['costs']{where} is {value!r}; a cost is a number of seconds >= 0"
        )
    return float(value)


@dataclass(frozen=True)
class Budget:
    """What a run may spend: seconds of provider time (estimated) or operations."""

    seconds: float | None = None
    operations: int | None = None
    source: str = ""  # as it was given (passed on to the workers of a parallel run)

    def allows(self, operations: int, seconds: float) -> bool:
        if self.operations is not None and operations > self.operations:
            return False
        return not (self.seconds is not None and seconds > self.seconds)

    def __str__(self) -> str:
        if self.operations is not None:
            return f"{self.operations} operations"
        return duration(self.seconds or 0.0)


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ops?|operations|ms|s|m|min|h)?\s*$", re.I)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_budget(text: str) -> Budget:
    """`10m`, `90s`, `1.5h`, `5000ops` (a bare number is seconds)."""
    match = _BUDGET.match(text or "")
    if not match:
        raise ValueError(
            f"{text!r} is not a budget: give a time (90s, 10m, 1h) or a number of "
            "operations (5000ops)"
        )
    number, unit = float(match.group(1)), (match.group(2) or "s").lower()
    if unit.startswith("op"):
        if number != int(number) or number < 1:
            raise ValueError(f"{text!r}: a budget of operations is a whole number >= 1")
        return Budget(operations=int(number), source=text.strip())
    return Budget(seconds=number * _UNIT_SECONDS[unit], source=text.strip())


def duration(seconds: float) -> str:
    """A time a person reads at a glance: 850 ms, 12.4 s, 3 min 20 s, 2 h 5 min."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
