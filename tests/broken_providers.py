"""Deliberately broken providers: each breaks one thing, and says which check kinds catch it.

Every class wraps the bundled reference through the public provider contract only (`call`,
`observe`, ...), so a broken provider stays broken in exactly one way however the reference
evolves. test_checks.py loads them through the CLI as `tests/broken_providers.py:Name`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from conformance_providers.reference import ReferenceProvider

from conformance.provider import Outcome, Unsupported

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
REMOVE_W = "RemoveIScsiPersistentTargetW"
REMOVE_A = "RemoveIScsiPersistentTargetA"
LOGOFF = "IVMGuestOS::Logoff"
SHUTDOWN = "IVMGuestOS::Shutdown"
ADD_STATIC_W = "AddIScsiStaticTargetW"

S_OK = 0x00000000
VDS_E_OBJECT_NOT_FOUND = 0x80042405
VDS_E_ISCSI_SESSION_NOT_FOUND = 0x8004270A
VM_E_VM_NOT_RUNNING = 0xA0040206
E_UNEXPECTED = 0x8000FFFF
E_INVALIDARG = 0x80070057
HRESULT_FROM_WIN32_FILE_NOT_FOUND = 0x80070002
HRESULT_FROM_WIN32_ACCESS_DENIED = 0x80070005
HRESULT_FROM_WIN32_NO_SUCH_LOGON_SESSION = 0x80070520
ERROR_ACCESS_DENIED = 5
ISDSC_INITIATOR_INSTANCE_NOT_FOUND = 0xEFFF0017
ISDSC_TARGET_NOT_FOUND = 0xEFFF0029
ISDSC_INVALID_PORT_NUMBER = 0xEFFF002D
ISDSC_INVALID_ISCSI_NAME = 0xEFFF0051
HRESULT_FROM_WIN32_MACHINE_LOCKED = 0x800704F7


def _failed(code: int) -> bool:
    return bool(code & 0x80000000)


def _signed(code: int | None) -> int | None:
    """The int32 reading of a code, as ctypes or a C# HRESULT would hand it over."""
    if code is None or not code & 0x80000000:
        return code
    return code - 0x1_0000_0000


class WrongCode(ReferenceProvider):
    """LogoutFromTarget says S_OK (through IVdsAsync) when there is no session to the target.

    Caught by: `scenario` (a target with no session, an unknown target id) and `oracle`.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOUT and outcome.hresult == VDS_E_ISCSI_SESSION_NOT_FOUND:
            return Outcome(S_OK, {"ppAsync": "IVdsAsync#wrong"}, S_OK)
        return outcome


class LeakedAsync(ReferenceProvider):
    """RemovePortal sets *ppAsync to a handle even when the call fails.

    Caught by: `out-params` only (codes and state are right).
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == REMOVE_PORTAL and _failed(outcome.hresult):
            return dataclasses.replace(outcome, outputs={"ppAsync": "IVdsAsync#leaked"})
        return outcome


class NoStateChange(ReferenceProvider):
    """LogoutFromTarget reports its result but the sessions it logged out of stay in place.

    Caught by: `scenario` (`then: {sessions: ...}`) and `oracle` (the predicted next state,
    read back through `observe`).
    """

    def reset(self) -> None:
        super().reset()
        self._kept: list[dict[str, Any]] | None = None

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id != LOGOUT:
            return super().call(method_id, args)
        before = super().observe("sessions")
        outcome = super().call(method_id, args)
        self._kept = before
        return outcome

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "sessions" and getattr(self, "_kept", None) is not None:
            return list(self._kept or [])
        return super().observe(collection)


class Win32AsHresult(ReferenceProvider):
    """RemoveIScsiPersistentTargetW wraps its failures in HRESULT_FROM_WIN32 shapes.

    It returns E_INVALIDARG (0x80070057) or 0x80070002 where an ISDSC status is documented.
    Caught by: `out-params` (an HRESULT from a Win32-status function) and `closed-world`
    (neither value is documented nor in WIN32_ERROR / ISDSC_STATUS).
    """

    REPLACE: ClassVar[dict[int, int]] = {
        ISDSC_INITIATOR_INSTANCE_NOT_FOUND: E_INVALIDARG,
        ISDSC_INVALID_PORT_NUMBER: E_INVALIDARG,
        ISDSC_TARGET_NOT_FOUND: HRESULT_FROM_WIN32_FILE_NOT_FOUND,
    }

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == REMOVE_W and outcome.hresult in self.REPLACE:
            return dataclasses.replace(outcome, hresult=self.REPLACE[outcome.hresult])
        return outcome


class HresultAsWin32(ReferenceProvider):
    """Logoff returns the bare Win32 code 5 where HRESULT_FROM_WIN32 (0x80070005) is due.

    Caught by: `out-params` (a bare Win32 code from an HRESULT method); `scenario`,
    `oracle` and `closed-world` see a wrong, undocumented code too.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOFF and outcome.hresult == HRESULT_FROM_WIN32_ACCESS_DENIED:
            return dataclasses.replace(outcome, hresult=ERROR_ACCESS_DENIED)
        return outcome


class Undocumented(ReferenceProvider):
    """Logoff returns E_UNEXPECTED (0x8000FFFF) for a VM that is not running.

    Caught by: `closed-world` (Logoff's `also` is empty); the scenarios for an off or saved
    VM catch it as a wrong code as well.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOFF and outcome.hresult == VM_E_VM_NOT_RUNNING:
            return dataclasses.replace(outcome, hresult=E_UNEXPECTED)
        return outcome


class Raises(ReferenceProvider):
    """RemovePortal raises RuntimeError("boom").

    Caught by: every check of RemovePortal, each failing with the exception's message; the
    run goes on and every other method still conforms.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == REMOVE_PORTAL:
            raise RuntimeError("boom")
        return super().call(method_id, args)


class NegativeHresult(ReferenceProvider):
    """LogoutFromTarget hands its failure codes over as signed int32 (-2147211510, ...).

    Caught by: the Outcome check under every kind that gets a failure code, with a message
    telling to return the unsigned value.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id != LOGOUT:
            return outcome
        return dataclasses.replace(
            outcome, hresult=_signed(outcome.hresult), completion=_signed(outcome.completion)
        )


class NotAnOutcome(ReferenceProvider):
    """Logoff returns a (hresult, outputs, completion) tuple instead of an Outcome.

    Caught by: every check of Logoff, with a message naming what came back.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Any:
        outcome = super().call(method_id, args)
        if method_id == LOGOFF:
            return (outcome.hresult, outcome.outputs, outcome.completion)
        return outcome


class BadObserve(ReferenceProvider):
    """observe("sessions") returns a dict keyed by id instead of a list of dicts.

    Caught by: the checks that read state back: `scenario` (with `then: {sessions: ...}`)
    and `oracle`; `closed-world` and `out-params` never observe, so they pass.
    """

    def observe(self, collection: str) -> Any:
        rows = super().observe(collection)
        if collection == "sessions":
            return {row["id"]: row for row in rows}
        return rows


class CompletionOnDirect(ReferenceProvider):
    """RemoveIScsiPersistentTargetW (delivery: direct) also reports a completion.

    Caught by: `out-params` only (the codes are right, but there is no async object to
    carry a completion).
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == REMOVE_W:
            return dataclasses.replace(outcome, completion=outcome.hresult)
        return outcome


class MissingCompletion(ReferenceProvider):
    """RemovePortal succeeds with an IVdsAsync whose Wait gives no result.

    Caught by: `out-params` only (the call's S_OK is what the spec expects).
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == REMOVE_PORTAL and not _failed(outcome.hresult):
            return dataclasses.replace(outcome, completion=None)
        return outcome


class MissingAsync(ReferenceProvider):
    """LogoutFromTarget succeeds but leaves *ppAsync NULL (the completion has no carrier).

    Caught by: `out-params` only.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOUT and not _failed(outcome.hresult):
            return dataclasses.replace(outcome, outputs={"ppAsync": None})
        return outcome


class WrongVia(ReferenceProvider):
    """Logoff fails the call with NO_SUCH_LOGON_SESSION, which is documented `via: completion`.

    Caught by: `scenario` (no one is logged on) and `oracle`: the code is right, the channel
    is not.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOFF and outcome.completion == HRESULT_FROM_WIN32_NO_SUCH_LOGON_SESSION:
            return Outcome(HRESULT_FROM_WIN32_NO_SUCH_LOGON_SESSION, {"outLogoffTask": None})
        return outcome


class WrongPrecedence(ReferenceProvider):
    """RemovePortal checks portal membership before the object_deleted fault (and the others).

    A deleted (or busy, or cache-corrupt) group asked for a portal it does not hold answers
    VDS_E_OBJECT_NOT_FOUND. No scenario combines the two conditions, so `oracle` must find it.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == REMOVE_PORTAL and self._not_member(args.get("this"), args.get("portalId")):
            return Outcome(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        return super().call(method_id, args)

    def _not_member(self, group: Any, portal: Any) -> bool:
        for row in super().observe("portal_groups"):
            if row["id"] == group:
                return portal not in row["portals"]
        return False


class NoAnsiConversion(ReferenceProvider):
    """RemoveIScsiPersistentTargetA skips the ANSI code page and behaves as the W form.

    A non-ASCII name the code page cannot hold ('диск') is then found as given. Caught by:
    the A `scenario` for a name the ANSI code page cannot represent, and in the `ci` profile
    by `oracle` and `variants`, whose plan has a case naming an existing object by a name
    outside the code page (an argument class of A functions).
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        return super().call(REMOVE_W if method_id == REMOVE_A else method_id, args)


class IgnoresForce(ReferenceProvider):
    """Shutdown of a VM whose screen is locked answers ERROR_MACHINE_LOCKED even when forced:
    it skips the `isForced` operand of the rule `screen locked && not forced`.

    Caught by: `oracle` in the `ci` profile, whose plan has a case for each operand of that
    rule deciding it alone (MC/DC): locked and forced must shut down.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if (
            method_id == SHUTDOWN
            and outcome.hresult == S_OK
            and outcome.completion == S_OK
            and self._locked(args.get("this"))
        ):
            return dataclasses.replace(outcome, completion=HRESULT_FROM_WIN32_MACHINE_LOCKED)
        return outcome

    def reset(self) -> None:
        super().reset()
        self._screens: dict[Any, bool] = {}

    def setup(self, step: dict[str, Any]) -> str:
        created = super().setup(step)
        if next(iter(step)) == "virtual_machine":
            self._screens[created] = bool(step.get("screen_locked"))
        return created

    def _locked(self, vm: Any) -> bool:
        return getattr(self, "_screens", {}).get(vm, False)


class LongNameRefused(ReferenceProvider):
    """AddIScsiStaticTargetW refuses a target name of exactly the longest length allowed
    (223 characters): an off-by-one in its length check.

    Caught by: `oracle` in the `ci` profile, whose plan has a case for every argument class of
    TargetName, the longest allowed among them.
    """

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        name = args.get("TargetName")
        if method_id == ADD_STATIC_W and isinstance(name, str) and len(name) == 223:
            return Outcome(ISDSC_INVALID_ISCSI_NAME, {})
        return super().call(method_id, args)


class FifthCallFails(ReferenceProvider):
    """The fifth call after a reset answers E_UNEXPECTED, whatever the method: a leak or a
    counter that overflows after a few operations on one world.

    No planned case or sequence makes five calls, so no planned check can reach it: only
    exploration (the family machine's longer sequences) finds it, and its saved regression
    then fails every later run.
    """

    def reset(self) -> None:
        super().reset()
        self._calls = 0

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls == 5:
            return Outcome(E_UNEXPECTED, {})
        return super().call(method_id, args)


class UnsupportedEverything(ReferenceProvider):
    """Claims every method but supports no step, call or collection.

    Every check must be not applicable, never passed: the run exits 1 ("no check ran").
    """

    def setup(self, step: dict[str, Any]) -> str:
        raise Unsupported(f"step {next(iter(step))!r}")

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        raise Unsupported(f"method {method_id!r}")

    def observe(self, collection: str) -> list[dict[str, Any]]:
        raise Unsupported(f"collection {collection!r}")


class ClaimsNothing(ReferenceProvider):
    """Its capabilities list no method: every check is not applicable without a call."""

    def capabilities(self) -> dict[str, list[str]]:
        return {"methods": [], "steps": [], "faults": [], "observe": []}


class BadSetupId(ReferenceProvider):
    """setup() returns None instead of the new object's id.

    Caught by: every check that builds a state, with a message saying setup must return an id.
    """

    def setup(self, step: dict[str, Any]) -> Any:
        created = super().setup(step)
        return None if next(iter(step)) == "virtual_machine" else created


class FlakyWrongCode(ReferenceProvider):
    """Logoff gives an undocumented code once, on its third call, then behaves.

    A flaky provider: the check that meets the bad answer must fail and be recorded, and
    every other check still recorded (DESIGN: every finished result is on disk).
    """

    TRIP = 3

    def __init__(self) -> None:
        super().__init__()
        self._calls = 0

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if method_id == LOGOFF:
            self._calls += 1
            if self._calls == self.TRIP:
                return Outcome(E_UNEXPECTED, {"outLogoffTask": None})
        return outcome


class CapabilitiesRaise(ReferenceProvider):
    """capabilities() raises: the provider cannot start (exit 3)."""

    def capabilities(self) -> dict[str, list[str]]:
        raise OSError("service not running")


class StartFails(ReferenceProvider):
    """The constructor raises: the provider cannot start (exit 3)."""

    def __init__(self) -> None:
        raise ConnectionRefusedError("agent at 127.0.0.1:7700 refused the connection")
