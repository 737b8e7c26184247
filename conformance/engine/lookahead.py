"""Sending a spec's next planned cases to a worker before the current one's answer is back, so
that a provider in another process or machine is never idle between cases.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from conformance.engine.batch import SubmittingProvider
from conformance.engine.strategies import Case
from conformance.engine.world import Then, World

if TYPE_CHECKING:
    from conformance.engine.subject import Subject

# -- exploration: drawn cases after the plan (the thorough profile) ---------------------------

LOOKAHEAD = 8  # planned cases sent to a worker process ahead of the one being executed

# The worlds one case of a check builds, in order: (subject, given steps, the call after them).
Plan = Callable[[Case], list[tuple["Subject", list[dict[str, Any]], Then]]]


def looking_ahead(subject: Subject, plan: Plan | None, cases: Iterable[Case]) -> Iterator[Case]:
    """The cases in order; a provider that takes test cases ahead (`submit`: a worker
    process) gets the next ones' requests first, and runs them while this one is judged. The
    requests are those the engine makes, so its results are the same either way."""
    provider = subject.provider
    if plan is None or not isinstance(provider, SubmittingProvider):
        yield from cases
        return
    pending = iter(cases)
    upcoming: deque[Case] = deque()
    sent = 0  # the first `sent` of `upcoming` were taken by the provider
    planned: dict[int, Subject] = {}  # the subjects that keep batches built ahead
    try:
        while True:
            while len(upcoming) < LOOKAHEAD and (case := next(pending, None)) is not None:
                upcoming.append(case)
            while sent < len(upcoming) and provider.submit(_batches(plan, upcoming[sent], planned)):
                sent += 1
            if not upcoming:
                return
            sent = max(sent - 1, 0)
            yield upcoming.popleft()
    finally:  # what was built for cases sent but not judged (the check ended first)
        for subject_ in planned.values():
            subject_.planned.clear()


def _batches(plan: Plan, case: Case, planned: dict[int, Subject]) -> list[list[dict[str, Any]]]:
    """The batches of a case's worlds, kept for `prepare` so it need not build them again."""
    out = []
    for subject, steps, then in plan(case):
        completed = [subject.domain.complete(raw) for raw in steps]
        requests = World(subject.provider, subject.domain).batch_requests(completed, then)
        subject.planned.setdefault(id(steps), deque()).append((steps, then, completed, requests))
        planned[id(subject)] = subject
        out.append(requests)
    return out
