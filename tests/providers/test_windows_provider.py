"""The Windows backend: everything but the DLL and COM calls themselves, tested here with fakes.

The fakes stand where iscsidsc.dll, the VDS service and Virtual PC stand on Windows and behave as
their pages say, so the spec scenarios run through the provider and the harness's own World.
The vtable caller is exercised against objects laid out as COM lays them out, built in ctypes.
Tests marked `needs Windows` call the real APIs and run on the Windows CI runner.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformance_providers.windows import (
    WindowsProvider,
    _com,
    _layouts,
    _structs,
    _vpc,
    gen_layouts,
)
from conformance_providers.windows._com import AsyncResult, ComObject
from conformance_providers.windows._config import (
    ENV_VAR,
    CleanupError,
    Config,
    ConfigError,
    Lazy,
    Ledger,
    load_config,
)
from conformance_providers.windows._iscsi import (
    ISCSI_ALL_INITIATOR_PORTS,
    IscsiDsc,
    Login,
    PersistentLogin,
    Portal,
    Session,
    StaticTarget,
    could_remove,
    fetch_sized,
    parse_persistent_logins,
    parse_sessions,
    portal_from_struct,
    portal_group_struct,
    portal_struct,
    session_id_struct,
    session_id_text,
)
from conformance_providers.windows._vds import LoginRequest, ip_text
from conformance_providers.windows._vpc import MISSING

from conformance.engine.replay import ReproError, replay
from conformance.engine.scenarios import check_scenario
from conformance.engine.subject import Subject
from conformance.engine.verdict import PASSED, Verdict
from conformance.provider import Outcome, ProviderUnavailable, Unsupported, load
from conformance.spec.catalog import load_catalog

needs_windows = pytest.mark.skipif(sys.platform != "win32", reason="needs Windows")
not_windows = pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows path")
x64_sizes = pytest.mark.skipif(
    ctypes.sizeof(ctypes.c_void_p) != 8,
    reason="the layouts are checked as Windows x64 lays them out",
)

INST0, INST1 = "ROOT\\ISCSIPRT\\0000_0", "ROOT\\ISCSIPRT\\0001_0"
IQN1, IQN2 = "iqn.1991-05.com.example:array-t1", "iqn.1991-05.com.example:array-t2"
ADAPTER = "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0001"
T1_ID, T2_ID = "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0011", "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0012"
P1_ID, P2_ID = "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0021", "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0022"
IP1_ID = "6b0d1a72-3c3e-4d1b-9a52-0a0c6f1b0031"
DISK1 = "iqn.1991-05.com.example:disk1"
GUEST = {
    "computer_name": "WIN7-GUEST",
    "os_name": "Windows 7 Enterprise",
    "os_version": "6.1.7601",
    "version_info": {
        "os_major_version": "6",
        "os_minor_version": "1",
        "os_build_number": "7601",
        "os_platform_id": "2",
        "csd_version": "Service Pack 1",
        "service_pack_major": "1",
        "service_pack_minor": "0",
        "suite_mask": "0x00000100",
        "product_type": "0x0000001",
    },
    "integration_components_version": "6.1.7601.17514",
    "multiple_user_sessions_allowed": True,
    "terminal_server_port": 3389,
}
CONFIG: dict[str, Any] = {
    "initiators": {"I1": {"instance": INST0}, "I2": {"instance": INST1}},
    "ports": {"N1": {"initiator": "I1", "number": 0}, "N2": {"initiator": "I1", "number": 1}},
    "iscsi_sessions": {
        "S1": {"iqn": DISK1, "address": "192.0.2.30"},
        "S2": {"iqn": DISK1, "address": "192.0.2.30"},
    },
    "initiator_adapters": {"A1": {"name": "Microsoft iSCSI Initiator"}},
    "initiator_portals": {"IP1": {"adapter": "A1", "address": "192.0.2.5"}},
    "targets": {"T1": {"iqn": IQN1}, "T2": {"iqn": IQN2}},
    "portals": {"P1": {"address": "192.0.2.20"}, "P2": {"address": "192.0.2.21", "port": 3260}},
    "virtual_machines": {
        "VM1": {
            "name": "XP Mode",
            "power": "running",
            "additions": True,
            "execute_access": True,
            "guest": GUEST,
            "heartbeat": 100,
            "remote_desktop": "ready",
            "dvd_drive": "empty",
            "time_sync": False,
            "screen_locked": False,
            "never_started": False,
            "guest_actions": True,
        }
    },
}
HOST_LOGIN = PersistentLogin(
    INST0, 0, "iqn.1991-05.com.example:host-disk", Portal("", "198.51.100.7", 3260)
)

ERROR_SUCCESS = 0
ERROR_INSUFFICIENT_BUFFER = 122
ISDSC_INITIATOR_INSTANCE_NOT_FOUND = 0xEFFF0017
ISDSC_TARGET_NOT_FOUND = 0xEFFF0029
ISDSC_INVALID_PORT_NUMBER = 0xEFFF002D
ISDSC_INVALID_ISCSI_NAME = 0xEFFF0051
ISDSC_INVALID_SESSION_ID = 0xEFFF001C
VDS_E_ISCSI_LOGIN_FAILED = 0x80042708
VDS_E_ASSOCIATED_PORTALS_EXIST = 0x8004270C
E_INVALIDARG = 0x80070057
VM_E_GUEST_PARAMETER_NOT_FOUND = E_INVALIDARG  # a name the guest does not have
VM_E_VM_RUNNING_OR_SAVED = 0xA004020B
ERROR_NO_SUCH_LOGON_SESSION = 0x80070520  # HRESULT_FROM_WIN32(1312)
VDS_E_OBJECT_NOT_FOUND = 0x80042405
VDS_E_OBJECT_DELETED = 0x8004240B
VDS_E_ISCSI_SESSION_NOT_FOUND = 0x8004270A
VDS_E_ISCSI_LOGOUT_INCOMPLETE = 0x80042710


# =========================================================================== fakes


class FakeIscsi:
    """iscsidsc.dll as its pages describe it, over in-memory lists."""

    code_page = "cp1252"

    def __init__(
        self, logins: tuple[PersistentLogin, ...] = (), sessions: tuple[Session, ...] = ()
    ) -> None:
        self.ports = {INST0: {0, 1}, INST1: {0}}
        self.static_targets: dict[str, bool] = {}  # name -> hidden
        self.logins = list(logins)
        self.session_list = list(sessions)
        self.calls: list[tuple[Any, ...]] = []
        self._serial = itertools.count(1)

    @property
    def static(self) -> list[str]:
        return list(self.static_targets)

    def _text(self, wide: bool) -> Callable[[str], str]:
        """What an A caller's text becomes inside the W implementation."""
        if wide:
            return lambda t: t
        return lambda t: t.encode(self.code_page, "replace").decode(self.code_page)

    def initiators(self) -> list[str]:
        return list(self.ports)

    def targets(self) -> list[str]:
        return [name for name, hidden in self.static_targets.items() if not hidden]

    def persistent_logins(self) -> list[PersistentLogin]:
        return list(self.logins)

    def sessions(self) -> list[Session]:
        return list(self.session_list)

    def add_static(self, wide: bool, target: StaticTarget) -> int:
        _structs.encode(target.target_name, wide, self.code_page)  # what the real call marshals
        name = self._text(wide)(target.target_name)
        self.calls.append(("AddIScsiStaticTarget" + "AW"[wide], name))
        if not 1 <= len(name) <= 223:
            return ISDSC_INVALID_ISCSI_NAME
        self.static_targets[name] = bool(target.flags & 2)
        return ERROR_SUCCESS

    def remove_static(self, wide: bool, name: str) -> int:
        name = self._text(wide)(name)
        self.calls.append(("RemoveIScsiStaticTarget" + "AW"[wide], name))
        if name not in self.static_targets:
            return ISDSC_TARGET_NOT_FOUND
        del self.static_targets[name]
        return ERROR_SUCCESS

    def login(self, wide: bool, login: Login) -> tuple[int, str | None]:
        text = self._text(wide)
        if login.portal is not None:
            portal_struct(login.portal, wide, self.code_page)  # raises TextError as the real one
        # A NULL InitiatorInstance lets the service choose an initiator (here the first).
        chosen = next(iter(self.ports)) if login.instance is None else login.instance
        instance, name = text(chosen), text(login.target_name)
        self.calls.append(
            ("LoginIScsiTarget" + "AW"[wide], name, instance, login.port, login.persistent)
        )
        if instance not in self.ports:
            return ISDSC_INITIATOR_INSTANCE_NOT_FOUND, None
        if login.port != ISCSI_ALL_INITIATOR_PORTS and login.port not in self.ports[instance]:
            return ISDSC_INVALID_PORT_NUMBER, None
        if name not in self.targets():
            return ISDSC_TARGET_NOT_FOUND, None
        if login.persistent:
            portal = login.portal or Portal("", "", 0)
            self.logins.append(
                PersistentLogin(
                    instance,
                    login.port,
                    name,
                    Portal(text(portal.symbolic_name), text(portal.address), portal.socket),
                )
            )
            return ERROR_SUCCESS, None
        return ERROR_SUCCESS, self.new_session(name)

    def report_persistent(
        self, wide: bool, buffer: bool
    ) -> tuple[int, int, list[PersistentLogin] | None]:
        if not buffer:
            return (ERROR_INSUFFICIENT_BUFFER if self.logins else ERROR_SUCCESS), 0, None
        text = self._text(wide)
        return (
            ERROR_SUCCESS,
            len(self.logins),
            [
                PersistentLogin(
                    text(g.initiator),
                    g.port,
                    text(g.target_name),
                    Portal(text(g.portal.symbolic_name), text(g.portal.address), g.portal.socket),
                )
                for g in self.logins
            ],
        )

    def remove_persistent(
        self, wide: bool, instance: str, port: int, name: str, portal: Portal | None
    ) -> int:
        if portal is not None:
            portal_struct(portal, wide, self.code_page)  # raises TextError as the real one
        self.calls.append(("RemoveIScsiPersistentTarget" + "AW"[wide], instance, port, name))
        text = self._text(wide)
        instance, name = text(instance), text(name)
        portal = portal and Portal(text(portal.symbolic_name), text(portal.address), portal.socket)
        if instance not in self.ports:
            return ISDSC_INITIATOR_INSTANCE_NOT_FOUND
        if port != ISCSI_ALL_INITIATOR_PORTS and port not in self.ports[instance]:
            return ISDSC_INVALID_PORT_NUMBER
        doomed = [
            g
            for g in self.logins
            if could_remove(g, instance, port, name, portal, lambda t: {t})
            and g.initiator == instance
            and g.target_name == name
        ]
        if not doomed:
            return ISDSC_TARGET_NOT_FOUND
        self.logins = [g for g in self.logins if g not in doomed]
        return ERROR_SUCCESS

    def new_session(self, iqn: str) -> str:
        session = f"{next(self._serial):016x}-{1:016x}"
        self.session_list.append(Session(session, iqn))
        return session

    def logout(self, session_id: str) -> int:
        self.calls.append(("LogoutIScsiTarget", session_id))
        if session_id not in {s.id for s in self.session_list}:
            return ISDSC_INVALID_SESSION_ID
        self.session_list = [s for s in self.session_list if s.id != session_id]
        return ERROR_SUCCESS


class FakeVds:
    """A VDS service with one adapter (one initiator portal), two targets and two portals."""

    def __init__(self, iscsi: FakeIscsi) -> None:
        self.iscsi = iscsi
        self.groups: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.forgotten: list[str] = []
        self._async = itertools.count(1)

    def _done(self, completion: int = 0) -> AsyncResult:
        return AsyncResult(0, f"IVdsAsync#{next(self._async)}", completion)

    def adapters(self) -> list[tuple[str, str]]:
        return [(ADAPTER, "Microsoft iSCSI Initiator")]

    def initiator_portals(self, adapter: str) -> tuple[int, list[tuple[str, str]] | None]:
        return 0, [(IP1_ID, "192.0.2.5")] if adapter == ADAPTER else []

    def adapter_properties(self, adapter: str) -> tuple[int, str | None, str | None]:
        return 0, adapter, dict(self.adapters())[adapter]

    def targets(self) -> list[tuple[str, str]]:
        return [(T1_ID, IQN1), (T2_ID, IQN2)]

    def portals(self) -> list[tuple[str, str, int]]:
        return [(P1_ID, "192.0.2.20", 3260), (P2_ID, "192.0.2.21", 3260)]

    def _iqn(self, target: str) -> str | None:
        return dict(self.targets()).get(target)

    def login(self, adapter: str, request: LoginRequest) -> AsyncResult:
        self.calls.append(("LoginToTarget", request.target))
        iqn = self._iqn(request.target)
        portal_ok = request.target_portal == _com.GUID_NULL or any(
            g["target"] == request.target
            and request.target_portal in g["portals"]
            and not g["deleted"]
            for g in self.groups.values()
        )
        initiator_ok = request.initiator_portal in (_com.GUID_NULL, IP1_ID)
        if iqn is None or not portal_ok or not initiator_ok:
            return self._done(VDS_E_ISCSI_LOGIN_FAILED)
        self.iscsi.new_session(iqn)
        return self._done()

    def logout_from_target(self, adapter: str, target: str) -> AsyncResult:
        self.calls.append(("LogoutFromTarget", target))
        iqn = self._iqn(target)
        ending = [s for s in self.iscsi.session_list if s.target == iqn]
        if not ending:
            return AsyncResult(VDS_E_ISCSI_SESSION_NOT_FOUND)
        for session in ending:
            self.iscsi.session_list.remove(session)
        return self._done()

    def create_portal_group(self, target: str) -> tuple[AsyncResult, str | None]:
        group = str(uuid.uuid4())
        self.groups[group] = {"target": target, "portals": [], "deleted": False}
        self.calls.append(("CreatePortalGroup", group))
        return self._done(), group

    def _deleted(self, group: str) -> AsyncResult | None:
        return AsyncResult(VDS_E_OBJECT_DELETED) if self.groups[group]["deleted"] else None

    def add_portal(self, group: str, portal: str) -> AsyncResult:
        self.calls.append(("AddPortal", group, portal))
        if self._deleted(group):
            return AsyncResult(VDS_E_OBJECT_DELETED)
        if portal not in {p for p, _, _ in self.portals()}:
            return AsyncResult(VDS_E_OBJECT_NOT_FOUND)
        target = self.groups[group]["target"]
        if any(
            portal in g["portals"] and g["target"] == target and not g["deleted"]
            for g in self.groups.values()
        ):
            return self._done(E_INVALIDARG)  # a portal is in one group of a target at most
        if portal not in self.groups[group]["portals"]:
            self.groups[group]["portals"].append(portal)
        return self._done()

    def remove_portal(self, group: str, portal: str) -> AsyncResult:
        self.calls.append(("RemovePortal", group, portal))
        if self._deleted(group):
            return AsyncResult(VDS_E_OBJECT_DELETED)
        if portal not in self.groups[group]["portals"]:
            return AsyncResult(VDS_E_OBJECT_NOT_FOUND)
        self.groups[group]["portals"].remove(portal)
        return self._done()

    def delete_portal_group(self, group: str) -> AsyncResult:
        self.calls.append(("Delete", group))
        if self._deleted(group):
            return AsyncResult(VDS_E_OBJECT_DELETED)
        if self.groups[group]["portals"]:
            return AsyncResult(VDS_E_ASSOCIATED_PORTALS_EXIST)
        self.groups[group]["deleted"] = True
        return self._done()

    def group_properties(self, group: str) -> tuple[int, str | None, int | None]:
        return (VDS_E_OBJECT_DELETED, None, None) if self._deleted(group) else (0, group, 0)

    def group_target(self, group: str) -> tuple[int, str | None]:
        if self._deleted(group):
            return VDS_E_OBJECT_DELETED, None
        return 0, self.groups[group]["target"]

    def group_portals(self, group: str) -> tuple[int, list[str] | None]:
        if self._deleted(group):
            return VDS_E_OBJECT_DELETED, None
        return 0, list(self.groups[group]["portals"])

    def forget(self, object_id: str) -> None:
        self.forgotten.append(object_id)


class FakeVpc:
    """Virtual PC with one machine whose guest answers from the config's facts about it."""

    def __init__(self, completion: int = ERROR_NO_SUCH_LOGON_SESSION) -> None:
        """`completion`: what a task reports; no user is ever logged on in this guest."""
        self.completion = completion
        self.logoffs: list[str] = []
        self.calls: list[tuple[Any, ...]] = []
        facts = CONFIG["virtual_machines"]["VM1"]
        info = facts["guest"]["version_info"]
        self.values: dict[str, Any] = {
            "CSDVersion": info["csd_version"],
            "CanShutdown": facts["additions"],
            "ComputerName": facts["guest"]["computer_name"],
            "HeartbeatPercentage": facts["heartbeat"],
            "IntegrationComponentsVersion": facts["guest"]["integration_components_version"],
            "IsHeartbeating": facts["heartbeat"] > 0,
            "IsHostTimeSyncEnabled": facts["time_sync"],
            "MultipleUserSessionsAllowed": facts["guest"]["multiple_user_sessions_allowed"],
            "OSBuildNumber": info["os_build_number"],
            "OSMajorVersion": info["os_major_version"],
            "OSMinorVersion": info["os_minor_version"],
            "OSName": facts["guest"]["os_name"],
            "OSPlatformId": info["os_platform_id"],
            "OSVersion": facts["guest"]["os_version"],
            "ProductType": info["product_type"],
            "ScreenLocked": facts["screen_locked"],
            "ServicePackMajor": info["service_pack_major"],
            "ServicePackMinor": info["service_pack_minor"],
            "SuiteMask": info["suite_mask"],
            "TerminalServerPort": facts["guest"]["terminal_server_port"],
            "TerminalServicesInitialized": facts["remote_desktop"] == "ready",
        }
        self.parameters: dict[str, str] = {}

    def has_vm(self, name: str) -> bool:
        return name == "XP Mode"

    def guest(self, vm: str, member: str, flags: int, args: tuple[Any, ...]) -> tuple[int, Any]:
        self.calls.append((member, *args))
        if member in ("GetParameter", "SetParameter") and not _parameter_name(args[0]):
            return E_INVALIDARG, None
        if member == "GetParameter":
            value = self.parameters.get(args[0])
            return (0, value) if value is not None else (VM_E_GUEST_PARAMETER_NOT_FOUND, None)
        if member == "SetParameter":
            self.parameters[args[0]] = args[1]
            return 0, None
        if member == "IsUserLoggedOn":
            return (0, False) if args[0] in (0, 1) else (E_INVALIDARG, None)
        if member == "IsHostTimeSyncEnabled" and flags == _vpc.PUT:
            return VM_E_VM_RUNNING_OR_SAVED, None  # the machine is running
        if member == "InstallIntegrationComponents":
            return 0, None
        return 0, self.values[member]

    def guest_task(self, vm: str, member: str, args: tuple[Any, ...]) -> AsyncResult:
        self.logoffs.append(vm)
        self.calls.append((member, *args))
        return AsyncResult(0, "IVMTask@0x1", self.completion)


def _parameter_name(name: str) -> bool:
    """A guest parameter name SetParameter accepts: 1 to 255 characters, no backslash."""
    return 0 < len(name) <= 255 and "\\" not in name


def provider(
    config: Any = None, iscsi: FakeIscsi | None = None, vds: Any = "default", vpc: Any = None
) -> WindowsProvider:
    iscsi = iscsi or FakeIscsi()
    return WindowsProvider.with_apis(
        config=CONFIG if config is None else config,
        iscsi=iscsi,
        vds=FakeVds(iscsi) if vds == "default" else vds,
        vpc=vpc,
    )


# =========================================================================== not Windows


@not_windows
def test_constructing_off_windows_says_it_needs_windows() -> None:
    with pytest.raises(ProviderUnavailable, match=r"^needs Windows: .*iscsidsc\.dll"):
        WindowsProvider()


@not_windows
def test_load_keeps_the_needs_windows_message() -> None:
    with pytest.raises(ProviderUnavailable, match=r"^needs Windows: "):
        load("conformance_providers.windows:WindowsProvider")


@not_windows
def test_conformance_run_exits_3_off_windows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conformance.cli import main

    code = main(
        [
            "run",
            "--provider",
            "conformance_providers.windows:WindowsProvider",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 3
    assert capsys.readouterr().err.startswith("provider unavailable: needs Windows: ")


def test_capabilities_name_what_the_backend_can_attempt() -> None:
    """Every spec'd method: what cannot be called says why (Unsupported), never 'not in its
    capabilities'; every step, fault and collection of the three domains likewise."""
    caps = provider().capabilities()
    specs = catalog()
    assert set(caps["methods"]) == set(specs.specs)
    domains = specs.domains.values()
    assert set(caps["steps"]) == {c.step for d in domains for c in d.collections.values()} | {
        "fault"
    }
    assert set(caps["faults"]) == {f for d in domains for f in d.faults}
    assert set(caps["observe"]) == {c for d in domains for c in d.collections}


# =========================================================================== layouts


@x64_sizes
@pytest.mark.parametrize(
    ("name", "size", "offsets"),
    [
        ("ISCSI_TARGET_PORTALW", 1026, {"SymbolicName": 0, "Address": 512, "Socket": 1024}),
        ("ISCSI_TARGET_PORTALA", 514, {"SymbolicName": 0, "Address": 256, "Socket": 512}),
        ("ISCSI_UNIQUE_SESSION_ID", 16, {"AdapterUnique": 0, "AdapterSpecific": 8}),
        ("ISCSI_LOGIN_OPTIONS", 64, {"UsernameLength": 36, "Username": 48, "Password": 56}),
        (
            "PERSISTENT_ISCSI_LOGIN_INFOW",
            2080,
            {
                "TargetName": 0,
                "IsInformationalSession": 448,
                "InitiatorInstance": 450,
                "InitiatorPortNumber": 964,
                "TargetPortal": 968,
                "SecurityFlags": 2000,
                "Mappings": 2008,
                "LoginOptions": 2016,
            },
        ),
        (
            "PERSISTENT_ISCSI_LOGIN_INFOA",
            1088,
            {
                "InitiatorInstance": 225,
                "InitiatorPortNumber": 484,
                "TargetPortal": 488,
                "SecurityFlags": 1008,
                "LoginOptions": 1024,
            },
        ),
        ("ISCSI_SESSION_INFOW", 64, {"InitiatorName": 16, "TargetName": 32, "Connections": 56}),
        ("ISCSI_TARGET_PORTAL_GROUPW", 4, {"Count": 0, "Portals": 4}),
        (
            "VDS_IPADDRESS",
            552,
            {"ipv4Address": 4, "ipv6Address": 8, "wszTextAddress": 32, "ulPort": 548},
        ),
        ("VDS_ISCSI_TARGET_PROP", 40, {"id": 0, "pwszIscsiName": 16, "bChapEnabled": 32}),
        ("VDS_ASYNC_OUTPUT", 32, {"type": 0, "Anonymous": 8}),
        ("VARIANT", 24, {}),
        ("EXCEPINFO", 64, {"bstrSource": 8, "scode": 56}),
        ("DISPPARAMS", 24, {"cArgs": 16, "cNamedArgs": 20}),
    ],
)
def test_structures_have_windows_x64_sizes_and_offsets(
    name: str, size: int, offsets: dict[str, int]
) -> None:
    cls = _structs.struct(name)
    assert ctypes.sizeof(cls) == size
    assert {f: getattr(cls, f).offset for f in offsets} == offsets


def test_portal_field_lengths_come_from_the_metadata_constants() -> None:
    c = _layouts.CONSTANTS
    assert c["MAX_ISCSI_PORTAL_NAME_LEN"] == c["MAX_ISCSI_PORTAL_ADDRESS_LEN"] == 256
    fields = dict(_layouts.STRUCTS["ISCSI_TARGET_PORTALW"]["fields"])
    assert fields == {"SymbolicName": "WCHAR[256]", "Address": "WCHAR[256]", "Socket": "USHORT"}
    login = dict(_layouts.STRUCTS["PERSISTENT_ISCSI_LOGIN_INFOW"]["fields"])
    assert login["TargetName"] == f"WCHAR[{c['MAX_ISCSI_NAME_LEN'] + 1}]"
    assert login["InitiatorInstance"] == f"WCHAR[{c['MAX_ISCSI_HBANAME_LEN']}]"


def test_all_initiator_ports_is_stated_where_the_metadata_lacks_it() -> None:
    assert "ISCSI_ALL_INITIATOR_PORTS" in _layouts.MISSING_CONSTANTS
    spec = yaml.safe_load(
        Path(load_catalog().specs["RemoveIScsiPersistentTargetW"].file).read_text(encoding="utf-8")
    )
    assert spec["constants"]["ISCSI_ALL_INITIATOR_PORTS"] == ISCSI_ALL_INITIATOR_PORTS


def test_vtable_slots_and_iids_agree_with_the_specs() -> None:
    for spec in load_catalog().specs.values():
        if spec.kind != "com-method" or spec.id.startswith("IVMGuestOS"):
            continue
        raw = yaml.safe_load(Path(spec.file).read_text(encoding="utf-8"))["interface"]
        interface, method = spec.id.split("::")
        assert _layouts.INTERFACES[interface]["iid"] == raw["iid"]
        assert _layouts.INTERFACES[interface]["methods"][method]["slot"] == raw["slot"]


def test_the_functions_are_declared_as_the_metadata_does() -> None:
    dll, restype, argtypes = _structs.function("RemoveIScsiPersistentTargetW")
    assert dll.lower() == "iscsidsc.dll" and restype is ctypes.c_uint32
    assert argtypes[1] is ctypes.c_uint32
    assert argtypes[3]._type_ is _structs.struct("ISCSI_TARGET_PORTALW")
    slot, restype, argtypes = _structs.method("IVdsIscsiPortalGroup", "RemovePortal")
    assert (slot, restype) == (7, ctypes.c_int32)
    assert argtypes[0] is _structs.GUID


def test_checked_in_layouts_match_the_installed_metadata() -> None:
    try:
        files = gen_layouts.locate()
    except gen_layouts.MetadataError as exc:
        pytest.skip(str(exc))
    text = gen_layouts.generate(gen_layouts.Index(files), gen_layouts.source_version())
    assert text == Path(gen_layouts.__file__).with_name("_layouts.py").read_text(encoding="utf-8")


FAKE_METADATA = """\
from __future__ import annotations
from win32more._prelude import *
BOOL = Int32
KIND = Int32
PWSTR = String
MAX_THING_LEN: UInt32 = 4
FLAG_AS_TEXT: String = '0x00000040'
CLSID_Thing: Guid = Guid('{9C38ED61-D565-4728-AEEE-C80952F0ECDE}')
class THING(Structure):
    Name: Char * 4
    Kind: win32more.Windows.Win32.Fake.KIND
    Next: POINTER(win32more.Windows.Win32.Fake.THING)
    Inner: _Inner_e__Union
    _anonymous_ = ('Inner',)
    class _Inner_e__Union(Union):
        Flag: win32more.Windows.Win32.Fake.BOOL
        Wide: UInt64
if ARCH in 'X64,ARM64':
    class ONLY64(Structure):
        Big: UInt64
else:
    class ONLY64(Structure):
        Small: UInt32
class IThing(ComPtr):
    extends: win32more.Windows.Win32.System.Com.IUnknown
    _iid_ = Guid('{D5D23B6D-5A55-4492-9889-397A3C2D2DBC}')
    @commethod(3)
    def Poke(self, pThing: POINTER(win32more.Windows.Win32.Fake.THING),
             ppOut: POINTER(IThing)) -> Int32: ...
@winfunctype('FAKE.dll')
def MakeThing(Name: win32more.Windows.Win32.Fake.PWSTR, Count: UInt32) -> UInt32: ...
"""


def test_the_generator_reads_metadata_source_as_data(tmp_path: Path) -> None:
    module = tmp_path / "win32more" / "Windows" / "Win32" / "Fake" / "__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text(FAKE_METADATA + "raise RuntimeError('never imported')\n")
    gen = gen_layouts.Generator(gen_layouts.Index([module]))
    gen.struct("THING")
    gen.struct("ONLY64")
    assert gen.structs["THING"]["fields"] == (
        ("Name", "WCHAR[4]"),
        ("Kind", "LONG"),
        ("Next", "THING*"),
        ("Inner", "THING._Inner_e__Union"),
    )
    assert gen.structs["THING"]["anonymous"] == ("Inner",)
    assert gen.structs["THING._Inner_e__Union"]["kind"] == "union"
    assert gen.structs["ONLY64"]["fields"] == (("Big", "ULONGLONG"),)
    assert gen.interface("IThing") == {
        "iid": "d5d23b6d-5a55-4492-9889-397a3c2d2dbc",
        "base": "IUnknown",
        "methods": {
            "Poke": {
                "slot": 3,
                "params": (("pThing", "THING*"), ("ppOut", "PVOID*")),
                "returns": "LONG",
            }
        },
    }
    assert gen.function("MakeThing") == {
        "dll": "FAKE.dll",
        "params": (("Name", "PWSTR"), ("Count", "ULONG")),
        "returns": "ULONG",
    }
    assert gen.constant("MAX_THING_LEN") == 4 and gen.constant("FLAG_AS_TEXT") == 0x40
    assert gen.guid("CLSID_Thing") == "9c38ed61-d565-4728-aeee-c80952f0ecde"
    with pytest.raises(gen_layouts.MetadataError, match="NOPE"):
        gen.struct("NOPE")


def test_rendered_layouts_are_valid_python_within_100_columns() -> None:
    text = gen_layouts.render(
        "src",
        {
            "A": {
                "kind": "struct",
                "pack": 0,
                "fields": tuple((f"Field{i}", "ULONG") for i in range(30)),
                "anonymous": (),
            }
        },
        {},
        {},
        {"X": 1},
        (),
        {},
    )
    namespace: dict[str, Any] = {}
    exec(compile(text, "<layouts>", "exec"), namespace)
    assert len(namespace["STRUCTS"]["A"]["fields"]) == 30
    assert max(map(len, text.splitlines())) <= 100


# =========================================================================== marshalling


def test_text_goes_in_whole_or_not_at_all() -> None:
    portal = _structs.struct("ISCSI_TARGET_PORTALW")()
    _structs.put_text(portal, "Address", "x" * 255, True, "cp1252", "Address")
    assert _structs.get_text(portal, "Address", True, "cp1252") == "x" * 255
    with pytest.raises(_structs.TextError, match="256 characters; the field holds 255"):
        _structs.put_text(portal, "Address", "x" * 256, True, "cp1252", "Address")
    narrow = _structs.struct("ISCSI_TARGET_PORTALA")()
    _structs.put_text(narrow, "Address", "y" * 255, False, "cp1252", "Address")
    assert _structs.get_text(narrow, "Address", False, "cp1252") == "y" * 255
    with pytest.raises(_structs.TextError, match="NUL"):
        _structs.encode("a\0b", True, "cp1252")


def test_ansi_text_is_the_code_page_with_question_marks() -> None:
    assert _structs.encode("café диск", False, "cp1252") == "café ????".encode("cp1252")
    portal = portal_struct(Portal("n", "адрес", 3260), False, "cp1252")
    assert portal.Address == b"?????"  # ctypes reads a CHAR array up to its NUL


def test_a_portal_round_trips_through_its_structure() -> None:
    portal = Portal("sym", "192.0.2.10", 3260)
    assert portal_from_struct(portal_struct(portal, True, "ascii"), True, "ascii") == portal
    assert portal_from_struct(portal_struct(portal, False, "cp1252"), False, "cp1252") == portal


def test_a_portal_group_sizes_its_flexible_array() -> None:
    group = portal_group_struct([Portal("", "192.0.2.1", 3260), Portal("", "192.0.2.2", 3261)])
    assert group.Count == 2 and group.Portals[1].Socket == 3261
    assert ctypes.sizeof(group) == 4 + 2 * 1026


def test_persistent_logins_are_read_from_the_report_buffer() -> None:
    info = _structs.struct("PERSISTENT_ISCSI_LOGIN_INFOW")
    array = (info * 2)()
    for i, (inst, port, name) in enumerate([(INST0, 0, "iqn.a"), (INST1, 7, "iqn.b")]):
        _structs.put_text(array[i], "InitiatorInstance", inst, True, "ascii", "i")
        _structs.put_text(array[i], "TargetName", name, True, "ascii", "t")
        array[i].InitiatorPortNumber = port
        array[i].TargetPortal = portal_struct(Portal("", f"192.0.2.{i}", 3260), True, "ascii")
    buffer = ctypes.create_string_buffer(bytes(array))
    assert parse_persistent_logins(buffer, 2) == [
        PersistentLogin(INST0, 0, "iqn.a", Portal("", "192.0.2.0", 3260)),
        PersistentLogin(INST1, 7, "iqn.b", Portal("", "192.0.2.1", 3260)),
    ]
    with pytest.raises(ValueError, match="do not fit"):
        parse_persistent_logins(buffer, 3)


def test_sessions_are_read_through_the_pointers_in_their_buffer() -> None:
    info = _structs.struct("ISCSI_SESSION_INFOW")
    names = [_structs.c_string("iqn.x", True, "ascii"), _structs.c_string("iqn.y", True, "ascii")]
    array = (info * 2)()
    for i, name in enumerate(names):
        array[i].SessionId.AdapterUnique, array[i].SessionId.AdapterSpecific = 0xFFFF0001, i + 2
        array[i].TargetNodeName = ctypes.addressof(name)
    assert parse_sessions(array, 2) == [
        Session("00000000ffff0001-0000000000000002", "iqn.x"),
        Session("00000000ffff0001-0000000000000003", "iqn.y"),
    ]
    again = session_id_struct("00000000ffff0001-0000000000000003")
    assert session_id_text(again) == "00000000ffff0001-0000000000000003"
    with pytest.raises(ValueError):
        session_id_struct("not-a-session")


def test_report_buffers_grow_to_the_size_asked_for() -> None:
    sizes: list[int] = []

    def call(size: int) -> tuple[int, int]:
        sizes.append(size)
        return (0, size) if size >= 10_000 else (122, 10_000)

    assert fetch_sized(call) == (0, 10_000)
    assert sizes == [4096, 10_000]


def test_multi_sz_and_wide_strings() -> None:
    data = "ROOT\\A\0ROOT\\B\0\0junk".encode("utf-16-le")
    assert _structs.multi_sz(data) == ["ROOT\\A", "ROOT\\B"]
    text = _structs.c_string("héllo", True, "ascii")
    assert _structs.read_wide(ctypes.addressof(text)) == "héllo"
    assert _structs.read_wide(None) is None


def test_vds_addresses_read_as_text() -> None:
    address = _structs.struct("VDS_IPADDRESS")()
    address.type, address.ipv4Address = _layouts.CONSTANTS["VDS_IPT_IPV4"], 0xC0000214
    assert ip_text(address) == "192.0.2.20"
    address.type = _layouts.CONSTANTS["VDS_IPT_TEXT"]
    _structs.put_text(address, "wszTextAddress", "array.example", True, "ascii", "a")
    assert ip_text(address) == "array.example"
    address.type = _layouts.CONSTANTS["VDS_IPT_EMPTY"]
    assert ip_text(address) == ""


# =========================================================================== COM helpers


def test_hresults_are_unsigned() -> None:
    assert _com.u32(-2147211504) == VDS_E_ISCSI_LOGOUT_INCOMPLETE
    assert _com.failed(-2147211504) and not _com.failed(1)
    assert _com.hresult_from_win32(1312) == 0x80070520
    assert _com.hresult_from_win32(0) == 0


def test_guids_round_trip_in_windows_byte_order() -> None:
    value = _com.guid("9C38ED61-D565-4728-AEEE-C80952F0ECDE")
    assert (value.Data1, value.Data2, value.Data3) == (0x9C38ED61, 0xD565, 0x4728)
    assert bytes(value.Data4) == bytes.fromhex("aeeec80952f0ecde")
    assert _com.guid_text(value) == "9c38ed61-d565-4728-aeee-c80952f0ecde"
    assert _com.guid_key("{9C38ED61-D565-4728-AEEE-C80952F0ECDE}") == _com.guid_text(value)
    assert _com.guid_key("unknown-target-1") is None


def test_ivdsasync_wait_gives_the_operation_result_unless_wait_failed() -> None:
    assert _com.wait_completion(0, -2147211504) == VDS_E_ISCSI_LOGOUT_INCOMPLETE
    assert _com.wait_completion(0x80070005, 0) == 0x80070005


def test_async_outcomes_carry_the_pointer_as_returned() -> None:
    assert _com.async_outcome("ppAsync", AsyncResult(0, "IVdsAsync@0x1", -2147211504)) == Outcome(
        0, {"ppAsync": "IVdsAsync@0x1"}, VDS_E_ISCSI_LOGOUT_INCOMPLETE
    )
    assert _com.async_outcome("ppAsync", AsyncResult(VDS_E_ISCSI_SESSION_NOT_FOUND)) == Outcome(
        VDS_E_ISCSI_SESSION_NOT_FOUND, {"ppAsync": None}, None
    )
    leaked = _com.async_outcome("ppAsync", AsyncResult(0x80004005, "IVdsAsync@0x2", 0))
    assert leaked.outputs == {"ppAsync": "IVdsAsync@0x2"}  # so the out-params check sees it


def test_idispatch_exceptions_unwrap_to_the_member_hresult() -> None:
    disp_e_exception = 0x80020009
    assert _com.dispatch_hresult(disp_e_exception, -1610350074, 0) == 0xA0040206
    assert _com.dispatch_hresult(disp_e_exception, 0, 5) == 0x80040205
    assert _com.dispatch_hresult(disp_e_exception, 0, 0) == disp_e_exception
    assert _com.dispatch_hresult(0, 0, 0) == 0


class FakeCom:
    """Objects laid out as COM lays them out: a pointer to a vtable of C function pointers,
    each built with the metadata's prototype for its slot."""

    def __init__(self) -> None:
        self.keep: list[Any] = []
        self.released: list[str] = []
        self.count = itertools.count()

    def make(self, interface: str, impls: dict[str, Callable[..., int]]) -> int:
        methods = {
            **_layouts.INTERFACES["IUnknown"]["methods"],
            **_layouts.INTERFACES[interface]["methods"],
        }
        table = (ctypes.c_void_p * (max(m["slot"] for m in methods.values()) + 1))()
        name = f"{interface}#{next(self.count)}"
        defaults: dict[str, Callable[..., int]] = {
            "QueryInterface": lambda this, riid, out: 0x80004002,
            "AddRef": lambda this: 2,
            "Release": lambda this: self.released.append(name) or 0,
        }
        for method, decl in methods.items():
            owner = interface if method in _layouts.INTERFACES[interface]["methods"] else "IUnknown"
            _, restype, argtypes = _structs.method(owner, method)
            impl = impls.get(method) or defaults.get(method) or (lambda this, *a: 0x80004001)
            function = _com.FUNCTYPE(restype, ctypes.c_void_p, *argtypes)(impl)
            table[decl["slot"]] = ctypes.cast(function, ctypes.c_void_p)
            self.keep.append(function)
        obj = (ctypes.c_void_p * 1)(ctypes.cast(table, ctypes.c_void_p))
        self.keep += [table, obj]
        return ctypes.addressof(obj)


def test_a_vds_call_goes_through_the_metadata_slot_and_waits() -> None:
    com = FakeCom()
    seen: list[str] = []

    def wait(this: int, hr_result: Any, output: Any) -> int:
        hr_result[0] = -2147211504  # VDS_E_ISCSI_LOGOUT_INCOMPLETE as the signed HRESULT
        return 0

    async_address = com.make("IVdsAsync", {"Wait": wait})

    def logout(this: int, target: Any, pp_async: Any) -> int:
        seen.append(_com.guid_text(target))
        pp_async[0] = async_address
        return 0

    adapter = ComObject(
        com.make("IVdsIscsiInitiatorAdapter", {"LogoutFromTarget": logout}),
        "IVdsIscsiInitiatorAdapter",
    )
    result = _com.call_async(adapter, "LogoutFromTarget", _com.guid(T1_ID))
    assert seen == [T1_ID]
    assert result == AsyncResult(0, f"IVdsAsync@0x{async_address:x}", VDS_E_ISCSI_LOGOUT_INCOMPLETE)
    assert com.released == ["IVdsAsync#0"]  # the async object is released once waited on


def test_a_failed_vds_call_returns_no_async_object() -> None:
    com = FakeCom()
    group = ComObject(
        com.make(
            "IVdsIscsiPortalGroup",
            {"RemovePortal": lambda this, portal, pp: VDS_E_OBJECT_NOT_FOUND - (1 << 32)},
        ),
        "IVdsIscsiPortalGroup",
    )
    assert _com.call_async(group, "RemovePortal", _com.guid(P1_ID)) == AsyncResult(
        VDS_E_OBJECT_NOT_FOUND
    )


def test_enumerations_and_query_interface() -> None:
    com = FakeCom()
    items = [com.make("IVdsIscsiPortal", {}), com.make("IVdsIscsiPortal", {})]
    portal_iid = _structs.iid("IVdsIscsiPortal")

    def query(this: int, riid: Any, out: Any) -> int:
        if _com.guid_text(riid[0]) != portal_iid:
            return 0x80004002
        out[0] = this
        return 0

    pending = list(items)

    def next_(this: int, celt: int, objects: Any, fetched: Any) -> int:
        if not pending:
            fetched[0] = 0
            return 1  # S_FALSE
        objects[0] = pending.pop(0)
        fetched[0] = 1
        return 0

    enum = ComObject(com.make("IEnumVdsObject", {"Next": next_}), "IEnumVdsObject")
    found = _com.enumerate_objects(enum)
    assert [o.address for o in found] == items
    unknown = ComObject(com.make("IVdsIscsiPortal", {"QueryInterface": query}), "IUnknown")
    assert unknown.query("IVdsIscsiPortal") is not None
    assert unknown.query("IVdsIscsiTarget") is None
    unknown.release()
    unknown.release()  # once only
    assert com.released.count("IVdsIscsiPortal#3") == 1


class FakeDll:
    """iscsidsc.dll's exports as C function pointers with the metadata's prototypes, so the
    real marshalling in IscsiDsc runs against them."""

    def __init__(self, impls: dict[str, Callable[..., int]]) -> None:
        self.keep: list[Any] = []
        for name in FakeDllNames:
            _, restype, argtypes = _structs.function(name)
            impl = impls.get(name, lambda *a: 0)
            function = _com.FUNCTYPE(restype, *argtypes)(impl)
            self.keep.append(function)
            pointer = ctypes.cast(function, ctypes.c_void_p).value
            setattr(self, name, _com.FUNCTYPE(restype, *argtypes)(pointer))


FakeDllNames = IscsiDsc._EXPORTS


def test_iscsidsc_calls_marshal_through_the_declared_prototypes() -> None:
    seen: list[Any] = []
    info = _structs.struct("PERSISTENT_ISCSI_LOGIN_INFOW")

    def initiators(size: Any, buffer: Any) -> int:
        data = "ROOT\\ISCSIPRT\\0000_0\0\0".encode("utf-16-le")
        if size[0] * 2 < len(data):
            size[0] = len(data) // 2
            return 122  # ERROR_INSUFFICIENT_BUFFER: the caller grows and calls again
        ctypes.memmove(buffer, data, len(data))
        return 0

    def report(count: Any, array: Any, size: Any) -> int:
        count[0] = 1
        _structs.put_text(array[0], "TargetName", "iqn.x", True, "ascii", "t")
        _structs.put_text(array[0], "InitiatorInstance", INST0, True, "ascii", "i")
        array[0].InitiatorPortNumber = 3
        array[0].TargetPortal = portal_struct(Portal("", "192.0.2.5", 3260), True, "ascii")
        return 0

    def add_static(
        name: Any, alias: Any, flags: int, persist: int, mappings: Any, options: Any, group: Any
    ) -> int:
        layout = _structs.struct("ISCSI_TARGET_PORTAL_GROUPW")
        first = ctypes.cast(
            ctypes.addressof(group.contents) + layout.Portals.offset,
            ctypes.POINTER(_structs.struct("ISCSI_TARGET_PORTALW")),
        )[0]
        seen.append(
            (
                "add",
                _structs.read_wide(name),
                group[0].Count,
                portal_from_struct(first, True, "ascii"),
            )
        )
        return 0

    def remove_a(instance: Any, port: int, name: Any, portal: Any) -> int:
        seen.append(
            (
                "A",
                ctypes.string_at(instance),
                port,
                ctypes.string_at(name),
                portal[0].Address if portal else None,
            )
        )
        return ISDSC_TARGET_NOT_FOUND - (1 << 32) if port == 9 else 0

    def login(
        name: Any,
        informational: int,
        instance: Any,
        port: int,
        portal: Any,
        security: int,
        mappings: Any,
        options: Any,
        key_size: int,
        key: Any,
        persistent: int,
        session: Any,
        connection: Any,
    ) -> int:
        seen.append(
            (
                "login",
                _structs.read_wide(name),
                _structs.read_wide(instance),
                port,
                persistent,
                portal[0].Socket,
            )
        )
        return 0

    # The callbacks live as long as `dll` does: IscsiDsc keeps only the function pointers, so
    # a FakeDll left to the garbage collector frees the code they point to.
    dll = FakeDll(
        {
            "ReportIScsiInitiatorListW": initiators,
            "ReportIScsiPersistentLoginsW": report,
            "AddIScsiStaticTargetW": add_static,
            "RemoveIScsiPersistentTargetA": remove_a,
            "LoginIScsiTargetW": login,
        }
    )
    api = IscsiDsc(dll, code_page="cp1252")
    assert api.initiators() == [INST0]
    assert api.persistent_logins() == [
        PersistentLogin(INST0, 3, "iqn.x", Portal("", "192.0.2.5", 3260))
    ]
    assert info is _structs.struct("PERSISTENT_ISCSI_LOGIN_INFOW")
    portal = Portal("", "192.0.2.9", 3260)
    assert api.add_static(True, StaticTarget("iqn.y", None, 0, False, (portal,))) == 0
    assert api.login(True, Login("iqn.y", False, INST0, 1, portal, 0, None, True)) == (0, None)
    assert api.remove_persistent(False, INST0, 9, "iqn.café-диск", portal) == ISDSC_TARGET_NOT_FOUND
    assert api.remove_persistent(False, INST0, ISCSI_ALL_INITIATOR_PORTS, "iqn.z", None) == 0
    assert seen == [
        ("add", "iqn.y", 1, portal),
        ("login", "iqn.y", INST0, 1, 1, 3260),
        ("A", INST0.encode(), 9, "iqn.café-????".encode("cp1252"), b"192.0.2.9"),
        ("A", INST0.encode(), ISCSI_ALL_INITIATOR_PORTS, b"iqn.z", None),
    ]
    assert len(dll.keep) == len(FakeDllNames)  # (and `dll` is alive until here)


# =========================================================================== config


def test_config_loads_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "windows.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    config = load_config()
    assert config.path == str(path)
    assert config.lent("targets", "T1") == {"iqn": IQN1}
    assert config.lent("portals", "P1") == {"address": "192.0.2.20", "port": 3260}


def test_no_config_is_allowed_and_every_lent_object_says_where_to_name_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    config = load_config()
    assert config == Config()
    with pytest.raises(Unsupported, match=rf"targets\.T1 in the config file .*{ENV_VAR}.*iqn"):
        config.require("targets", "T1", "creating an iSCSI target needs a storage array")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping of sections"),
        ({"target": {}}, "unknown section.*target; known: initiators"),
        ({"targets": {"T1": {}}}, r"targets\.T1: missing iqn \(iqn: the iSCSI name"),
        ({"targets": {"T1": {"iqn": "x", "name": "y"}}}, r"unknown field\(s\) name"),
        ({"targets": {"T1": {"iqn": 5}}}, r"targets\.T1\.iqn: expected a string, got 5"),
        ({"portals": {"P1": {"address": "not an ip"}}}, "is not an IP address"),
        ({"portals": {"P1": {"address": "192.0.2.1", "port": True}}}, "expected an integer"),
        (
            {"ports": {"N1": {"initiator": "I9", "number": 0}}},
            "'I9' is not a name under initiators",
        ),
        (
            {"initiators": {"I1": {"instance": "X"}, "I2": {"instance": "x"}}},
            "name the same object",
        ),
        ({"initiator_adapters": {"A1": {}}}, "give name or id"),
        ({"initiator_adapters": {"A1": {"id": "nope"}}}, "is not a GUID"),
        (
            {
                "virtual_machines": {
                    "VM1": {"name": "x", "power": "on", "additions": True, "execute_access": True}
                }
            },
            "'on' is not one of",
        ),
    ],
)
def test_config_errors_name_the_entry_and_the_fix(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data)


def test_a_bad_config_file_makes_the_provider_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ProviderUnavailable, match=r"windows provider config: .*nope\.yaml"):
        provider(config=missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [unclosed", encoding="utf-8")
    with pytest.raises(ProviderUnavailable, match="not valid YAML"):
        provider(config=bad)


# =========================================================================== the ledger


def test_the_ledger_undoes_newest_first_and_past_failures() -> None:
    done: list[str] = []
    ledger = Ledger()
    ledger.add("a", "static target", lambda: done.append("a"))
    ledger.add("b", "persistent login", lambda: done.append("b"))

    def fail() -> None:
        raise OSError("refused")

    ledger.add("c", "session", fail)
    ledger.add("d", "gone already", lambda: done.append("d"))
    ledger.discard("d")
    with pytest.raises(CleanupError, match="session: OSError: refused"):
        ledger.undo_all()
    assert done == ["b", "a"] and ledger.keys() == []
    with pytest.raises(ValueError):
        ledger.add("a", "x", lambda: None) or ledger.add("a", "x", lambda: None)


def test_lazy_apis_report_why_they_are_missing_every_time() -> None:
    calls: list[int] = []

    def broken() -> Any:
        calls.append(1)
        raise OSError("service stopped")

    lazy: Lazy[Any] = Lazy("the VDS service", broken)
    for _ in range(2):
        with pytest.raises(Unsupported, match="the VDS service unavailable: OSError: service"):
            lazy.get()
    assert calls == [1] and lazy.opened is None


# =========================================================================== the spec scenarios


# Why a real machine (with the test's config) cannot build a scenario: any other Unsupported
# is a bug. A config lends each name once, so a scenario that puts N2 on another initiator
# than the config does is not applicable; faults no real machine can inject are not either.
NOT_APPLICABLE = (
    "ports.N2 is a port of I1",
    "fault 'logout_fails'",
    "fault 'provider_cache_corrupt'",
    "fault 'operation_pending'",
    "fault 'login_fails'",
    "fault 'properties_incomplete'",
    "fault 'session_device_in_use'",
    "fault 'persistent_login_store_fails'",
    "an initiator adapter cannot be created",  # the host has one adapter, the config lends A1
    "an adapter cannot be renamed",
    "a portal group's tag is the provider's to choose",
    "passed only as NULL",
    "NULL InitiatorInstance",
    "would be a network login to a target the config does not lend",
    "a session needs a reachable target",
    "is not passed to the real DLL",
    "is not passed to a real VDS provider",
    "cannot be passed through IDispatch",
    "is not in the state the step needs",  # the config lends one machine in one state
    "a virtual machine with a given guest cannot be made here",
    "step 'logon_session'",
    "GUESTOSVERSIONINFOEX** is not an automation type",
    "a NULL BSTR",
    "the initiator keeps one static target per name",
    "a hidden static target is not reported",
    "the step cannot be built here",
    "fault '",  # every fault a real machine cannot inject says why
    "name an existing one as",  # a lent object the test's config does not name
    "a VM's state is the operator's word",
)


# A step field, fault, method or argument the backend was not written for: on a real machine
# it is not applicable (never a wrong verdict), but here it is a failing test naming the spec
# and the field, so the backend follows the specs as they grow.
UNKNOWN_SHAPE = re.compile(
    r"unexpected field|unexpected argument|^method '|fault kind|"
    r"unsupported by the provider: method '|"
    r"step kind|has no fault|expected .* got|the provider does not "
    r"support this reproduction: (method|step kind|fault kind|"
    r".*unexpected)"
)


@functools.cache
def catalog() -> Any:
    """The bundled specs, loaded once: every scenario case reads them."""
    return load_catalog()


def scenario_ids() -> list[tuple[str, int]]:
    specs = catalog().specs
    return [(m, i) for m in sorted(specs) for i in range(len(specs[m].scenarios))]


def host_for(method: str) -> FakeIscsi:
    """The host's own login and session, which every case must leave alone. A report lists
    every persistent login, so its cases run on a host without logins of its own (the backend
    refuses a report that would hold one: see test_a_report_holding_host_logins_is_refused)."""
    logins = () if method.startswith("ReportIScsi") else (HOST_LOGIN,)
    return FakeIscsi(logins=logins, sessions=(Session("host-session", "iqn.other"),))


@pytest.mark.parametrize(
    ("method", "index"), scenario_ids(), ids=[f"{m}-{i}" for m, i in scenario_ids()]
)
def test_spec_scenarios_run_through_the_backend(method: str, index: int) -> None:
    """Each scenario passes on the fakes, or is not applicable for a stated reason, and the
    host is as it was afterwards; a shape the backend does not know fails, naming it."""
    specs = catalog()
    spec = specs.specs[method]
    scenario = spec.scenarios[index]
    iscsi = host_for(method)
    host_logins = list(iscsi.logins)
    vds, vpc = FakeVds(iscsi), FakeVpc()
    windows = WindowsProvider.with_apis(config=CONFIG, iscsi=iscsi, vds=vds, vpc=vpc)
    domain = specs.domain_of(spec)
    observable = tuple(c for c in windows.capabilities()["observe"] if c in domain.collections)
    subject = Subject(spec, domain, specs.codes, windows, observable)
    try:
        if scenario.calls:  # several calls: run as the plugin does, through replay
            repro = {
                "method": spec.id,
                "given": list(scenario.given),
                "calls": list(scenario.calls),
            }
            result = replay(repro, specs, windows)
            verdict = Verdict(PASSED if result.passed else "failed", result.message)
        else:
            verdict = check_scenario(subject, scenario)
    except (Unsupported, ReproError, ValueError) as exc:
        windows.close()
        if isinstance(exc, ValueError) or UNKNOWN_SHAPE.search(str(exc)):
            pytest.fail(
                f"{spec.file}: {spec.id}, scenario {scenario.name!r}: the backend does "
                f"not know this shape of the spec: {exc}"
            )
        assert any(reason in str(exc) for reason in NOT_APPLICABLE), f"{scenario.name}: {exc}"
    else:
        assert verdict.status == PASSED, f"{scenario.name}: {verdict.message}"
    windows.close()
    assert iscsi.logins == host_logins and iscsi.static == []
    assert iscsi.session_list == [Session("host-session", "iqn.other")]
    assert all(g["deleted"] for g in vds.groups.values())
    assert vpc.values == FakeVpc().values  # settings a call changed are put back


# =========================================================================== iSCSI safety


def test_a_call_that_could_remove_a_host_login_is_refused() -> None:
    iscsi = FakeIscsi(logins=(HOST_LOGIN,))
    windows = provider(iscsi=iscsi)
    instance = windows.setup({"initiator": "I1"})
    windows.setup({"port": "N1", "initiator": instance})
    args = {
        "InitiatorInstance": instance,
        "InitiatorPortNumber": ISCSI_ALL_INITIATOR_PORTS,
        "TargetName": HOST_LOGIN.target_name.upper(),
        "Portal": None,
    }
    for method in ("RemoveIScsiPersistentTargetW", "RemoveIScsiPersistentTargetA"):
        with pytest.raises(Unsupported, match="did not create"):
            windows.call(method, args)
    assert iscsi.logins == [HOST_LOGIN]
    assert not [c for c in iscsi.calls if c[0].startswith("RemoveIScsiPersistentTarget")]


def test_a_call_that_can_only_reach_created_logins_goes_ahead() -> None:
    iscsi = FakeIscsi(logins=(HOST_LOGIN,))
    windows = provider(iscsi=iscsi)
    instance = windows.setup({"initiator": "I1"})
    windows.setup({"port": "N2", "initiator": instance})
    created = windows.setup(
        {
            "persistent_target": "PT1",
            "initiator": instance,
            "port": "1",
            "target_name": HOST_LOGIN.target_name,
            "portal": {"SymbolicName": "", "Address": "192.0.2.10", "Socket": 3260},
        }
    )
    assert [r["id"] for r in windows.observe("persistent_targets")] == [created]
    outcome = windows.call(
        "RemoveIScsiPersistentTargetW",
        {
            "InitiatorInstance": instance,
            "InitiatorPortNumber": 1,
            "TargetName": HOST_LOGIN.target_name,
            "Portal": None,
        },
    )
    assert outcome == Outcome(ERROR_SUCCESS)
    assert windows.observe("persistent_targets") == []
    assert iscsi.logins == [HOST_LOGIN]


def test_cleanup_removes_only_what_was_created() -> None:
    iscsi = FakeIscsi(logins=(HOST_LOGIN,))
    iscsi.static_targets["iqn.host:static"] = False
    windows = provider(iscsi=iscsi)
    instance = windows.setup({"initiator": "I1"})
    windows.setup({"port": "N1", "initiator": instance})
    for i, name in enumerate(["iqn.new:one", "iqn.host:static"]):
        windows.setup(
            {
                "persistent_target": f"PT{i}",
                "initiator": instance,
                "port": "0",
                "target_name": name,
                "portal": {"SymbolicName": "", "Address": "192.0.2.9", "Socket": 3260},
            }
        )
    windows.reset()
    assert iscsi.logins == [HOST_LOGIN] and iscsi.static == ["iqn.host:static"]
    assert ("RemoveIScsiStaticTargetW", "iqn.new:one") in iscsi.calls
    assert ("RemoveIScsiStaticTargetW", "iqn.host:static") not in iscsi.calls


def test_a_login_the_host_already_has_is_not_adopted() -> None:
    iscsi = FakeIscsi(logins=(HOST_LOGIN,))
    windows = provider(iscsi=iscsi)
    instance = windows.setup({"initiator": "I1"})
    windows.setup({"port": "N1", "initiator": instance})
    with pytest.raises(Unsupported, match="already has a persistent login"):
        windows.setup(
            {
                "persistent_target": "PT1",
                "initiator": instance,
                "port": "0",
                "target_name": HOST_LOGIN.target_name,
                "portal": HOST_LOGIN.portal.as_dict(),
            }
        )
    windows.reset()
    assert iscsi.logins == [HOST_LOGIN]


def test_unbuildable_iscsi_steps_say_why() -> None:
    windows = provider(config={"initiators": {"I1": {"instance": "ROOT\\ISCSIPRT\\9999_0"}}})
    with pytest.raises(
        Unsupported,
        match=r"initiator \(an HBA instance\) cannot be created.*"
        r"initiators\.I2",
    ):
        windows.setup({"initiator": "I2"})
    with pytest.raises(Unsupported, match="is not an initiator on this host"):
        windows.setup({"initiator": "I1"})


def test_text_an_api_cannot_carry_is_not_applicable() -> None:
    windows = provider()
    instance = windows.setup({"initiator": "I1"})
    with pytest.raises(Unsupported, match="the field holds 255"):
        windows.call(
            "RemoveIScsiPersistentTargetW",
            {
                "InitiatorInstance": instance,
                "InitiatorPortNumber": 0,
                "TargetName": "iqn.x",
                "Portal": {"SymbolicName": "", "Address": "a" * 256, "Socket": 1},
            },
        )


# =========================================================================== VDS safety


def test_a_target_with_a_session_not_created_here_is_not_lent() -> None:
    """The step's state (no session, or only ours) cannot hold, and a logout would end the
    host's session: the target is refused at its step, and no call reaches VDS."""
    iscsi = FakeIscsi(sessions=(Session("host-session", IQN1),))
    vds = FakeVds(iscsi)
    windows = provider(iscsi=iscsi, vds=vds)
    windows.setup({"initiator_adapter": "A1"})
    with pytest.raises(Unsupported, match=r"1 session\(s\) of the host's own"):
        windows.setup({"target": "T1"})
    assert vds.calls == []
    windows.close()
    assert iscsi.session_list == [Session("host-session", IQN1)]


def test_logout_is_refused_when_a_session_appeared_that_was_not_created_here() -> None:
    iscsi = FakeIscsi()
    vds = FakeVds(iscsi)
    windows = provider(iscsi=iscsi, vds=vds)
    adapter = windows.setup({"initiator_adapter": "A1"})
    target = windows.setup({"target": "T1"})
    windows.setup({"session": "S1", "target": target})
    iscsi.session_list.append(Session("host-session", IQN1))  # the host logged in meanwhile
    with pytest.raises(Unsupported, match=r"1 session.*did not create"):
        windows.call(
            "IVdsIscsiInitiatorAdapter::LogoutFromTarget", {"this": adapter, "targetId": target}
        )
    assert ("LogoutFromTarget", target) not in vds.calls
    windows.close()
    assert iscsi.session_list == [Session("host-session", IQN1)]


def test_vds_objects_the_config_does_not_lend_are_not_used() -> None:
    windows = provider(config={})
    with pytest.raises(Unsupported, match="creating an iSCSI target needs a storage array"):
        windows.setup({"target": "T1"})
    adapter = windows.setup({"initiator_adapter": "A1"})  # the host's only adapter
    assert adapter == ADAPTER
    with pytest.raises(Unsupported, match="a real target the config does not lend"):
        windows.call(
            "IVdsIscsiInitiatorAdapter::LogoutFromTarget", {"this": adapter, "targetId": T2_ID}
        )
    with pytest.raises(Unsupported, match="only on portal groups this provider created"):
        windows.call(
            "IVdsIscsiPortalGroup::RemovePortal", {"this": str(uuid.uuid4()), "portalId": P1_ID}
        )


def test_object_deleted_is_built_only_on_a_group_created_here() -> None:
    iscsi = FakeIscsi()
    vds = FakeVds(iscsi)
    windows = provider(iscsi=iscsi, vds=vds)
    target = windows.setup({"target": "T1"})
    with pytest.raises(Unsupported, match="only for a portal group this provider created"):
        windows.setup({"fault": "object_deleted", "object": target})
    group = windows.setup({"portal_group": "G1", "target": target, "portals": []})
    assert windows.setup({"fault": "object_deleted", "object": group}).startswith("fault-")
    # deleted behind the caller's pointer: still the caller's group, of the same target
    assert windows.observe("portal_groups") == [
        {"id": group, "target": target, "tag": 0, "portals": []}
    ]
    windows.reset()
    assert [c for c in vds.calls if c[0] == "Delete"] == [("Delete", group)]  # deleted once
    assert group in vds.forgotten


@pytest.mark.parametrize("fault", ["logout_fails", "provider_cache_corrupt", "operation_pending"])
def test_faults_a_real_machine_cannot_inject_are_not_applicable(fault: str) -> None:
    with pytest.raises(Unsupported, match=f"fault '{fault}': "):
        provider().setup({"fault": fault})


# =========================================================================== Virtual PC


def test_without_virtual_pc_every_step_and_call_says_so() -> None:
    windows = provider()
    with pytest.raises(Unsupported, match="gone since Windows 8"):
        windows.setup(
            {
                "virtual_machine": "VM1",
                "power": "running",
                "additions": True,
                "execute_access": True,
            }
        )
    with pytest.raises(Unsupported, match="not registered"):
        windows.call("IVMGuestOS::Logoff", {"this": "XP Mode"})
    assert MISSING.startswith("Windows Virtual PC is not installed")


def test_a_lent_virtual_machine_must_be_as_the_step_needs() -> None:
    vpc = FakeVpc(completion=0x80070520)
    windows = provider(vpc=vpc)
    with pytest.raises(Unsupported, match="power: step 'off', machine 'running'"):
        windows.setup(
            {"virtual_machine": "VM1", "power": "off", "additions": True, "execute_access": True}
        )
    vm = windows.setup(
        {"virtual_machine": "VM1", "power": "running", "additions": True, "execute_access": True}
    )
    assert windows.call("IVMGuestOS::Logoff", {"this": vm}) == Outcome(
        0, {"outLogoffTask": "IVMTask@0x1"}, 0x80070520
    )
    with pytest.raises(Unsupported, match="NULL outLogoffTask"):
        windows.call("IVMGuestOS::Logoff", {"this": vm, "outLogoffTask": None})
    with pytest.raises(Unsupported, match="credentials"):
        windows.setup({"logon_session": "L1", "vm": vm})
    with pytest.raises(Unsupported, match="not a machine this case borrowed"):
        windows.call("IVMGuestOS::Logoff", {"this": "Other VM"})


# =========================================================================== on Windows


@needs_windows
def test_on_windows_the_provider_starts_and_lists_its_capabilities() -> None:
    windows = load("conformance_providers.windows:WindowsProvider")
    try:
        assert "RemoveIScsiPersistentTargetW" in windows.capabilities()["methods"]
        windows.reset()
    finally:
        windows.close()


@needs_windows
def test_on_windows_wchar_is_the_two_bytes_the_layouts_use() -> None:
    assert ctypes.sizeof(ctypes.c_wchar) == 2
    assert ctypes.sizeof(_structs.struct("ISCSI_TARGET_PORTALW")) == 2 * 256 + 2 * 256 + 2


@needs_windows
def test_on_windows_iscsidsc_answers() -> None:
    from conformance_providers.windows._iscsi import IscsiDsc

    try:
        api = IscsiDsc()
        initiators = api.initiators()
        logins = api.persistent_logins()
    except OSError as exc:  # the iSCSI initiator service may be stopped on a runner
        pytest.skip(f"iSCSI initiator service unavailable: {exc}")
    assert all(isinstance(i, str) for i in initiators)
    assert all(isinstance(g, PersistentLogin) for g in logins)
    assert api.code_page.startswith("cp")


@needs_windows
def test_on_windows_unknown_initiator_gives_the_documented_status() -> None:
    from conformance_providers.windows._iscsi import IscsiDsc

    try:
        api = IscsiDsc()
        api.initiators()
    except OSError as exc:
        pytest.skip(f"iSCSI initiator service unavailable: {exc}")
    status = api.remove_persistent(
        True, "ROOT\\NO_SUCH_INITIATOR\\0000_0", 0, "iqn.1991-05.com.example:none", None
    )
    assert status != ERROR_SUCCESS  # nothing of the host's can match this initiator


@needs_windows
def test_on_windows_com_initialises_and_virtual_pc_is_reported_missing() -> None:
    from conformance_providers.windows._com import Ole
    from conformance_providers.windows._vpc import VirtualPc

    ole = Ole()
    try:
        try:
            VirtualPc(ole)
        except Unsupported as exc:
            assert "not registered" in str(exc)
    finally:
        ole.close()


@needs_windows
def test_on_windows_vds_loads_or_says_why() -> None:
    from conformance_providers.windows._com import ComError, Ole
    from conformance_providers.windows._vds import VdsService

    ole = Ole()
    try:
        try:
            service = VdsService(ole)
        except (ComError, Unsupported) as exc:
            pytest.skip(f"VDS unavailable on this machine: {exc}")
        try:
            assert all(isinstance(name, str) for _, name in service.adapters())
        finally:
            service.close()
    finally:
        ole.close()


# ==================================================================== a host with nothing lent


def test_a_host_with_no_config_and_no_apis_is_not_applicable_never_failed() -> None:
    """A Windows host without a config file, where the APIs are missing (VDS and Virtual PC
    not given; iscsidsc with nothing on it): every check of every method the backend claims,
    the planned family sequences and the exploring machines included, passes or is not
    applicable; none fails (the machine used to send steps that named an object whose own
    step was Unsupported)."""
    from conformance.engine.kinds import Target, kinds_for
    from conformance.engine.sequence_run import check_sequences
    from conformance.engine.stateful import check_stateful
    from conformance.engine.verdict import Settings

    windows = WindowsProvider.with_apis(config={}, iscsi=FakeIscsi(), vds=None, vpc=None)
    catalog = load_catalog()
    caps = windows.capabilities()
    config = Settings(machine_runs=5, seed=3)
    verdicts: dict[str, Verdict] = {}
    by_family: dict[str, list[Subject]] = {}
    for spec in catalog.specs.values():
        if spec.id not in caps["methods"]:
            continue
        domain = catalog.domain_of(spec)
        observable = tuple(c for c in caps["observe"] if c in domain.collections)
        subject = Subject(spec, domain, catalog.codes, windows, observable, config)
        by_family.setdefault(spec.family, []).append(subject)
        for scenario in spec.scenarios:
            if not scenario.calls:
                verdicts[f"{spec.id}::scenario::{scenario.name}"] = _verdict(
                    lambda s=subject, sc=scenario: check_scenario(s, sc)
                )
        for kind in kinds_for(spec, config):
            verdicts[f"{spec.id}::{kind.name}"] = _verdict(
                lambda k=kind, s=subject: k.run(Target(s, catalog=catalog))
            )
    for family, subjects in by_family.items():
        domain = catalog.domains[family]
        verdicts[f"{family}::sequences"] = _verdict(
            lambda s=subjects, d=domain: check_sequences(s, d)
        )
        verdicts[f"{family}::machine"] = _verdict(lambda s=subjects, d=domain: check_stateful(s, d))
    assert verdicts
    failed = {
        n: v.message for n, v in verdicts.items() if v.status not in (PASSED, "not_applicable")
    }
    assert not failed


def _verdict(run: Callable[[], Verdict]) -> Verdict:
    from conformance.engine.verdict import NotApplicable

    try:
        return run()
    except (NotApplicable, Unsupported) as exc:
        return Verdict("not_applicable", str(exc))


def test_a_pointer_to_a_structure_is_a_pointer_whichever_structure_is_built_first() -> None:
    """VARIANT holds a VARIANT* (laid out as a plain pointer while VARIANT is being built);
    that placeholder once stayed in the type cache, so a process that built VARIANT before
    DISPPARAMS got DISPPARAMS.rgvarg as c_void_p and every IDispatch::Invoke raised TypeError
    (found by the COM double under Wine). Each order in a fresh process."""
    import subprocess

    probe = (
        "from conformance_providers.windows import _structs\n"
        "import sys\n"
        "for name in sys.argv[1:]:\n"
        "    _structs.struct(name)\n"
        "print(dict(_structs.struct('DISPPARAMS')._fields_)['rgvarg'].__name__)\n"
    )
    for order in (["VARIANT", "DISPPARAMS"], ["DISPPARAMS", "VARIANT"]):
        found = subprocess.run(
            [sys.executable, "-c", probe, *order], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert found == "LP_VARIANT", order
