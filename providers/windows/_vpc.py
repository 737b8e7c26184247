"""Windows Virtual PC through COM: VirtualPC.Application -> virtual machine -> GuestOS.

Virtual PC is gone since Windows 8: where its COM class is not registered every step, call and
collection of the family is Unsupported with that reason. Win32metadata does not describe
VPCCOMInterfaces.h, so no vtable slot is known from Microsoft's metadata; the members are called
by their documented names through IDispatch, and a failing member's HRESULT is read from the
EXCEPINFO that IDispatch::Invoke reports it in (`_com.dispatch_hresult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts
from ._com import AsyncResult, ComError, Dispatch, Ole, async_outcome, failed, hex32, u32
from ._config import Config, Lazy

LOGOFF = "IVMGuestOS::Logoff"
PROGID = "VirtualPC.Application"
C = _layouts.CONSTANTS
NOT_REGISTERED = frozenset(u32(C[name]) for name in ("REGDB_E_CLASSNOTREG", "CO_E_CLASSSTRING"))
MISSING = (f"Windows Virtual PC is not installed here: the {PROGID} COM class is not "
           "registered (Virtual PC is gone since Windows 8)")
TASK_TIMEOUT_MS = 120_000  # a logoff that takes longer is reported by IVMTask as it stands

_REASONS = {
    "logon_session": "logging a user on in a guest needs that user's credentials at the guest's "
                     "console; Virtual PC's COM interfaces cannot do it",
    "configuration_unknown": "a VM's configuration cannot be made unreadable on demand",
    "guest_timeout": "a guest cannot be made to stop answering on demand",
    "unexpected_error": "the automation layer cannot be made to raise on demand",
}


class VpcApi(Protocol):
    """What the family asks of Virtual PC (a fake stands in for it in tests)."""

    def has_vm(self, name: str) -> bool: ...
    def logoff(self, name: str) -> AsyncResult: ...


class VirtualPc:
    """The Virtual PC automation server; constructing it needs Windows and Virtual PC."""

    def __init__(self, ole: Ole) -> None:
        hresult, clsid = ole.clsid_from_progid(PROGID)
        if hresult in NOT_REGISTERED:
            raise Unsupported(MISSING)
        if failed(hresult):
            raise ComError(f"CLSIDFromProgID({PROGID})", hresult)
        self.app = Dispatch(ole.create(clsid, "IDispatch", C["CLSCTX_LOCAL_SERVER"]), ole)

    def _vm(self, name: str) -> Dispatch | None:
        _, vm = self.app.get_object("FindVirtualMachine", C["DISPATCH_METHOD"], name)
        return vm

    def has_vm(self, name: str) -> bool:
        vm = self._vm(name)
        if vm is None:
            return False
        vm.release()
        return True

    def logoff(self, name: str) -> AsyncResult:
        vm = self._vm(name)
        if vm is None:
            raise Unsupported(f"Virtual PC has no machine named {name!r}")
        try:
            hresult, guest = vm.get_object("GuestOS", C["DISPATCH_PROPERTYGET"])
        finally:
            vm.release()
        if guest is None:
            raise Unsupported(f"IVMVirtualMachine.GuestOS failed ({hex32(hresult)}), so "
                              "Logoff could not be called")
        try:
            hresult, task = guest.get_object("Logoff", C["DISPATCH_METHOD"])
        finally:
            guest.release()
        if task is None:
            return AsyncResult(hresult)
        try:
            task.invoke("WaitForCompletion", C["DISPATCH_METHOD"], TASK_TIMEOUT_MS)
            error_hresult, error = task.get_int("Error")
            completion = error_hresult if failed(error_hresult) or error is None else error
            return AsyncResult(hresult, repr(task.obj).replace("IDispatch", "IVMTask"),
                               u32(completion))
        finally:
            task.release()


class VpcFamily:
    """The virtual-pc family on a real Virtual PC: machines are lent, never created."""

    steps = ("virtual_machine", "logon_session")
    faults = ("configuration_unknown", "guest_timeout", "unexpected_error")
    collections = ("virtual_machines", "logon_sessions")
    methods = (LOGOFF,)

    def __init__(self, config: Config, api: Lazy[VpcApi]) -> None:
        self.config = config
        self.api = api
        self._vms: dict[str, str] = {}  # scenario name -> machine name

    def reset(self) -> None:
        self._vms.clear()  # nothing is ever created: borrowed machines are only forgotten

    def create(self, kind: str, name: str, fields: Mapping[str, Any]) -> str:
        api = self.api.get()  # first: on Windows 8+ that is the reason for every step
        if kind == "virtual_machine":
            return self._borrow_vm(api, name, fields)
        if kind in _REASONS:
            raise Unsupported(f"step {kind!r}: {_REASONS[kind]}")
        raise Unsupported(f"virtual-pc step {kind!r}")

    def _borrow_vm(self, api: VpcApi, name: str, fields: Mapping[str, Any]) -> str:
        entry = self.config.require("virtual_machines", name,
                                    "a virtual machine with a given guest cannot be made here")
        extra = sorted(set(fields) - {"power", "additions", "execute_access"})
        if extra:
            raise Unsupported(f"virtual_machine: unexpected field(s) {', '.join(extra)}")
        differs = {k: (fields.get(k), entry[k]) for k in ("power", "additions", "execute_access")
                   if fields.get(k) != entry[k]}
        if differs:
            shown = ", ".join(f"{k}: step {want!r}, machine {have!r}"
                              for k, (want, have) in differs.items())
            raise Unsupported(f"virtual_machines.{name} ({entry['name']}) is not in the state "
                              f"the step needs ({shown}); the provider does not change it")
        if not api.has_vm(entry["name"]):
            raise Unsupported(f"virtual_machines.{name}: Virtual PC has no machine named "
                              f"{entry['name']!r}")
        if entry["name"] in self._vms.values():
            raise Unsupported(f"{entry['name']!r} already stands for another name in this case")
        self._vms[name] = entry["name"]
        return entry["name"]

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        self.api.get()
        raise Unsupported(f"fault {kind!r}: {_REASONS.get(kind, 'unknown to virtual-pc')}")

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id != LOGOFF:
            raise Unsupported(f"method {method_id!r}")
        api = self.api.get()
        if "outLogoffTask" in args and args["outLogoffTask"] is None:
            raise Unsupported("a NULL IVMTask** cannot be passed through IDispatch, which owns "
                              "the [out, retval] pointer")
        extra = sorted(set(args) - {"this", "outLogoffTask"})
        if "this" not in args or extra:
            raise ValueError(f"{LOGOFF}: expected this and outLogoffTask, got {sorted(args)}")
        machine = args["this"]
        if machine not in self._vms.values():
            raise Unsupported(f"no IVMGuestOS for {machine!r}: not a machine this case borrowed")
        return async_outcome("outLogoffTask", api.logoff(machine))

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection in self.collections:
            raise Unsupported(f"collection {collection!r}: Virtual PC's automation shows no "
                              "list of guest logons, and a VM's state is the operator's word")
        raise Unsupported(f"collection {collection!r}")
