"""Windows Virtual PC through COM: VirtualPC.Application -> virtual machine -> GuestOS.

Virtual PC is gone since Windows 8: where its COM class is not registered every step, call and
collection of the family is Unsupported with that reason. Win32metadata does not describe
VPCCOMInterfaces.h, so no vtable slot is known from Microsoft's metadata; the members are called
by their documented names through IDispatch, and a failing member's HRESULT is read from the
EXCEPINFO that IDispatch::Invoke reports it in (`_com.dispatch_hresult`). Every IVMGuestOS member
is in `MEMBERS`, one row each: how it is invoked, its in-parameters in order, its out-parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts
from ._com import AsyncResult, ComError, Dispatch, Ole, async_outcome, failed, hex32, u32
from ._config import Config, Lazy, Ledger

LOGOFF = "IVMGuestOS::Logoff"
PROGID = "VirtualPC.Application"
C = _layouts.CONSTANTS
NOT_REGISTERED = frozenset(u32(C[name]) for name in ("REGDB_E_CLASSNOTREG", "CO_E_CLASSSTRING"))
MISSING = (
    f"Windows Virtual PC is not installed here: the {PROGID} COM class is not "
    "registered (Virtual PC is gone since Windows 8)"
)
TASK_TIMEOUT_MS = 120_000  # a task that takes longer is reported by IVMTask as it stands
GET, PUT, CALL = C["DISPATCH_PROPERTYGET"], C["DISPATCH_PROPERTYPUT"], C["DISPATCH_METHOD"]

_REASONS = {
    "logon_session": "logging a user on in a guest needs that user's credentials at the guest's "
    "console; Virtual PC's COM interfaces cannot do it",
    "configuration_unknown": "a VM's configuration cannot be made unreadable on demand",
    "guest_timeout": "a guest cannot be made to stop answering on demand",
    "unexpected_error": "the automation layer cannot be made to raise on demand",
    "out_of_memory": "a host cannot be made to run out of memory for one VM on demand",
    "shutdown_in_progress": "a guest cannot be held shutting down on demand",
    "guest_not_ready": "a guest's shutdown service cannot be made unready on demand",
    "media_unmount_fails": "a DVD drive's media cannot be made to refuse unmounting on demand",
    "integration_components_iso_missing": "removing the host's integration components ISO "
    "would change the host",
}


@dataclass(frozen=True)
class Member:
    """One IVMGuestOS member as IDispatch reaches it.

    flags: DISPATCH_PROPERTYGET/PUT or DISPATCH_METHOD; task: it returns an IVMTask that is
    waited on; ins: the spec's in-parameters in call order; out: the out-parameter, if any;
    acts: it acts on the guest (needs the VM lent with `guest_actions: true`).
    """

    name: str
    flags: int
    ins: tuple[str, ...] = ()
    out: str | None = None
    task: bool = False
    acts: bool = False


def _getter(name: str, out: str) -> tuple[str, Member]:
    return f"IVMGuestOS::get_{name}", Member(name, GET, out=out)


MEMBERS: dict[str, Member] = dict(
    [
        _getter("CSDVersion", "csdVersion"),
        _getter("CanShutdown", "canShutdown"),
        _getter("ComputerName", "guestComputerName"),
        _getter("HeartbeatPercentage", "heartbeatPercentage"),
        _getter("IntegrationComponentsVersion", "ICVersion"),
        _getter("IsHeartbeating", "heartBeating"),
        _getter("IsHostTimeSyncEnabled", "isEnabled"),
        _getter("MultipleUserSessionsAllowed", "sessionStatus"),
        _getter("OSBuildNumber", "buildNumber"),
        _getter("OSMajorVersion", "majorVersion"),
        _getter("OSMinorVersion", "minorVersion"),
        _getter("OSName", "guestOSName"),
        _getter("OSPlatformId", "platformId"),
        _getter("OSVersion", "OSVersion"),
        _getter("ProductType", "productType"),
        _getter("ScreenLocked", "guestScreenLocked"),
        _getter("ServicePackMajor", "servicePackMajor"),
        _getter("ServicePackMinor", "servicePackMinor"),
        _getter("SuiteMask", "suiteMask"),
        _getter("TerminalServerPort", "tsPort"),
        _getter("TerminalServicesInitialized", "termServStatus"),
        (
            "IVMGuestOS::put_IsHostTimeSyncEnabled",
            Member("IsHostTimeSyncEnabled", PUT, ins=("shouldEnable",)),
        ),
        (
            "IVMGuestOS::GetParameter",
            Member("GetParameter", CALL, ins=("inParameterName",), out="outParameterValue"),
        ),
        (
            "IVMGuestOS::SetParameter",
            Member("SetParameter", CALL, ins=("inParameterName", "inParameterValue")),
        ),
        (
            "IVMGuestOS::IsUserLoggedOn",
            Member("IsUserLoggedOn", CALL, ins=("inRailSession",), out="outSessionPresent"),
        ),
        (
            "IVMGuestOS::InstallIntegrationComponents",
            Member("InstallIntegrationComponents", CALL, acts=True),
        ),
        (LOGOFF, Member("Logoff", CALL, out="outLogoffTask", task=True)),
        (
            "IVMGuestOS::Restart",
            Member("Restart", CALL, ins=("inForced",), out="outRestartTask", task=True, acts=True),
        ),
        (
            "IVMGuestOS::Shutdown",
            Member(
                "Shutdown", CALL, ins=("isForced",), out="outShutdownTask", task=True, acts=True
            ),
        ),
    ]
)
# Members IDispatch cannot reach, with the reason.
UNREACHABLE = {
    "IVMGuestOS::GetOsVersionInfo": "its GUESTOSVERSIONINFOEX** is not an automation type, so "
    "IDispatch cannot carry it, and the metadata gives no "
    "vtable slot for Virtual PC to call it directly",
}
# The setting a member changes and the member that reads it back, so the ledger restores it.
_RESTORES = {"IsHostTimeSyncEnabled": "IsHostTimeSyncEnabled", "SetParameter": "GetParameter"}


class VpcApi(Protocol):
    """What the family asks of Virtual PC (a fake stands in for it in tests)."""

    def has_vm(self, name: str) -> bool: ...
    def guest(self, vm: str, member: str, flags: int, args: tuple[Any, ...]) -> tuple[int, Any]: ...
    def guest_task(self, vm: str, member: str, args: tuple[Any, ...]) -> AsyncResult: ...


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
        _, vm = self.app.get_object("FindVirtualMachine", CALL, name)
        return vm

    def has_vm(self, name: str) -> bool:
        vm = self._vm(name)
        if vm is None:
            return False
        vm.release()
        return True

    def _guest_os(self, name: str) -> Dispatch:
        vm = self._vm(name)
        if vm is None:
            raise Unsupported(f"Virtual PC has no machine named {name!r}")
        try:
            hresult, guest = vm.get_object("GuestOS", GET)
        finally:
            vm.release()
        if guest is None:
            raise Unsupported(
                f"IVMVirtualMachine.GuestOS failed ({hex32(hresult)}), so the "
                "guest's members could not be called"
            )
        return guest

    def guest(self, vm: str, member: str, flags: int, args: tuple[Any, ...]) -> tuple[int, Any]:
        guest = self._guest_os(vm)
        try:
            if flags == PUT:
                return self._put(guest, member, args)
            return guest.get_value(member, flags, *args)
        finally:
            guest.release()

    @staticmethod
    def _put(guest: Dispatch, member: str, args: tuple[Any, ...]) -> tuple[int, Any]:
        hresult, _ = guest.invoke(member, PUT, *args)
        return hresult, None

    def guest_task(self, vm: str, member: str, args: tuple[Any, ...]) -> AsyncResult:
        guest = self._guest_os(vm)
        try:
            hresult, task = guest.get_object(member, CALL, *args)
        finally:
            guest.release()
        if task is None:
            return AsyncResult(hresult)
        try:
            task.invoke("WaitForCompletion", CALL, TASK_TIMEOUT_MS)
            error_hresult, error = task.get_int("Error")
            completion = error_hresult if failed(error_hresult) or error is None else error
            return AsyncResult(
                hresult, repr(task.obj).replace("IDispatch", "IVMTask"), u32(completion)
            )
        finally:
            task.release()


# The virtual-pc step fields a lent machine's config entry may state (and must, for a step that
# sets them); `name` and `guest_actions` are the backend's own.
_VM_FIELDS = (
    "guest",
    "heartbeat",
    "remote_desktop",
    "dvd_drive",
    "time_sync",
    "screen_locked",
    "never_started",
    "power",
    "additions",
    "execute_access",
)


class VpcFamily:
    """The virtual-pc family on a real Virtual PC: machines are lent, never created; settings a
    call changes are put back by the ledger."""

    steps = ("virtual_machine", "logon_session", "guest_parameter")
    faults = tuple(k for k in _REASONS if k != "logon_session")
    collections = ("virtual_machines", "logon_sessions", "guest_parameters")
    methods = (*MEMBERS, *UNREACHABLE)

    def __init__(self, config: Config, api: Lazy[VpcApi]) -> None:
        self.config = config
        self.api = api
        self.ledger = Ledger()
        self._vms: dict[str, str] = {}  # scenario name -> machine name
        self._changed: set[tuple[str, str, str]] = set()  # (vm, setting, key) restored at reset

    def reset(self) -> None:
        """Put back what calls changed; borrowed machines are only forgotten."""
        try:
            self.ledger.undo_all()
        finally:
            self._vms.clear()
            self._changed.clear()

    def create(self, kind: str, name: str, fields: Mapping[str, Any]) -> str:
        api = self.api.get()  # first: on Windows 8+ that is the reason for every step
        if kind == "virtual_machine":
            return self._borrow_vm(api, name, fields)
        if kind == "guest_parameter":
            return self._set_parameter(api, name, fields)
        if kind in _REASONS:
            raise Unsupported(f"step {kind!r}: {_REASONS[kind]}")
        raise Unsupported(f"virtual-pc step {kind!r}")

    def _borrow_vm(self, api: VpcApi, name: str, fields: Mapping[str, Any]) -> str:
        entry = self.config.require(
            "virtual_machines", name, "a virtual machine with a given guest cannot be made here"
        )
        extra = sorted(set(fields) - set(_VM_FIELDS))
        if extra:
            raise Unsupported(f"virtual_machine: unexpected field(s) {', '.join(extra)}")
        unstated = [k for k in fields if k not in entry]
        if unstated:
            raise Unsupported(
                f"virtual_machines.{name} ({entry['name']}) does not state "
                f"{', '.join(unstated)}; the step needs them, and the provider "
                "cannot check what the operator does not state"
            )
        differs = {k: (fields[k], entry[k]) for k in fields if fields[k] != entry[k]}
        if differs:
            shown = ", ".join(
                f"{k}: step {want!r}, machine {have!r}" for k, (want, have) in differs.items()
            )
            raise Unsupported(
                f"virtual_machines.{name} ({entry['name']}) is not in the state "
                f"the step needs ({shown}); the provider does not change it"
            )
        if not api.has_vm(entry["name"]):
            raise Unsupported(
                f"virtual_machines.{name}: Virtual PC has no machine named {entry['name']!r}"
            )
        if entry["name"] in self._vms.values():
            raise Unsupported(f"{entry['name']!r} already stands for another name in this case")
        self._vms[name] = entry["name"]
        return entry["name"]

    def _set_parameter(self, api: VpcApi, name: str, fields: Mapping[str, Any]) -> str:
        """A guest parameter: SetParameter on a lent machine, its old value put back later."""
        extra = sorted(set(fields) - {"vm", "name", "value"})
        if extra or not {"vm", "name", "value"} <= set(fields):
            raise Unsupported(f"guest_parameter: expected vm, name and value, got {sorted(fields)}")
        vm = self._machine(fields["vm"])
        args = (fields["name"], fields["value"])
        keep = self._old_setting(api, vm, "SetParameter", args)
        hresult, _ = api.guest(vm, "SetParameter", CALL, args)
        if failed(hresult):
            raise Unsupported(
                f"SetParameter({fields['name']!r}) failed ({hex32(hresult)}); the "
                "step cannot be built here"
            )
        if keep is not None:
            keep()
        return f"{vm}/{fields['name']}"

    def _machine(self, value: Any) -> str:
        if value not in self._vms.values():
            raise Unsupported(f"no IVMGuestOS for {value!r}: not a machine this case borrowed")
        return str(value)

    def _old_setting(
        self, api: VpcApi, vm: str, member: str, args: tuple[Any, ...]
    ) -> Callable[[], None] | None:
        """Before a member changes a setting, read it: the call that puts it back (None when
        this case already changed it: the first value read is the machine's own)."""
        key = str(args[0]) if member == "SetParameter" else ""
        if (vm, member, key) in self._changed:
            return None
        reader = _RESTORES[member]
        read_args = (key,) if member == "SetParameter" else ()
        hresult, old = api.guest(vm, reader, GET if reader == member else CALL, read_args)
        if failed(hresult) and member != "SetParameter":
            raise Unsupported(
                f"{reader} failed ({hex32(hresult)}), so the setting could not be "
                "put back afterwards; it is not changed"
            )
        # A parameter the guest did not have is put back as the empty string (IVMGuestOS
        # cannot delete one).
        restore = (*read_args, "" if old is None else old)
        flags = PUT if reader == member else CALL

        def keep() -> None:
            self._changed.add((vm, member, key))
            self.ledger.add(
                f"{vm}:{member}:{key}",
                f"{member} {key} of {vm!r}",
                lambda: self._restore(vm, member, flags, restore),
            )

        return keep

    def _restore(self, vm: str, member: str, flags: int, args: tuple[Any, ...]) -> None:
        hresult, _ = self.api.get().guest(vm, member, flags, args)
        if failed(hresult):
            raise OSError(f"{member} gave {hex32(hresult)} putting the old value back")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        self.api.get()
        raise Unsupported(f"fault {kind!r}: {_REASONS.get(kind, 'unknown to virtual-pc')}")

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id in UNREACHABLE:
            self.api.get()
            raise Unsupported(f"{method_id}: {UNREACHABLE[method_id]}")
        member = MEMBERS.get(method_id)
        if member is None:
            raise Unsupported(f"method {method_id!r}")
        api = self.api.get()
        values = self._arguments(method_id, member, args)
        vm = self._machine(args["this"])
        if member.acts and not self.config.lent("virtual_machines", self._name_of(vm)).get(
            "guest_actions"
        ):
            raise Unsupported(
                f"{method_id} acts on the guest; the config lends "
                f"{vm!r} without guest_actions: true"
            )
        keep = self._old_setting(api, vm, member.name, values) if member.name in _RESTORES else None
        if member.task:
            assert member.out is not None
            return async_outcome(member.out, api.guest_task(vm, member.name, values))
        hresult, value = api.guest(vm, member.name, member.flags, values)
        if keep is not None and not failed(hresult):
            keep()
        outputs = {} if member.out is None else {member.out: None if failed(hresult) else value}
        return Outcome(hresult=u32(hresult), outputs=outputs)

    def _name_of(self, vm: str) -> str:
        return next(name for name, machine in self._vms.items() if machine == vm)

    def _arguments(
        self, method_id: str, member: Member, args: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        """The in-parameters in order; a NULL out-pointer cannot go through IDispatch, which
        owns the [out, retval] pointer."""
        if member.out is not None and member.out in args and args[member.out] is None:
            raise Unsupported(
                f"a NULL {member.out} cannot be passed through IDispatch, which "
                "owns the [out, retval] pointer"
            )
        known = {"this", *member.ins, *([member.out] if member.out else [])}
        extra = sorted(set(args) - known)
        missing = [n for n in ("this", *member.ins) if n not in args]
        if extra or missing:
            raise ValueError(f"{method_id}: expected {sorted(known)}, got {sorted(args)}")
        values = tuple(args[n] for n in member.ins)
        if any(v is None for v in values):
            raise Unsupported(
                f"{method_id}: a NULL BSTR is passed through IDispatch as an "
                "empty VARIANT, not as the NULL the page means"
            )
        return values

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection in self.collections:
            raise Unsupported(
                f"collection {collection!r}: Virtual PC's automation shows no "
                "list of guest logons or parameters, and a VM's state is the "
                "operator's word"
            )
        raise Unsupported(f"collection {collection!r}")
