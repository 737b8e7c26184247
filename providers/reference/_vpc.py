"""Windows Virtual PC family: virtual machines, their guest OS, and users logged on in it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._world import S_OK, World, check_args, check_step, direct, hresult_from_win32, started

LOGOFF = "IVMGuestOS::Logoff"

E_POINTER = 0x80004003
DISP_E_EXCEPTION = 0x80020009
ERROR_ACCESS_DENIED = 5
ERROR_NO_SUCH_LOGON_SESSION = 1312
# VPCCOMInterfaces.h, as listed on the IVMGuestOS::Logoff page.
VM_E_TIMED_OUT = 0xA0040202
VM_E_VM_NOT_RUNNING = 0xA0040206
VM_E_VM_UNKNOWN = 0xA0040207
VM_E_ADDITIONS_FEATURE_NOT_AVAIL = 0xA0040505

POWER_STATES = ("running", "off", "saved")


@dataclass
class _VirtualMachine:
    power: str
    additions: bool
    execute_access: bool


class VpcWorld(World):
    """Virtual PC's view: machines with power state, additions, access; guest logons."""

    steps = ("virtual_machine", "logon_session")
    faults = ("configuration_unknown", "guest_timeout", "unexpected_error")
    collections = ("virtual_machines", "logon_sessions")
    methods = (LOGOFF,)

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._vms: dict[str, _VirtualMachine] = {}
        self._logons: dict[str, str] = {}  # logon session -> vm
        self._faults: dict[str, set[str]] = {kind: set() for kind in self.faults}
        self._vm_serial = itertools.count(1)
        self._logon_serial = itertools.count(1)
        self._task_serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind == "virtual_machine":
            check_step(fields, kind, required=("power", "additions", "execute_access"))
            power = fields["power"]
            if power not in POWER_STATES:
                raise ValueError(
                    f"virtual_machine: power must be one of {POWER_STATES}, got {power!r}"
                )
            for flag in ("additions", "execute_access"):
                if not isinstance(fields[flag], bool):
                    raise ValueError(
                        f"virtual_machine: {flag} must be a bool, got {fields[flag]!r}"
                    )
            vm_id = f"vm-{next(self._vm_serial)}"
            self._vms[vm_id] = _VirtualMachine(power, fields["additions"], fields["execute_access"])
            return vm_id
        if kind == "logon_session":
            check_step(fields, kind, required=("vm",))
            vm_id = self._vm_ref(fields["vm"])
            logon_id = f"logon-{next(self._logon_serial)}"
            self._logons[logon_id] = vm_id
            return logon_id
        raise Unsupported(f"virtual-pc step {kind!r}")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        if kind not in self._faults:
            raise Unsupported(f"virtual-pc fault {kind!r}")
        check_step(fields, kind, required=("vm",))
        self._faults[kind].add(self._vm_ref(fields["vm"]))

    def _vm_ref(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self._vms:
            raise ValueError(f"vm ref {value!r} is not an id this provider returned")
        return value

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id != LOGOFF:
            raise Unsupported(f"method {method_id!r}")
        check_args(args, method_id, required=("this",), optional=("outLogoffTask",))
        # The key is present (as None) only when the caller passes a NULL IVMTask**.
        null_out = "outLogoffTask" in args and args["outLogoffTask"] is None
        return self._logoff(args["this"], null_out)

    def _logoff(self, this: Any, null_out: bool) -> Outcome:
        """Refuse early for the pointer, the caller, the VM; else start the logoff task."""
        failed = {"outLogoffTask": None}
        if null_out:
            return direct(E_POINTER, failed)
        vm = self._vms.get(this) if isinstance(this, str) else None
        if vm is None:
            return direct(VM_E_VM_UNKNOWN, failed)
        if not vm.execute_access:
            return direct(hresult_from_win32(ERROR_ACCESS_DENIED), failed)
        if this in self._faults["configuration_unknown"]:
            return direct(VM_E_VM_UNKNOWN, failed)
        if vm.power != "running":
            return direct(VM_E_VM_NOT_RUNNING, failed)
        if not vm.additions:
            return direct(VM_E_ADDITIONS_FEATURE_NOT_AVAIL, failed)
        if this in self._faults["unexpected_error"]:
            return direct(DISP_E_EXCEPTION, failed)
        task = f"IVMTask#{next(self._task_serial)}"
        if this in self._faults["guest_timeout"]:
            return started("outLogoffTask", task, VM_E_TIMED_OUT)
        logons = [logon for logon, vm_id in self._logons.items() if vm_id == this]
        if not logons:
            return started("outLogoffTask", task, hresult_from_win32(ERROR_NO_SUCH_LOGON_SESSION))
        for logon in logons:
            del self._logons[logon]
        return started("outLogoffTask", task, S_OK)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "virtual_machines":
            return [
                {
                    "id": vm_id,
                    "power": vm.power,
                    "additions": vm.additions,
                    "execute_access": vm.execute_access,
                }
                for vm_id, vm in self._vms.items()
            ]
        if collection == "logon_sessions":
            return [{"id": logon, "vm": vm_id} for logon, vm_id in self._logons.items()]
        raise Unsupported(f"collection {collection!r}")
