"""One trial of a test case: build the state its steps describe on the provider, make the call,
and keep what a judge needs to look at afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.engine.world import Then, World

if TYPE_CHECKING:
    from conformance.engine.subject import Subject
    from conformance.provider import Outcome, Provider

# -- one trial: build the state, call, look ---------------------------------------------------


@dataclass
class Trial:
    world: World
    state: dict[str, list[dict[str, Any]]]
    args: dict[str, Any]
    outcome: Outcome


def prepare(
    subject: Subject,
    steps: list[dict[str, Any]],
    provider: Provider | None = None,
    then: Then | None = None,
    state: dict[str, Any] | None = None,
) -> tuple[World, dict[str, Any]]:
    """A fresh world with the steps applied, and the oracle state they build (`state`: the
    caller built it already). `then` is the call the caller makes next on the world and what
    it may observe after it: a worker process answers all of it in one round trip."""
    world = World(provider or subject.provider, subject.domain)
    planned = subject.planned.get(id(steps)) if subject.planned else None
    if planned and planned[0][0] is steps and planned[0][1] == then and provider is None:
        _, _, completed, requests = planned.popleft()  # built when it was sent ahead
    else:
        completed, requests = [subject.domain.complete(raw) for raw in steps], None
    world.reset_and_setup(completed, then, requests)
    if state is None:
        state = subject.domain.empty_state()
        for step in completed:
            subject.domain.apply(state, step)
    return world, state
