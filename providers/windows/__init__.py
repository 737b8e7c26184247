"""The real Windows backend: the specs' methods called on this machine's own APIs, no simulation.

- iSCSI discovery: iscsidsc.dll through ctypes, every spec'd function in its A and W forms
  (static targets, logins, logouts, persistent logins and their report).
- VDS iSCSI: the VDS service through COM vtable calls, every IVdsIscsiInitiatorAdapter and
  IVdsIscsiPortalGroup method (sessions by LoginToTarget, portal groups by CreatePortalGroup
  and AddPortal).
- Virtual PC: VirtualPC.Application through IDispatch, every IVMGuestOS member IDispatch can
  carry, Unsupported where Virtual PC is not installed.

Objects a machine cannot make on demand (an HBA, a storage array's target) are lent by the
operator in a config file (`_config.py`); what the backend makes it records in a ledger and
removes at `reset`, and a call that could reach anything else on the host is refused as
Unsupported. Importing this package works anywhere; constructing the provider needs Windows.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

from conformance.provider import Outcome, Provider, ProviderUnavailable, Unsupported

from ._config import CleanupError, ConfigError, Lazy, load_config
from ._iscsi import IscsiApi, IscsiDsc, IscsiFamily
from ._vds import VdsApi, VdsFamily, VdsService
from ._vpc import MISSING, VirtualPc, VpcApi, VpcFamily

__all__ = ["WindowsProvider"]

FAULT_STEP = "fault"


def require_windows() -> None:
    if sys.platform != "win32":
        raise ProviderUnavailable(
            "needs Windows: the windows provider calls iscsidsc.dll and COM (VDS, Virtual PC) "
            f"on the machine under test, and this machine runs {platform.system() or sys.platform}"
            "; run it there (pip install conformance[windows])"
        )


class WindowsProvider(Provider):
    """Routes each step, fault, call and collection to the family that owns it."""

    name = "windows"

    def __init__(self, *, config: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> None:
        """`config`: the config file (default: $CONFORMANCE_WINDOWS_CONFIG, else none)."""
        require_windows()
        from ._com import Ole

        ole: Lazy[Ole] = Lazy("COM", Ole)
        self._ole = ole
        self._start(
            config,
            Lazy("iscsidsc.dll", IscsiDsc),
            Lazy("the VDS service", lambda: VdsService(ole.get())),
            Lazy("Virtual PC", lambda: VirtualPc(ole.get())),
        )

    @classmethod
    def with_apis(
        cls,
        *,
        config: Any = None,
        iscsi: IscsiApi | None = None,
        vds: VdsApi | None = None,
        vpc: VpcApi | None = None,
    ) -> WindowsProvider:
        """The provider over given API objects (fakes in tests); skips the platform check."""

        def lent(what: str, api: Any, missing: str) -> Lazy[Any]:
            return Lazy(what, (lambda: api) if api is not None else _raiser(missing))

        provider = cls.__new__(cls)
        provider._ole = None
        provider._start(
            config,
            lent("iscsidsc.dll", iscsi, "iscsidsc.dll: not given"),
            lent("the VDS service", vds, "the VDS service: not given"),
            lent("Virtual PC", vpc, MISSING),
        )
        return provider

    def _start(
        self, config: Any, iscsi: Lazy[IscsiApi], vds: Lazy[VdsApi], vpc: Lazy[VpcApi]
    ) -> None:
        try:
            self.config = load_config(config)
        except ConfigError as exc:
            raise ProviderUnavailable(f"windows provider config: {exc}") from exc
        self._apis = (iscsi, vds, vpc)
        self._families = (
            IscsiFamily(self.config, iscsi),
            VdsFamily(self.config, vds, iscsi),
            VpcFamily(self.config, vpc),
        )
        self._by_step = _index(self._families, "steps")
        self._by_fault = _index(self._families, "faults")
        self._by_method = _index(self._families, "methods")
        self._by_collection = _index(self._families, "collections")

    def capabilities(self) -> dict[str, list[str]]:
        caps: dict[str, Any] = {
            "methods": list(self._by_method),
            "steps": [*self._by_step, FAULT_STEP],
            "faults": list(self._by_fault),
            "observe": list(self._by_collection),
        }
        if sys.platform == "win32" and self._ole is not None:  # this machine's APIs, not fakes
            version = sys.getwindowsversion()  # type: ignore[attr-defined]
            caps["windows_version"] = f"{version.major}.{version.minor}.{version.build}"
        return caps

    def reset(self) -> None:
        """Remove what the last case created (ledger only), then forget every name."""
        problems = []
        for family in self._families:
            try:
                family.reset()
            except CleanupError as exc:
                problems.append(str(exc))
        if problems:
            raise CleanupError("; ".join(problems))

    def setup(self, step: dict[str, Any]) -> str:
        if not isinstance(step, Mapping) or not step:
            raise ValueError(f"a step is a non-empty mapping, got {step!r}")
        kind, value = next(iter(step.items()))
        fields = {key: field for key, field in step.items() if key != kind}
        if kind == FAULT_STEP:
            family = self._by_fault.get(value)
            if family is None:
                raise Unsupported(f"fault kind {value!r}")
            return family.inject(value, fields)
        family = self._by_step.get(kind)
        if family is None:
            raise Unsupported(f"step kind {kind!r}")
        return family.create(kind, str(value), fields)

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        family = self._by_method.get(method_id)
        if family is None:
            raise Unsupported(f"method {method_id!r}")
        return family.call(method_id, args)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        family = self._by_collection.get(collection)
        if family is None:
            raise Unsupported(f"collection {collection!r}")
        return family.observe(collection)

    def close(self) -> None:
        """Clean up, then let go of COM; safe to call twice."""
        try:
            self.reset()
        finally:
            vds = self._apis[1].opened
            if vds is not None and hasattr(vds, "close"):
                vds.close()
            if self._ole is not None and self._ole.opened is not None:
                self._ole.opened.close()


def _index(families: tuple[Any, ...], attribute: str) -> dict[str, Any]:
    index: dict[str, Any] = {}
    for family in families:
        for name in getattr(family, attribute):
            if name in index:
                raise RuntimeError(f"{attribute[:-1]} {name!r} claimed by two families")
            index[name] = family
    return index


def _raiser(reason: str) -> Any:
    def factory() -> Any:
        raise Unsupported(reason)

    return factory
