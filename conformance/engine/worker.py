"""A provider in another process (a worker, or an agent on another machine), as the engine
sees it: the abilities it adds to the contract (`WorkerProvider`) and the timeout it raises
(`CallTimedOut`). conformance.remote.client's `RemoteProvider` is one; the engine knows it
only through this module.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from conformance.errors import ProviderFault


class CallTimedOut(ProviderFault, TimeoutError):
    """A request got no answer in time: the agent's per-call timeout fired, or the harness
    stopped waiting (its own wait, or the check's deadline when `budget` is true).

    `seconds` is the limit that fired, `what` the request (`call(M)`, `reset()`...).
    """

    def __init__(self, message: str, seconds: float | None, what: str, budget: bool = False):
        super().__init__(message)
        self.seconds = seconds
        self.what = what
        self.budget = budget


@runtime_checkable
class WorkerProvider(Protocol):
    """A provider whose process can be replaced: `restart` ends it now (it may be stuck),
    `connect` starts the next one before it is needed, `deadline` (a time.monotonic() value,
    or None) bounds every wait for an answer."""

    deadline: float | None

    def restart(self) -> None: ...

    def connect(self) -> bool: ...
