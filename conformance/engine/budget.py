"""The per-check budget: every provider request of a check runs against the check's deadline.

`Budgeted` wraps the provider under test for the whole run. The session starts it at the
beginning of each check (`start(seconds)`) and stops it at the end; in between it knows the
request in flight, or the last one made, and:

- refuses a request once the check is past its deadline, and fails a request that returned
  past it (what an in-process provider can be held to: a call in this process cannot be
  interrupted);
- for a provider in another process (the stdio worker of an isolated run, an agent over TCP),
  bounds the wait for each answer by the deadline as well, so a hung worker is killed when
  the budget runs out;
- turns a per-call timeout of a remote provider (`--call-timeout`) into the same ending.

Either way the check ends at once with `CheckTimedOut` ("timed out after N s in METHOD"), a
BaseException so that neither the checks (which turn provider exceptions into failures) nor
hypothesis (which would shrink them, paying the timeout again for every shrink step) catch it.
The session then replaces the worker (`replace_worker`), so the next check starts clean.
"""

from __future__ import annotations

import time
from typing import Any, cast

from conformance.engine.batch import BatchingProvider, SubmittingProvider
from conformance.engine.operations import Tally, request_kind
from conformance.engine.worker import CallTimedOut, WorkerProvider
from conformance.provider import Outcome, Provider

DEFAULT_CHECK_TIMEOUT = 300.0  # seconds per check (`--check-timeout`; 0: none)


class CheckTimedOut(BaseException):
    """A check ran out of time (its budget, or a per-call timeout); ends the check at once."""

    def __init__(self, seconds: float | None, where: str, why: str = ""):
        self.seconds = seconds
        self.where = where
        after = f"after {seconds:g} s " if seconds else ""
        self.message = f"timed out {after}in {where}" + (f"; {why}" if why else "")
        super().__init__(self.message)


def worker_of(provider: Any) -> Any:
    """The provider in another process behind `provider` (through wrappers such as the
    recording one), or None when it runs in this process."""
    seen = 0
    while provider is not None and seen < 10:
        if isinstance(provider, WorkerProvider):
            return provider
        provider, seen = getattr(provider, "inner", None), seen + 1
    return None


class Budgeted(Provider):
    """The provider under test, held to each check's deadline (see the module docstring)."""

    def __init__(self, inner: Provider):
        self.inner = inner
        self.name = getattr(inner, "name", "provider")
        self.worker = worker_of(inner)
        self.seconds: float | None = None
        self.deadline: float | None = None
        self.last = "no provider request yet"
        self.operations = Tally()  # every operation of the run
        self.check_operations = Tally()  # those of the check in progress
        if isinstance(inner, BatchingProvider):  # offered only when inner has it
            self.batch = self._batch
        if isinstance(inner, SubmittingProvider):
            self.submit = self._submit

    # -- the session's side --
    def start(self, seconds: float | None) -> None:
        """A check begins: it may take `seconds` from now (None or 0: no limit). A worker that
        was lost (crash, timeout) is replaced first, outside the check's budget."""
        if self.worker is not None:
            self.worker.deadline = None
            self.worker.connect()
        self.seconds = seconds or None
        self.deadline = time.monotonic() + seconds if seconds else None
        self.last = "no provider request yet"
        self.check_operations = Tally()
        if self.worker is not None:
            self.worker.deadline = self.deadline

    def stop(self) -> None:
        """The check ended: no deadline until the next one starts."""
        self.deadline = None
        if self.worker is not None:
            self.worker.deadline = None

    def replace_worker(self) -> None:
        """End the worker process (or connection) so that the next check starts on a fresh one
        (the next reset reconnects); nothing to do for a provider in this process."""
        if self.worker is not None:
            self.worker.restart()

    # -- the contract --
    def capabilities(self) -> dict[str, list[str]]:
        return self._request("capabilities()", self.inner.capabilities)

    def reset(self) -> None:
        self._count("reset")
        self._request("reset()", self.inner.reset)

    def setup(self, step: dict[str, Any]) -> str:
        self._count("setup")
        return self._request(f"setup({next(iter(step), '?')})", lambda: self.inner.setup(step))

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        self._count("call")
        return self._request(method_id, lambda: self.inner.call(method_id, args))

    def observe(self, collection: str) -> list[dict[str, Any]]:
        self._count("observe")
        return self._request(f"observe({collection!r})", lambda: self.inner.observe(collection))

    def _count(self, kind: str, n: int = 1) -> None:
        """One more operation asked of the provider (counted whether or not it succeeds)."""
        self.operations.add(kind, n)
        self.check_operations.add(kind, n)

    def _batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        """Several requests in one (see World.reset_and_setup); a timeout names the call of
        the batch if it has one (what hangs is the method under test), else its last setup."""
        results = self._request(
            _main(requests), lambda: cast(BatchingProvider, self.inner).batch(requests)
        )
        self.operations.batches += 1
        self.check_operations.batches += 1
        if isinstance(results, list) and results:
            for request in requests[: len(results)]:  # the requests the provider performed
                self._count(request_kind(request))
            self.last = _where(requests[min(len(results), len(requests)) - 1])
        return results

    def _submit(self, batches: list[list[dict[str, Any]]]) -> bool:
        """Test cases sent ahead (see RemoteProvider.submit); none once the check is late."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return False
        return cast(SubmittingProvider, self.inner).submit(batches)

    def close(self) -> None:
        self.stop()
        self.inner.close()

    def _request(self, where: str, run: Any) -> Any:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise CheckTimedOut(self.seconds, self.last, self._budget_spent())
        self.last = where
        try:
            result = run()
        except CallTimedOut as exc:
            if exc.budget:
                raise CheckTimedOut(self.seconds, where, self._budget_spent()) from None
            raise CheckTimedOut(
                exc.seconds,
                where,
                "the call outlived the per-call timeout (--call-timeout); " + self._replaced(),
            ) from None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise CheckTimedOut(self.seconds, where, self._budget_spent())
        return result

    def _budget_spent(self) -> str:
        return "the check ran out of its time budget (--check-timeout); " + self._replaced()

    def _replaced(self) -> str:
        if self.worker is None:
            return (
                "the provider runs in-process (--in-process), where a call cannot be "
                "interrupted: the budget is checked between calls"
            )
        return "the provider's worker was replaced"


def _where(request: dict[str, Any]) -> str:
    """A batch request named as `Budgeted` names the single one."""
    op = request.get("op")
    if op == "call":
        return str(request.get("method"))
    if op == "setup":
        return f"setup({next(iter(request.get('step') or {}), '?')})"
    if op == "observe":
        return f"observe({request.get('collection')!r})"
    return f"{op}()"


def _main(requests: list[dict[str, Any]]) -> str:
    calls = [r for r in requests if r.get("op") == "call"]
    return _where(calls[0] if calls else requests[-1])
