"""Providers that break the contract the way real ones do: they crash, hang, fork, flood their
log, eat memory, or answer with what cannot be sent. The reliability corpus
(`tests/reliability.py`) and the isolation tests load them as `tests/hostile_providers.py:Name`,
in a worker process, the way a vendor's provider file is loaded.

Each misbehaves only in `IVMGuestOS::Logoff` (or where its docstring says), so a run shows both
the failing check and that the others still pass.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

from conformance_providers.reference import ReferenceProvider

from conformance.provider import Outcome

LOGOFF = "IVMGuestOS::Logoff"
LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"


class Exits(ReferenceProvider):
    """Logoff kills its process, as a crash inside a DLL would."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOFF:
            os._exit(7)
        return super().call(method_id, args)


class Segfaults(ReferenceProvider):
    """Logoff dereferences NULL through ctypes: SIGSEGV, as a bug inside a DLL would."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOFF:
            ctypes.string_at(0)
        return super().call(method_id, args)


class Hangs(ReferenceProvider):
    """LogoutFromTarget never returns."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOUT:
            time.sleep(3600)
        return super().call(method_id, args)


class EatsMemory(ReferenceProvider):
    """Logoff keeps allocating, 16 MiB at a time, as a leak in a loop would."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOFF:
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        return super().call(method_id, args)


class ForkHangs(ReferenceProvider):
    """Logoff forks a child that keeps the worker's pipes open (its pid written to the file
    FORKED_PID_FILE names), then hangs."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOFF:
            child = os.fork()
            if child == 0:
                time.sleep(3600)
                os._exit(0)
            with open(os.environ["FORKED_PID_FILE"], "w", encoding="utf-8") as out:
                out.write(str(child))
            time.sleep(3600)
        return super().call(method_id, args)


class Noisy(ReferenceProvider):
    """Conforming, but logs NOISY_KB kilobytes (default 512) to stderr on every call."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        kilobytes = int(os.environ.get("NOISY_KB", "512"))
        sys.stderr.write(("x" * 1023 + "\n") * kilobytes)
        sys.stderr.flush()
        return super().call(method_id, args)


class Weird:
    def __repr__(self) -> str:
        raise RuntimeError("repr refuses")


class Deep(ReferenceProvider):
    """Logoff's out-parameter nests 100,000 lists deep."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        out = super().call(method_id, args)
        if method_id == LOGOFF:
            nested: list[Any] = []
            for _ in range(100_000):
                nested = [nested]
            return Outcome(out.hresult, {"outLogoffTask": nested}, out.completion)
        return out


class BadRepr(ReferenceProvider):
    """Logoff's out-parameter is an object whose repr raises."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        out = super().call(method_id, args)
        if method_id == LOGOFF:
            return Outcome(out.hresult, {"outLogoffTask": Weird()}, out.completion)
        return out


class ControlBytes(ReferenceProvider):
    """Logoff raises with NUL, ESC and markup in its message, as a garbled log line would."""

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        if method_id == LOGOFF:
            raise ValueError("bad\x00state \x1b[31mred\x1b[0m <script>alert(1)</script>")
        return super().call(method_id, args)
