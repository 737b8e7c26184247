"""Plumbing shared by the per-family worlds: code arithmetic, field checks, the World shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from conformance.provider import Outcome, Unsupported

S_OK = 0
_U32 = 0xFFFFFFFF
_FACILITY_WIN32 = 7


def u32(value: int) -> int:
    """The unsigned 32-bit view of a code; the contract never hands back negative ints."""
    return value & _U32


def hresult_from_win32(code: int) -> int:
    """HRESULT_FROM_WIN32 as winerror.h defines it, so pages' macro forms need no magic numbers."""
    if code <= 0:
        return u32(code)
    return u32((code & 0xFFFF) | (_FACILITY_WIN32 << 16) | 0x80000000)


def check_step(
    fields: Mapping[str, Any], what: str, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> None:
    """Reject missing or unknown step fields, so a misspelt field fails loudly, not silently."""
    _check(fields, what, tuple(required), tuple(optional), unknown=ValueError)


def check_args(
    args: Mapping[str, Any], method: str, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> None:
    """Missing arguments are a caller bug (ValueError); extra ones are calls we do not model."""
    _check(args, method, tuple(required), tuple(optional), unknown=Unsupported)


def _check(
    given: Mapping[str, Any],
    what: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    unknown: type[Exception],
) -> None:
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(given) - set(required) - set(optional))
    if extra:
        raise unknown(f"{what}: unexpected field(s) {', '.join(extra)}")


def direct(code: int, outputs: Mapping[str, Any] | None = None) -> Outcome:
    """A result returned by the call itself: no async object, so no completion."""
    return Outcome(hresult=u32(code), outputs=dict(outputs or {}), completion=None)


def started(handle_name: str, handle: str, completion: int) -> Outcome:
    """S_OK with an async object whose eventual result is `completion`."""
    return Outcome(hresult=S_OK, outputs={handle_name: handle}, completion=u32(completion))


class World:
    """One API family's in-memory state; the provider routes steps, faults, calls to it."""

    steps: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    def reset(self) -> None:
        """Forget everything, as a fresh machine would."""
        raise NotImplementedError

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        """Create one object of step `kind` and return its id."""
        raise NotImplementedError

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Arm one fault of `kind`."""
        raise NotImplementedError

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        """Run one method."""
        raise NotImplementedError

    def observe(self, collection: str) -> list[dict[str, Any]]:
        """Show one collection, ids as this world issued them."""
        raise NotImplementedError
