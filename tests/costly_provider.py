"""Providers that declare costs or limits in their capabilities, for tests/engine/test_plan.py.

Each wraps the bundled reference through the public provider contract only.
"""

from __future__ import annotations

import time
from typing import Any

from conformance_providers.reference import ReferenceProvider

from conformance.provider import Outcome


class SlowSetups(ReferenceProvider):
    """Every setup takes (and is declared to take) 0.2 s; the rest is declared at the default."""

    SETUP_SECONDS = 0.2

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "costs": {"setup": self.SETUP_SECONDS}}

    def setup(self, step: dict[str, Any]) -> str:
        time.sleep(self.SETUP_SECONDS)
        return super().setup(step)


class DeclaresSlowSetups(SlowSetups):
    """Declares what SlowSetups declares and does not sleep: the same plan, no delay."""

    def setup(self, step: dict[str, Any]) -> str:
        return ReferenceProvider.setup(self, step)


class SlowEverything(ReferenceProvider):
    """Every operation takes (and is declared to take) 2 ms: a provider whose time is spent on
    its side, as a real system's is, for measuring what -n N buys."""

    SECONDS = 0.002

    def capabilities(self) -> dict[str, Any]:
        return {
            **super().capabilities(),
            "costs": dict.fromkeys(("reset", "setup", "call", "observe"), self.SECONDS),
        }

    def reset(self) -> None:
        time.sleep(self.SECONDS)
        super().reset()

    def setup(self, step: dict[str, Any]) -> str:
        time.sleep(self.SECONDS)
        return super().setup(step)

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        time.sleep(self.SECONDS)
        return super().call(method_id, args)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        time.sleep(self.SECONDS)
        return super().observe(collection)


class MalformedCosts(ReferenceProvider):
    """Declares a cost that is not a number of seconds."""

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "costs": {"setup": "slow"}}


class EveryOperationFails(ReferenceProvider):
    """Declares everything and can do nothing: only a plan can be made, never a run."""

    def reset(self) -> None:
        raise RuntimeError("reset must not be called by conformance plan")

    def setup(self, step: dict[str, Any]) -> str:
        raise RuntimeError("setup must not be called by conformance plan")

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        raise RuntimeError("call must not be called by conformance plan")

    def observe(self, collection: str) -> list[dict[str, Any]]:
        raise RuntimeError("observe must not be called by conformance plan")


class NoFaults(ReferenceProvider):
    """Injects no fault: its capabilities list none."""

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "faults": []}
