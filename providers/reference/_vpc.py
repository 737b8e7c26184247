"""Windows Virtual PC family: virtual machines, their guest OS (IVMGuestOS), the users logged
on in each guest, and the named parameters the integration components keep in the guest.

Every method and failing property of IVMGuestOS, read off its page: each one is a list of
gates (the checks its table implies, in one family-wide order) and an action. The order is
this simulator's reading where a page is silent about precedence: the caller's pointers and
arguments, the caller's access, the VM's configuration, its power state, its integration
components, then the guest's own failures.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._world import S_OK, World, check_args, check_step, direct, hresult_from_win32, started

IFACE = "IVMGuestOS::"
S_FALSE = 1
E_POINTER = 0x80004003
# The pages print E_INVALIDARG as 0x80000003, the 16-bit OLE value; winerror.h defines it as
# 0x80070057 on Win32, which is what a Windows 7 host returns.
E_INVALIDARG = 0x80070057
DISP_E_EXCEPTION = 0x80020009
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_OUTOFMEMORY = 14
ERROR_NOT_READY = 21
ERROR_SHUTDOWN_IN_PROGRESS = 1115
ERROR_MACHINE_LOCKED = 1271
ERROR_NO_SUCH_LOGON_SESSION = 1312
# VPCCOMInterfaces.h, as "HRESULT Codes Specific to Windows Virtual PC" lists them. The method
# pages print VM_E_VM_PAUSED as 0xA00400507 (nine digits); the code list gives 0xA0040507.
VM_E_TIMED_OUT = 0xA0040202
VM_E_VM_NOT_RUNNING = 0xA0040206
VM_E_VM_UNKNOWN = 0xA0040207
VM_E_PREF_VM_ACTIVE = 0xA0040302
VM_E_DRIVE_INVALID = 0xA0040502
VM_E_ADDITIONS_NOT_AVAIL = 0xA0040504
VM_E_ADDITIONS_FEATURE_NOT_AVAIL = 0xA0040505
VM_E_VM_PAUSED = 0xA0040507
VM_E_MEDIA_UNMOUNT_FAIL = 0xA0040508

POWER_STATES = ("running", "off", "saved", "paused")
REMOTE_DESKTOP = ("ready", "unavailable", "initializing")
DVD_DRIVE = ("empty", "media", "integration_components", "absent")
HEARTBEAT = (100, 40, 0)
SESSION_KINDS = ("rdp", "rail")
RAIL, RDP = 0, 1  # IsUserLoggedOn's inRailSession: "0 for a Rail session or 1 for an RDP"
MAX_PARAMETER_NAME = 255
VM_FAULTS = (
    "configuration_unknown",
    "guest_timeout",
    "unexpected_error",
    "out_of_memory",
    "shutdown_in_progress",
    "guest_not_ready",
    "media_unmount_fails",
)
HOST_FAULTS = ("integration_components_iso_missing",)

VERSION_FIELDS = (
    "os_major_version",
    "os_minor_version",
    "os_build_number",
    "os_platform_id",
    "csd_version",
    "service_pack_major",
    "service_pack_minor",
    "suite_mask",
    "product_type",
)
GUEST_STRINGS = ("computer_name", "os_name", "os_version", "integration_components_version")


def _default_guest() -> dict[str, Any]:
    return {
        **dict.fromkeys(GUEST_STRINGS, ""),
        "version_info": dict.fromkeys(VERSION_FIELDS, ""),
        "multiple_user_sessions_allowed": False,
        "terminal_server_port": 0,
    }


@dataclass
class _VirtualMachine:
    power: str
    additions: bool
    execute_access: bool
    guest: dict[str, Any] = field(default_factory=_default_guest)
    heartbeat: int = 100
    remote_desktop: str = "ready"
    dvd_drive: str = "empty"
    time_sync: bool = False
    screen_locked: bool = False
    never_started: bool = False


@dataclass(frozen=True)
class _Parameter:
    vm: str
    name: str
    value: str


@dataclass
class _Call:
    """One call as the gates see it: the world, the VM it is made on, its arguments."""

    world: VpcWorld
    vm_id: str
    vm: _VirtualMachine
    args: Mapping[str, Any]

    def faulty(self, kind: str) -> bool:
        return self.vm_id in self.world.armed[kind]


Gate = Callable[[_Call], "int | None"]


# -- gates: each gives the code its condition calls for, or None to go on --------------------


def _access(call: _Call) -> int | None:
    return None if call.vm.execute_access else hresult_from_win32(ERROR_ACCESS_DENIED)


def _configuration(call: _Call) -> int | None:
    return VM_E_VM_UNKNOWN if call.faulty("configuration_unknown") else None


def _running(call: _Call) -> int | None:
    return None if call.vm.power == "running" else VM_E_VM_NOT_RUNNING


def _running_not_paused(call: _Call) -> int | None:
    """For pages that tell a paused VM (VM_E_VM_PAUSED) from one that is not running."""
    return VM_E_VM_PAUSED if call.vm.power == "paused" else _running(call)


def _turned_on(call: _Call) -> int | None:
    """CanShutdown: S_FALSE, "the virtual machine is not turned on" (off or saved)."""
    return S_FALSE if call.vm.power in ("off", "saved") else None


def _inactive(call: _Call) -> int | None:
    """IsHostTimeSyncEnabled cannot change while the VM is running or saved (remarks)."""
    return None if call.vm.power == "off" else VM_E_PREF_VM_ACTIVE


def _feature(call: _Call) -> int | None:
    return None if call.vm.additions else VM_E_ADDITIONS_FEATURE_NOT_AVAIL


def _additions_reported(call: _Call) -> int | None:
    return None if call.vm.additions else VM_E_ADDITIONS_NOT_AVAIL


def _version_reported(call: _Call) -> int | None:
    """No version from components that are not installed or never ran (VM never started)."""
    never = call.vm.power == "off" and call.vm.never_started
    return VM_E_ADDITIONS_NOT_AVAIL if not call.vm.additions or never else None


def _unexpected(call: _Call) -> int | None:
    return DISP_E_EXCEPTION if call.faulty("unexpected_error") else None


def _memory(call: _Call) -> int | None:
    return hresult_from_win32(ERROR_OUTOFMEMORY) if call.faulty("out_of_memory") else None


def _timely(call: _Call) -> int | None:
    return VM_E_TIMED_OUT if call.faulty("guest_timeout") else None


def _shutdown_gates(call: _Call, forced: bool) -> int | None:
    """What a shutdown or restart task ends with when the guest refuses."""
    if call.faulty("shutdown_in_progress"):
        return hresult_from_win32(ERROR_SHUTDOWN_IN_PROGRESS)
    if call.faulty("guest_not_ready"):
        return hresult_from_win32(ERROR_NOT_READY)
    if call.vm.screen_locked and not forced:
        return hresult_from_win32(ERROR_MACHINE_LOCKED)
    return None


def _first(call: _Call, gates: tuple[Gate, ...]) -> int | None:
    for gate in gates:
        code = gate(call)
        if code is not None:
            return code
    return None


def _variant_bool(value: Any) -> bool:
    """VARIANT_FALSE is 0; any other VARIANT_BOOL (VARIANT_TRUE is -1) counts as true."""
    return bool(value)


# -- the property getters: [out, retval] and a value read off the VM ------------------------

GUEST = (_running, _feature, _unexpected)
HEARTBEAT_GATES = (_configuration, _running, _additions_reported, _unexpected)


@dataclass(frozen=True)
class _Property:
    """A property getter: its out-parameter, its page's gates, the value it reads."""

    out: str
    value: Callable[[_VirtualMachine], Any]
    gates: tuple[Gate, ...] = GUEST
    null: int = E_POINTER  # what a NULL [out, retval] pointer gives
    unknown: int = DISP_E_EXCEPTION  # an id that names no VM (no page row: the generic error)
    # Remote Desktop properties: S_FALSE, and no valid value, until it is initialized.
    needs_remote_desktop: bool = False


def _version(name: str) -> Callable[[_VirtualMachine], Any]:
    return lambda vm: vm.guest["version_info"][name]


def _guest(name: str) -> Callable[[_VirtualMachine], Any]:
    return lambda vm: vm.guest[name]


def _port(vm: _VirtualMachine) -> int:
    """0 is "valid port value is not available" when Remote Desktop is not available."""
    return vm.guest["terminal_server_port"] if vm.remote_desktop == "ready" else 0


PROPERTIES: dict[str, _Property] = {
    "get_CanShutdown": _Property(
        "canShutdown",
        lambda vm: vm.additions,
        (_configuration, _turned_on, _unexpected),
        unknown=VM_E_VM_UNKNOWN,
    ),
    "get_ComputerName": _Property("guestComputerName", _guest("computer_name"), null=E_INVALIDARG),
    "get_CSDVersion": _Property("csdVersion", _version("csd_version")),
    "get_HeartbeatPercentage": _Property(
        "heartbeatPercentage", lambda vm: vm.heartbeat, HEARTBEAT_GATES, unknown=VM_E_VM_UNKNOWN
    ),
    "get_IntegrationComponentsVersion": _Property(
        "ICVersion",
        _guest("integration_components_version"),
        (_configuration, _version_reported, _unexpected),
        unknown=VM_E_VM_UNKNOWN,
    ),
    "get_IsHeartbeating": _Property(
        "heartBeating", lambda vm: vm.heartbeat > 0, HEARTBEAT_GATES, unknown=VM_E_VM_UNKNOWN
    ),
    "get_IsHostTimeSyncEnabled": _Property(
        "isEnabled", lambda vm: vm.time_sync, (_configuration, _unexpected), unknown=VM_E_VM_UNKNOWN
    ),
    "get_MultipleUserSessionsAllowed": _Property(
        "sessionStatus",
        lambda vm: vm.remote_desktop == "ready" and vm.guest["multiple_user_sessions_allowed"],
        needs_remote_desktop=True,
    ),
    "get_OSBuildNumber": _Property("buildNumber", _version("os_build_number")),
    "get_OSMajorVersion": _Property("majorVersion", _version("os_major_version")),
    "get_OSMinorVersion": _Property("minorVersion", _version("os_minor_version")),
    "get_OSName": _Property("guestOSName", _guest("os_name")),
    "get_OSPlatformId": _Property("platformId", _version("os_platform_id")),
    "get_OSVersion": _Property("OSVersion", _guest("os_version")),
    # The ProductType page lists no error codes; it reads what its sibling version
    # properties read, so it fails as they do.
    "get_ProductType": _Property("productType", _version("product_type")),
    "get_ScreenLocked": _Property("guestScreenLocked", lambda vm: vm.screen_locked),
    "get_ServicePackMajor": _Property("servicePackMajor", _version("service_pack_major")),
    "get_ServicePackMinor": _Property("servicePackMinor", _version("service_pack_minor")),
    "get_SuiteMask": _Property("suiteMask", _version("suite_mask")),
    "get_TerminalServerPort": _Property("tsPort", _port, needs_remote_desktop=True),
    "get_TerminalServicesInitialized": _Property(
        "termServStatus", lambda vm: vm.remote_desktop == "ready", needs_remote_desktop=True
    ),
}


class VpcWorld(World):
    """Virtual PC's view: machines, their guests' facts, guest logons and guest parameters.

    Guest parameters live in the guest's registry, which the host cannot list: they can be
    set up and read through GetParameter, not observed.
    """

    steps = ("virtual_machine", "logon_session", "guest_parameter")
    faults = (*VM_FAULTS, *HOST_FAULTS)
    collections = ("virtual_machines", "logon_sessions")
    methods = tuple(
        IFACE + name
        for name in (
            "GetOsVersionInfo",
            "GetParameter",
            "InstallIntegrationComponents",
            "IsUserLoggedOn",
            "Logoff",
            "Restart",
            "SetParameter",
            "Shutdown",
            "put_IsHostTimeSyncEnabled",
            *PROPERTIES,
        )
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.vms: dict[str, _VirtualMachine] = {}
        self.logons: dict[str, tuple[str, str]] = {}  # logon session -> (vm, kind)
        self.parameters: dict[str, _Parameter] = {}  # in the order they were written
        self.armed: dict[str, set[str]] = {kind: set() for kind in VM_FAULTS}
        self.host_faults: set[str] = set()
        self._serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind == "virtual_machine":
            vm_id = f"vm-{next(self._serial)}"
            self.vms[vm_id] = _new_vm(fields)
            return vm_id
        if kind == "logon_session":
            check_step(fields, kind, required=("vm",), optional=("kind",))
            session_kind = fields.get("kind", "rdp")
            _one_of(kind, "kind", session_kind, SESSION_KINDS)
            logon_id = f"logon-{next(self._serial)}"
            self.logons[logon_id] = (self._vm_ref(fields["vm"]), session_kind)
            return logon_id
        if kind == "guest_parameter":
            check_step(fields, kind, required=("vm", "name"), optional=("value",))
            name, value = fields["name"], fields.get("value", "")
            if not isinstance(name, str) or not isinstance(value, str):
                raise ValueError(f"guest_parameter: name and value are strings, got {fields!r}")
            parameter_id = f"parameter-{next(self._serial)}"
            self.parameters[parameter_id] = _Parameter(self._vm_ref(fields["vm"]), name, value)
            return parameter_id
        raise Unsupported(f"virtual-pc step {kind!r}")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        if kind in HOST_FAULTS:
            check_step(fields, kind)
            self.host_faults.add(kind)
            return
        if kind not in self.armed:
            raise Unsupported(f"virtual-pc fault {kind!r}")
        check_step(fields, kind, required=("vm",))
        self.armed[kind].add(self._vm_ref(fields["vm"]))

    def _vm_ref(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.vms:
            raise ValueError(f"vm ref {value!r} is not an id this provider returned")
        return value

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        name = method_id.removeprefix(IFACE)
        if not method_id.startswith(IFACE) or method_id not in self.methods:
            raise Unsupported(f"method {method_id!r}")
        if name in PROPERTIES:
            return self._property(name, PROPERTIES[name], args)
        return getattr(self, f"_{name}")(args)

    def _on(self, args: Mapping[str, Any]) -> _Call | None:
        vm_id = args["this"]
        vm = self.vms.get(vm_id) if isinstance(vm_id, str) else None
        return None if vm is None else _Call(self, vm_id, vm, args)

    def _property(self, name: str, prop: _Property, args: Mapping[str, Any]) -> Outcome:
        check_args(args, name, required=("this",), optional=(prop.out,))
        failed = {prop.out: None}
        if _null(args, prop.out):
            return direct(prop.null, failed)
        call = self._on(args)
        if call is None:
            return direct(prop.unknown, failed)
        code = _first(call, prop.gates)
        if code == S_FALSE:
            return direct(S_FALSE, {prop.out: False})
        if code is not None:
            return direct(code, failed)
        if prop.needs_remote_desktop and call.vm.remote_desktop == "initializing":
            return direct(S_FALSE, {prop.out: prop.value(call.vm)})
        return direct(S_OK, {prop.out: copy.deepcopy(prop.value(call.vm))})

    def _GetOsVersionInfo(self, args: Mapping[str, Any]) -> Outcome:
        out = "guestOsVersionInfo"
        check_args(args, "GetOsVersionInfo", required=("this",), optional=(out,))
        refused = self._refuse(args, out, (_running, _feature, _unexpected, _memory))
        if refused is not None:
            return refused
        vm = self.vms[args["this"]]
        return direct(S_OK, {out: copy.deepcopy(vm.guest["version_info"])})

    def _GetParameter(self, args: Mapping[str, Any]) -> Outcome:
        out = "outParameterValue"
        check_args(args, "GetParameter", required=("this", "inParameterName"), optional=(out,))
        name = args["inParameterName"]
        refused = self._refuse(
            args,
            out,
            (_running_not_paused, _feature, _unexpected, _timely),
            invalid=not _valid_name(name),
        )
        if refused is not None:
            return refused
        found = [
            p.value for p in self.parameters.values() if p.vm == args["this"] and p.name == name
        ]
        if not found:  # no row names it: the name is "not valid" for this guest
            return direct(E_INVALIDARG, {out: None})
        return direct(S_OK, {out: found[-1]})

    def _SetParameter(self, args: Mapping[str, Any]) -> Outcome:
        check_args(args, "SetParameter", required=("this", "inParameterName", "inParameterValue"))
        name, value = args["inParameterName"], args["inParameterValue"]
        refused = self._refuse(
            args,
            None,
            (_running_not_paused, _feature, _unexpected, _timely),
            invalid=not _valid_name(name),
        )
        if refused is not None:
            return refused
        for key in [
            k for k, p in self.parameters.items() if p.vm == args["this"] and p.name == name
        ]:
            del self.parameters[key]
        text = "" if value is None else str(value)  # a NULL BSTR is the empty string
        self.parameters[f"parameter-{next(self._serial)}"] = _Parameter(args["this"], name, text)
        return direct(S_OK)

    def _IsUserLoggedOn(self, args: Mapping[str, Any]) -> Outcome:
        out = "outSessionPresent"
        check_args(args, "IsUserLoggedOn", required=("this", "inRailSession"), optional=(out,))
        kind = args["inRailSession"]
        refused = self._refuse(
            args,
            out,
            (_running_not_paused, _feature, _unexpected, _memory, _timely),
            invalid=isinstance(kind, bool) or kind not in (RAIL, RDP),
        )
        if refused is not None:
            return refused
        wanted = "rail" if kind == RAIL else "rdp"
        present = any(vm == args["this"] and k == wanted for vm, k in self.logons.values())
        return direct(S_OK, {out: present})

    def _InstallIntegrationComponents(self, args: Mapping[str, Any]) -> Outcome:
        check_args(args, "InstallIntegrationComponents", required=("this",))
        call = self._on(args)
        if call is None:
            return direct(VM_E_VM_UNKNOWN)
        code = _first(call, (_configuration, _running, _unexpected))
        if code is not None:
            return direct(code)
        if "integration_components_iso_missing" in self.host_faults:
            return direct(hresult_from_win32(ERROR_FILE_NOT_FOUND))
        if call.vm.dvd_drive == "absent":
            return direct(VM_E_DRIVE_INVALID)
        if call.vm.dvd_drive != "empty" and call.faulty("media_unmount_fails"):
            return direct(VM_E_MEDIA_UNMOUNT_FAIL)
        call.vm.dvd_drive = "integration_components"  # setup then runs inside the guest
        return direct(S_OK)

    def _put_IsHostTimeSyncEnabled(self, args: Mapping[str, Any]) -> Outcome:
        check_args(args, "put_IsHostTimeSyncEnabled", required=("this", "shouldEnable"))
        call = self._on(args)
        if call is None:
            return direct(VM_E_VM_UNKNOWN)
        code = _first(call, (_configuration, _inactive, _unexpected))
        if code is not None:
            return direct(code)
        call.vm.time_sync = _variant_bool(args["shouldEnable"])
        return direct(S_OK)

    # -- the methods that return an IVMTask ----------------------------------------------

    def _Logoff(self, args: Mapping[str, Any]) -> Outcome:
        out = "outLogoffTask"
        check_args(args, "Logoff", required=("this",), optional=(out,))
        refused = self._refuse(
            args,
            out,
            (_access, _configuration, _running, _feature, _unexpected),
            unknown=VM_E_VM_UNKNOWN,
        )
        if refused is not None:
            return refused
        call = self._on(args)
        assert call is not None
        code = _timely(call)
        if code is None and not self._sessions_of(call.vm_id):
            code = hresult_from_win32(ERROR_NO_SUCH_LOGON_SESSION)
        return self._task(out, code, lambda: self._log_off(call.vm_id))

    def _Restart(self, args: Mapping[str, Any]) -> Outcome:
        out = "outRestartTask"
        check_args(args, "Restart", required=("this", "inForced"), optional=(out,))
        refused = self._refuse(
            args, out, (_configuration, _running, _feature, _unexpected), unknown=VM_E_VM_UNKNOWN
        )
        if refused is not None:
            return refused
        call = self._on(args)
        assert call is not None
        # Restart's page lists access denied only among the task's results.
        code = (
            _access(call) or _timely(call) or _shutdown_gates(call, _variant_bool(args["inForced"]))
        )
        return self._task(out, code, lambda: self._log_off(call.vm_id))

    def _Shutdown(self, args: Mapping[str, Any]) -> Outcome:
        out = "outShutdownTask"
        check_args(args, "Shutdown", required=("this", "isForced"), optional=(out,))
        refused = self._refuse(
            args,
            out,
            (_access, _configuration, _running, _feature, _unexpected),
            unknown=VM_E_VM_UNKNOWN,
        )
        if refused is not None:
            return refused
        call = self._on(args)
        assert call is not None
        code = _timely(call) or _shutdown_gates(call, _variant_bool(args["isForced"]))
        return self._task(out, code, lambda: self._power_off(call))

    def _task(self, out: str, failure: int | None, effect: Callable[[], None]) -> Outcome:
        """Start the IVMTask; its Error is the failure, or S_OK once the effect is done."""
        task = f"IVMTask#{next(self._serial)}"
        if failure is not None:
            return started(out, task, failure)
        effect()
        return started(out, task, S_OK)

    def _sessions_of(self, vm_id: str) -> list[str]:
        return [logon for logon, (vm, _) in self.logons.items() if vm == vm_id]

    def _log_off(self, vm_id: str) -> None:
        for logon in self._sessions_of(vm_id):
            del self.logons[logon]

    def _power_off(self, call: _Call) -> None:
        self._log_off(call.vm_id)
        call.vm.power = "off"

    def _refuse(
        self,
        args: Mapping[str, Any],
        out: str | None,
        gates: tuple[Gate, ...],
        invalid: bool = False,
        unknown: int = DISP_E_EXCEPTION,
    ) -> Outcome | None:
        """The direct failure of a call, if any: NULL pointer, bad argument, then the gates."""
        failed = {} if out is None else {out: None}
        if out is not None and _null(args, out):
            return direct(E_POINTER, failed)
        if invalid:
            return direct(E_INVALIDARG, failed)
        call = self._on(args)
        if call is None:
            return direct(unknown, failed)
        code = _first(call, gates)
        return None if code is None else direct(code, failed)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "virtual_machines":
            return [_vm_row(vm_id, vm) for vm_id, vm in self.vms.items()]
        if collection == "logon_sessions":
            return [
                {"id": logon, "vm": vm, "kind": kind} for logon, (vm, kind) in self.logons.items()
            ]
        raise Unsupported(f"collection {collection!r}")


def _null(args: Mapping[str, Any], out: str) -> bool:
    """The key is present (as None) only when the caller passes a NULL out-pointer."""
    return out in args and args[out] is None


def _valid_name(name: Any) -> bool:
    """1 to 255 characters and no backslash; a NULL BSTR is the empty string."""
    return isinstance(name, str) and 0 < len(name) <= MAX_PARAMETER_NAME and "\\" not in name


def _one_of(step: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{step}: {name} must be one of {allowed}, got {value!r}")


def _flag(step: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{step}: {name} must be a bool, got {value!r}")
    return value


VM_OPTIONAL = (
    "guest",
    "heartbeat",
    "remote_desktop",
    "dvd_drive",
    "time_sync",
    "screen_locked",
    "never_started",
)


def _new_vm(fields: Mapping[str, Any]) -> _VirtualMachine:
    step = "virtual_machine"
    check_step(
        fields, step, required=("power", "additions", "execute_access"), optional=VM_OPTIONAL
    )
    _one_of(step, "power", fields["power"], POWER_STATES)
    vm = _VirtualMachine(
        fields["power"],
        _flag(step, "additions", fields["additions"]),
        _flag(step, "execute_access", fields["execute_access"]),
    )
    vm.guest = _guest_of(fields.get("guest", {}))
    vm.heartbeat = fields.get("heartbeat", vm.heartbeat)
    _one_of(step, "heartbeat", vm.heartbeat, HEARTBEAT)
    vm.remote_desktop = fields.get("remote_desktop", vm.remote_desktop)
    _one_of(step, "remote_desktop", vm.remote_desktop, REMOTE_DESKTOP)
    vm.dvd_drive = fields.get("dvd_drive", vm.dvd_drive)
    _one_of(step, "dvd_drive", vm.dvd_drive, DVD_DRIVE)
    for flag in ("time_sync", "screen_locked", "never_started"):
        setattr(vm, flag, _flag(step, flag, fields.get(flag, False)))
    return vm


def _guest_of(value: Any) -> dict[str, Any]:
    """The guest's facts; members not given keep their empty defaults."""
    guest = _default_guest()
    if not isinstance(value, Mapping):
        raise ValueError(f"virtual_machine: guest must be a mapping, got {value!r}")
    check_step(value, "guest", optional=tuple(guest))
    for key, item in value.items():
        if key == "version_info":
            if not isinstance(item, Mapping):
                raise ValueError(f"guest: version_info must be a mapping, got {item!r}")
            check_step(item, "version_info", optional=VERSION_FIELDS)
            guest[key].update(item)
        else:
            guest[key] = item
    return guest


def _vm_row(vm_id: str, vm: _VirtualMachine) -> dict[str, Any]:
    guest = {**vm.guest, "version_info": dict(vm.guest["version_info"])}  # strings and numbers
    return {
        "id": vm_id,
        "guest": guest,
        "heartbeat": vm.heartbeat,
        "remote_desktop": vm.remote_desktop,
        "dvd_drive": vm.dvd_drive,
        "time_sync": vm.time_sync,
        "screen_locked": vm.screen_locked,
        "never_started": vm.never_started,
        "power": vm.power,
        "additions": vm.additions,
        "execute_access": vm.execute_access,
    }
