"""Observed behaviour: how a Windows version was seen to depart from its documentation page.

A spec's `observed:` entries record such departures (a version prefix, an optional CEL
condition, the code Windows gives and the documented one it replaces, who saw it). The run's
policy decides what a matching result means, as Wine's `broken()` does in its tests:

- `strict` (the default): nothing is excused; a departure fails like any wrong code;
- `lenient`: a result that matches an entry for the provider's declared Windows version
  (`capabilities()["windows_version"]`) passes, and the check records which entry excused it.

A provider that declares no Windows version (the reference simulator, a vendor's
implementation) is never excused: the page is its only contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conformance.spec.model import Observed

STRICT, LENIENT = "strict", "lenient"
POLICIES = (STRICT, LENIENT)
WINDOWS_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,3}$")


def declared_version(capabilities: dict[str, Any]) -> str | None:
    """The provider's Windows version (`10.0.19045`), or None when it declares none."""
    value = capabilities.get("windows_version")
    if isinstance(value, str) and WINDOWS_VERSION.match(value.strip()):
        return value.strip()
    return None


def version_matches(prefix: str, version: str) -> bool:
    """`10.0` matches `10.0` and `10.0.19045`, never `10.01` or `6.3`: whole components."""
    want = [int(p) for p in prefix.split(".")]
    have = [int(p) for p in version.split(".")]
    return have[: len(want)] == want


@dataclass
class ObservedPolicy:
    """The run's policy, the provider's version, and the excuses made in the current check."""

    mode: str = STRICT
    windows: str | None = None
    _hits: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def lenient(self) -> bool:
        """Whether any result can be excused in this run."""
        return self.mode == LENIENT and self.windows is not None

    def applies(self, entry: Observed) -> bool:
        return self.lenient and version_matches(entry.windows, self.windows or "")

    def note(self, method: str, entry: Observed, expected: tuple[str, ...]) -> None:
        """Remember that `entry` excused one result of `method` in the check in flight."""
        hit = self._hits.setdefault(
            (method, entry.index),
            {
                "method": method,
                "entry": entry.index,
                "windows": entry.windows,
                "code": entry.code,
                "instead_of": entry.instead_of,
                "expected": [],
                "source": entry.source,
                "note": entry.note,
                "provider_windows": self.windows,
                "times": 0,
            },
        )
        hit["times"] += 1
        hit["expected"] = sorted({*hit["expected"], *expected})

    def take(self) -> list[dict[str, Any]]:
        """The excuses made since the last take, in order of first use; forgets them."""
        hits, self._hits = list(self._hits.values()), {}
        return hits


def describe_hits(hits: list[dict[str, Any]]) -> str:
    """One sentence for a check's message: what was excused, by which entry."""
    parts = []
    for hit in hits:
        replaced = hit["instead_of"] or " or ".join(hit["expected"])
        times = "once" if hit["times"] == 1 else f"{hit['times']} times"
        parts.append(
            f"{hit['code']} instead of {replaced} {times} "
            f"({hit['method']} observed[{hit['entry']}], Windows {hit['windows']})"
        )
    return "passed as observed (--observed lenient): " + "; ".join(parts)


__all__ = [
    "LENIENT",
    "POLICIES",
    "STRICT",
    "ObservedPolicy",
    "declared_version",
    "describe_hits",
    "version_matches",
]
