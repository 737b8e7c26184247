"""VDS iSCSI (vds.h) through COM: initiator adapters, targets, portals, portal groups, sessions.

`VdsService` is the Windows-only part: CLSID_VdsLoader -> IVdsServiceLoader::LoadService ->
IVdsService (waited until ready) -> IVdsServiceIscsi for initiator adapters, and hardware
providers -> sub-systems -> IVdsSubSystemIscsi for targets and portals, each call through the
metadata's vtable slots. `VdsFamily` is plain Python: targets, portals, adapters and their
initiator portals are borrowed from the config; sessions (LoginToTarget) and portal groups
(CreatePortalGroup + AddPortal) are created on borrowed objects and undone through the ledger;
every IVdsIscsiInitiatorAdapter and IVdsIscsiPortalGroup method is called, and none in a way that
could end a session or change a group this provider did not create.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts, _structs
from ._com import (
    GUID_NULL,
    AsyncResult,
    ComError,
    ComObject,
    Ole,
    async_outcome,
    call_async,
    enumerate_objects,
    failed,
    guid,
    guid_key,
    guid_text,
    hex32,
    wait_with_output,
)
from ._config import Config, Lazy, Ledger, exact_fields
from ._iscsi import IscsiApi

ADAPTER, GROUP = "IVdsIscsiInitiatorAdapter", "IVdsIscsiPortalGroup"
LOGOUT_FROM_TARGET = f"{ADAPTER}::LogoutFromTarget"
REMOVE_PORTAL = f"{GROUP}::RemovePortal"
C = _layouts.CONSTANTS

_FAULT_REASONS = {
    "logout_fails": "a real initiator cannot be told to refuse the logout of one session",
    "provider_cache_corrupt": "corrupting a hardware provider's cache needs the vendor's own "
    "test hooks",
    "operation_pending": "VDS offers no way to hold an operation pending on an object",
    "login_fails": "a real target cannot be told to refuse one login on demand",
    "properties_incomplete": "a device cannot be made to go away half-way on demand",
}


@dataclass(frozen=True)
class LoginRequest:
    """IVdsIscsiInitiatorAdapter::LoginToTarget's arguments (VDS_OBJECT_IDs as GUID text)."""

    login_type: int
    target: str
    target_portal: str
    initiator_portal: str
    flags: int
    header_digest: bool
    data_digest: bool
    auth_type: int


def manual_login(target: str) -> LoginRequest:
    """The login a `session` step makes: manual, the initiator choosing both portals."""
    return LoginRequest(
        C["VDS_ILT_MANUAL"], target, GUID_NULL, GUID_NULL, 0, False, False, C["VDS_IAT_NONE"]
    )


def ip_text(address: Any) -> str:
    """VDS_IPADDRESS -> its address as text (ipv4Address read as a number: 10.0.0.1 is
    0x0A000001); a portal that matches nothing is reported with the addresses seen, so a
    reading that differs on some provider shows at once."""
    kind = address.type
    if kind == C["VDS_IPT_TEXT"]:
        return _structs.get_text(address, "wszTextAddress", True, "ascii")
    if kind == C["VDS_IPT_IPV4"]:
        return str(ipaddress.IPv4Address(address.ipv4Address))
    if kind == C["VDS_IPT_IPV6"]:
        return str(ipaddress.IPv6Address(bytes(address.ipv6Address)))
    return ""


def same_address(seen: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(seen) == ipaddress.ip_address(wanted)
    except ValueError:
        return seen.casefold() == wanted.casefold()


# --------------------------------------------------------------------------- the service


class VdsApi(Protocol):
    """The VDS calls the family needs (a fake stands in for it in tests)."""

    def adapters(self) -> list[tuple[str, str]]: ...  # (id, name)
    def targets(self) -> list[tuple[str, str]]: ...  # (id, iqn)
    def portals(self) -> list[tuple[str, str, int]]: ...  # (id, address, port)
    # (hresult, [(id, address)] of the adapter's initiator portals, None on failure)
    def initiator_portals(self, adapter: str) -> tuple[int, list[tuple[str, str]] | None]: ...
    def adapter_properties(self, adapter: str) -> tuple[int, str | None, str | None]: ...
    def login(self, adapter: str, request: LoginRequest) -> AsyncResult: ...
    def logout_from_target(self, adapter: str, target: str) -> AsyncResult: ...
    def create_portal_group(self, target: str) -> tuple[AsyncResult, str | None]: ...
    def add_portal(self, group: str, portal: str) -> AsyncResult: ...
    def remove_portal(self, group: str, portal: str) -> AsyncResult: ...
    def delete_portal_group(self, group: str) -> AsyncResult: ...
    def group_properties(self, group: str) -> tuple[int, str | None, int | None]: ...
    def group_target(self, group: str) -> tuple[int, str | None]: ...
    def group_portals(self, group: str) -> tuple[int, list[str] | None]: ...
    def forget(self, object_id: str) -> None: ...


class VdsService:
    """The VDS service on this machine; constructing it needs Windows and a running VDS."""

    def __init__(self, ole: Ole) -> None:
        self.ole = ole
        self._objects: dict[str, ComObject] = {}  # VDS_OBJECT_ID -> the interface held
        with ole.create(
            guid(_layouts.GUIDS["CLSID_VdsLoader"]), "IVdsServiceLoader", C["CLSCTX_LOCAL_SERVER"]
        ) as loader:
            pointer = ctypes.c_void_p()
            loader.check("LoadService", None, ctypes.byref(pointer))
        self.service = ComObject(pointer.value, "IVdsService")
        self.service.check("WaitForServiceReady")
        iscsi = self.service.query("IVdsServiceIscsi")
        if iscsi is None:
            raise Unsupported("this VDS has no iSCSI service (IVdsServiceIscsi)")
        self.iscsi = iscsi

    def _each(self, owner: ComObject, method: str, interface: str, *args: Any) -> list[ComObject]:
        hresult, found = self._try_each(owner, method, interface, *args)
        if found is None:
            raise ComError(f"{owner.interface}::{method}", hresult)
        return found

    def _try_each(
        self, owner: ComObject, method: str, interface: str, *args: Any
    ) -> tuple[int, list[ComObject] | None]:
        """A Query* method's HRESULT and, when it succeeded, every object it enumerates."""
        pointer = ctypes.c_void_p()
        hresult = owner.call(method, *args, ctypes.byref(pointer))
        if failed(hresult) or not pointer.value:
            return hresult, None
        found = []
        with ComObject(pointer.value, "IEnumVdsObject") as enum:
            for unknown in enumerate_objects(enum):
                with unknown:
                    obj = unknown.query(interface)
                if obj is not None:
                    found.append(obj)
        return hresult, found

    def _keep(self, object_id: str, obj: ComObject) -> str:
        old = self._objects.pop(object_id, None)
        if old is not None:
            old.release()
        self._objects[object_id] = obj
        return object_id

    def _held(self, object_id: str) -> ComObject:
        obj = self._objects.get(object_id)
        if obj is None:
            raise Unsupported(f"no interface pointer is held for {object_id}")
        return obj

    def _subsystems(self) -> list[ComObject]:
        out = []
        for provider in self._each(
            self.service, "QueryProviders", "IVdsHwProvider", C["VDS_QUERY_HARDWARE_PROVIDERS"]
        ):
            with provider:
                for subsystem in self._each(provider, "QuerySubSystems", "IUnknown"):
                    with subsystem:
                        iscsi = subsystem.query("IVdsSubSystemIscsi")
                    if iscsi is not None:
                        out.append(iscsi)
        return out

    def adapters(self) -> list[tuple[str, str]]:
        out = []
        for adapter in self._each(
            self.iscsi, "QueryInitiatorAdapters", "IVdsIscsiInitiatorAdapter"
        ):
            prop = _structs.struct("VDS_ISCSI_INITIATOR_ADAPTER_PROP")()
            adapter.check("GetProperties", ctypes.byref(prop))
            name = self.ole.take_wide(prop.pwszName) or ""
            out.append((self._keep(guid_text(prop.id), adapter), name))
        return out

    def targets(self) -> list[tuple[str, str]]:
        out = []
        for subsystem in self._subsystems():
            with subsystem:
                for target in self._each(subsystem, "QueryTargets", "IVdsIscsiTarget"):
                    prop = _structs.struct("VDS_ISCSI_TARGET_PROP")()
                    target.check("GetProperties", ctypes.byref(prop))
                    iqn = self.ole.take_wide(prop.pwszIscsiName) or ""
                    self.ole.take_wide(prop.pwszFriendlyName)
                    out.append((self._keep(guid_text(prop.id), target), iqn))
        return out

    def portals(self) -> list[tuple[str, str, int]]:
        out = []
        for subsystem in self._subsystems():
            with subsystem:
                for portal in self._each(subsystem, "QueryPortals", "IVdsIscsiPortal"):
                    prop = _structs.struct("VDS_ISCSI_PORTAL_PROP")()
                    portal.check("GetProperties", ctypes.byref(prop))
                    out.append(
                        (
                            self._keep(guid_text(prop.id), portal),
                            ip_text(prop.address),
                            int(prop.address.ulPort),
                        )
                    )
        return out

    def initiator_portals(self, adapter: str) -> tuple[int, list[tuple[str, str]] | None]:
        hresult, found = self._try_each(
            self._held(adapter), "QueryInitiatorPortals", "IVdsIscsiInitiatorPortal"
        )
        if found is None:
            return hresult, None
        out = []
        for portal in found:
            with portal:
                prop = _structs.struct("VDS_ISCSI_INITIATOR_PORTAL_PROP")()
                portal.check("GetProperties", ctypes.byref(prop))
                out.append((guid_text(prop.id), ip_text(prop.address)))
        return hresult, out

    def adapter_properties(self, adapter: str) -> tuple[int, str | None, str | None]:
        prop = _structs.struct("VDS_ISCSI_INITIATOR_ADAPTER_PROP")()
        hresult = self._held(adapter).call("GetProperties", ctypes.byref(prop))
        if failed(hresult):
            return hresult, None, None
        return hresult, guid_text(prop.id), self.ole.take_wide(prop.pwszName)

    def login(self, adapter: str, request: LoginRequest) -> AsyncResult:
        return call_async(
            self._held(adapter),
            "LoginToTarget",
            request.login_type,
            guid(request.target),
            guid(request.target_portal),
            guid(request.initiator_portal),
            request.flags,
            int(request.header_digest),
            int(request.data_digest),
            request.auth_type,
        )

    def logout_from_target(self, adapter: str, target: str) -> AsyncResult:
        return call_async(self._held(adapter), "LogoutFromTarget", guid(target))

    def create_portal_group(self, target: str) -> tuple[AsyncResult, str | None]:
        pointer = ctypes.c_void_p()
        hresult = self._held(target).call("CreatePortalGroup", ctypes.byref(pointer))
        if failed(hresult) or not pointer.value:
            return AsyncResult(hresult), None
        handle = ComObject(pointer.value, "IVdsAsync")
        name = repr(handle)
        completion, output = wait_with_output(handle)
        result = AsyncResult(hresult, name, completion)
        if (
            failed(completion)
            or output.type != C["VDS_ASYNCOUT_CREATEPORTALGROUP"]
            or not output.cpg.pPortalGroupUnk
        ):
            return result, None
        with ComObject(output.cpg.pPortalGroupUnk, "IUnknown") as unknown:
            group = unknown.query("IVdsIscsiPortalGroup")
        if group is None:
            return result, None
        prop = _structs.struct("VDS_ISCSI_PORTALGROUP_PROP")()
        group.check("GetProperties", ctypes.byref(prop))
        return result, self._keep(guid_text(prop.id), group)

    def add_portal(self, group: str, portal: str) -> AsyncResult:
        return call_async(self._held(group), "AddPortal", guid(portal))

    def remove_portal(self, group: str, portal: str) -> AsyncResult:
        return call_async(self._held(group), "RemovePortal", guid(portal))

    def delete_portal_group(self, group: str) -> AsyncResult:
        return call_async(self._held(group), "Delete")

    def group_properties(self, group: str) -> tuple[int, str | None, int | None]:
        prop = _structs.struct("VDS_ISCSI_PORTALGROUP_PROP")()
        hresult = self._held(group).call("GetProperties", ctypes.byref(prop))
        if failed(hresult):
            return hresult, None, None
        return hresult, guid_text(prop.id), int(prop.tag)

    def group_target(self, group: str) -> tuple[int, str | None]:
        pointer = ctypes.c_void_p()
        hresult = self._held(group).call("GetTarget", ctypes.byref(pointer))
        if failed(hresult) or not pointer.value:
            return hresult, None
        with ComObject(pointer.value, "IVdsIscsiTarget") as target:
            prop = _structs.struct("VDS_ISCSI_TARGET_PROP")()
            target.check("GetProperties", ctypes.byref(prop))
            self.ole.take_wide(prop.pwszIscsiName)
            self.ole.take_wide(prop.pwszFriendlyName)
        return hresult, guid_text(prop.id)

    def group_portals(self, group: str) -> tuple[int, list[str] | None]:
        hresult, found = self._try_each(
            self._held(group), "QueryAssociatedPortals", "IVdsIscsiPortal"
        )
        if found is None:
            return hresult, None
        ids = []
        for portal in found:
            with portal:
                prop = _structs.struct("VDS_ISCSI_PORTAL_PROP")()
                portal.check("GetProperties", ctypes.byref(prop))
                ids.append(guid_text(prop.id))
        return hresult, ids

    def forget(self, object_id: str) -> None:
        obj = self._objects.pop(object_id, None)
        if obj is not None:
            obj.release()

    def close(self) -> None:
        for object_id in list(self._objects):
            self.forget(object_id)
        self.iscsi.release()
        self.service.release()


# --------------------------------------------------------------------------- the family


def _guid_arg(value: Any, name: str) -> str:
    """A VDS_OBJECT_ID argument: GUID text, or 0 (GUID_NULL's 128-bit value in the specs)."""
    if value == 0 and not isinstance(value, bool):
        return GUID_NULL
    key = guid_key(value)
    if key is None:
        raise Unsupported(f"{name} {value!r} is not a GUID; VDS_OBJECT_ID is one")
    return key


def _code(result: AsyncResult) -> int:
    """The failure an async call reports, wherever it arrived (0 when it succeeded)."""
    if failed(result.hresult):
        return result.hresult
    return result.completion or 0


class VdsFamily:
    """The vds-iscsi family on a real VDS service."""

    steps = ("initiator_adapter", "initiator_portal", "target", "session", "portal", "portal_group")
    faults = (*_FAULT_REASONS, "object_deleted")
    collections = (
        "initiator_adapters",
        "initiator_portals",
        "targets",
        "sessions",
        "portals",
        "portal_groups",
    )
    methods = tuple(
        f"{ADAPTER}::{m}"
        for m in ("GetProperties", "QueryInitiatorPortals", "LoginToTarget", "LogoutFromTarget")
    ) + tuple(
        f"{GROUP}::{m}"
        for m in (
            "GetProperties",
            "GetTarget",
            "QueryAssociatedPortals",
            "AddPortal",
            "RemovePortal",
            "Delete",
        )
    )

    def __init__(self, config: Config, api: Lazy[VdsApi], iscsi: Lazy[IscsiApi]) -> None:
        self.config = config
        self.api = api
        self.iscsi = iscsi
        self.ledger = Ledger()
        self._makers: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
            "initiator_adapter": self._borrow_adapter,
            "initiator_portal": self._borrow_ip,
            "target": self._borrow_target,
            "portal": self._borrow_portal,
            "session": self._create_session,
            "portal_group": self._create_group,
        }
        self._handlers: dict[str, Callable[[str, Mapping[str, Any]], Outcome]] = {
            f"{ADAPTER}::GetProperties": self._adapter_properties,
            f"{ADAPTER}::QueryInitiatorPortals": self._query_initiator_portals,
            f"{ADAPTER}::LoginToTarget": self._login_to_target,
            LOGOUT_FROM_TARGET: self._logout_from_target,
            f"{GROUP}::GetProperties": self._group_properties,
            f"{GROUP}::GetTarget": self._group_target,
            f"{GROUP}::QueryAssociatedPortals": self._group_portals,
            f"{GROUP}::AddPortal": self._add_portal,
            REMOVE_PORTAL: self._remove_portal,
            f"{GROUP}::Delete": self._delete_group,
        }
        self._observers: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "initiator_adapters": self._observe_adapters,
            "initiator_portals": lambda: [
                {"id": p, "adapter": a} for p, a in self._initiator_portals.values()
            ],
            "targets": self._observe_targets,
            "portals": lambda: [{"id": p} for p in self._portals.values()],
            "sessions": self._observe_sessions,
            "portal_groups": self._observe_groups,
        }
        self.reset_names()

    def reset_names(self) -> None:
        self._adapters: dict[str, str] = {}  # scenario name -> VDS id (borrowed)
        self._names: dict[str, tuple[str, str]] = {}  # adapter id -> (step's name, real name)
        self._initiator_portals: dict[str, tuple[str, str]] = {}  # name -> (id, adapter id)
        self._targets: dict[str, tuple[str, str]] = {}  # scenario name -> (id, iqn) (borrowed)
        self._portals: dict[str, str] = {}  # scenario name -> id (borrowed)
        self._sessions: dict[str, str] = {}  # named session id -> target id (created)
        self._unnamed: dict[str, str] = {}  # session a login made, no name -> target id
        self._groups: dict[str, str] = {}  # group id -> target id (created, not deleted)
        self._tags: dict[str, tuple[int, int]] = {}  # group id -> (step's tag, real tag)
        # groups deleted while the pointer is held -> (target as the model keeps it: None
        # after Delete, the old one after the object_deleted fault; its last portals)
        self._deleted: dict[str, tuple[str | None, list[str]]] = {}
        self._fault_serial = itertools.count(1)

    def reset(self) -> None:
        try:
            self.ledger.undo_all()
        finally:
            api = self.api.opened
            if api is not None:
                for group in [*self._groups, *self._deleted]:
                    api.forget(group)
            self.reset_names()

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, name: str, fields: Mapping[str, Any]) -> str:
        maker = self._makers.get(kind)
        if maker is None:
            raise Unsupported(f"vds-iscsi step {kind!r}")
        return maker(name, fields)

    def _borrow_adapter(self, name: str, fields: Mapping[str, Any]) -> str:
        """A lent adapter. Its name cannot be chosen: the step's name is kept beside the real
        one, and only what reads the name (GetProperties, observing adapters) refuses when
        they differ, so a case that never reads it still runs."""
        exact_fields(fields, "initiator_adapter", (), ("name",))
        found = self.api.get().adapters()
        entry = self.config.lent("initiator_adapters", name)
        if entry is None:
            taken = set(self._adapters.values())
            free = [a for a in found if a[0] not in taken]
            if len(found) != 1 or not free:
                self.config.require(
                    "initiator_adapters",
                    name,
                    "an initiator adapter cannot be created, and this host has "
                    f"{len(found)} to choose from",
                )
            match = free[0]
        else:
            match = next(
                (
                    a
                    for a in found
                    if entry.get("id") == a[0]
                    or ("id" not in entry and entry["name"].casefold() == a[1].casefold())
                ),
                None,
            )
            if match is None:
                raise Unsupported(
                    f"initiator_adapters.{name} matches none of this host's "
                    f"adapters: {[f'{n} ({i})' for i, n in found]}"
                )
        adapter = self._remember(self._adapters, name, match[0])
        self._names[adapter] = (str(fields.get("name", match[1])), match[1])
        return adapter

    def _borrow_ip(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "initiator_portal", ("adapter",))
        entry = self.config.require(
            "initiator_portals",
            name,
            "an initiator portal is an adapter's network address and cannot be created",
        )
        adapter = guid_key(fields["adapter"])
        if adapter is None or adapter != self._adapters.get(entry["adapter"]):
            raise Unsupported(
                f"initiator_portals.{name} is a portal of {entry['adapter']}, but "
                f"the step asks for it on {fields['adapter']!r}"
            )
        hresult, found = self.api.get().initiator_portals(adapter)
        for portal_id, address in found or []:
            if same_address(address, entry["address"]):
                if portal_id in {p for p, _ in self._initiator_portals.values()}:
                    raise Unsupported(f"{portal_id} already stands for another name")
                self._initiator_portals[name] = (portal_id, adapter)
                return portal_id
        raise Unsupported(
            f"initiator_portals.{name}: the adapter has no initiator portal at "
            f"{entry['address']} ({hex32(hresult)}; seen: {found})"
        )

    def _borrow_target(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "target", (), ("logged_in",))
        entry = self.config.require(
            "targets",
            name,
            "creating an iSCSI target needs a storage array (a VDS hardware provider's sub-system)",
        )
        found = self.api.get().targets()
        target_id = next((t for t, iqn in found if iqn.casefold() == entry["iqn"].casefold()), None)
        if target_id is None:
            raise Unsupported(
                f"targets.{name}: no VDS hardware provider exposes "
                f"{entry['iqn']!r} (targets seen: {[iqn for _, iqn in found]})"
            )
        foreign = self._sessions_to(entry["iqn"])
        if foreign:
            raise Unsupported(
                f"targets.{name} ({entry['iqn']}) has {len(foreign)} session(s) "
                "of the host's own; the step's state cannot hold, and they are "
                "never ended"
            )
        self._targets[name] = (target_id, entry["iqn"])
        if fields.get("logged_in"):
            self._login(self._login_adapter(), manual_login(target_id), named=False)
        return target_id

    def _sessions_to(self, iqn: str) -> list[str]:
        """Sessions to a target that this provider did not open."""
        ours = {*self._sessions, *self._unnamed}
        return [
            s.id
            for s in self.iscsi.get().sessions()
            if s.target.casefold() == iqn.casefold() and s.id not in ours
        ]

    def _borrow_portal(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "portal", ())
        entry = self.config.require(
            "portals", name, "a portal belongs to a storage array and cannot be created through VDS"
        )
        found = self.api.get().portals()
        for portal_id, address, port in found:
            if same_address(address, entry["address"]) and port == entry["port"]:
                return self._remember(self._portals, name, portal_id)
        raise Unsupported(
            f"portals.{name}: no portal at {entry['address']}:{entry['port']} "
            f"(portals seen: {[f'{a}:{p}' for _, a, p in found]})"
        )

    def _remember(self, pool: dict[str, str], name: str, object_id: str) -> str:
        if object_id in pool.values():
            raise Unsupported(f"{object_id} already stands for another name in this case")
        pool[name] = object_id
        return object_id

    def _target_ref(self, value: Any) -> str:
        key = guid_key(value)
        if key is None or key not in {t for t, _ in self._targets.values()}:
            raise Unsupported(
                f"target ref {value!r} is not an id this provider returned in this "
                "test case (its step was not supported?)"
            )
        return key

    def _iqn(self, target: str) -> str | None:
        return next((iqn for t, iqn in self._targets.values() if t == target), None)

    def _create_session(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "session", ("target",))
        target = self._target_ref(fields["target"])
        result, new = self._login(self._login_adapter(), manual_login(target), named=True)
        if failed(_code(result)) or len(new) != 1:
            raise Unsupported(
                f"LoginToTarget to {self._iqn(target)!r} gave "
                f"{hex32(_code(result))} and {len(new)} new session(s); the "
                "session cannot be built here"
            )
        return new[0]

    def _login(
        self, adapter: str, request: LoginRequest, named: bool
    ) -> tuple[AsyncResult, list[str]]:
        """LoginToTarget, then the sessions GetIScsiSessionList shows that were not there
        before, each in the ledger; a target this case did not borrow gets no call."""
        iqn = self._iqn(request.target)
        iscsi = self.iscsi.get()
        before = {s.id for s in iscsi.sessions()}
        result = self.api.get().login(adapter, request)
        new = [
            s.id
            for s in iscsi.sessions()
            if s.id not in before and (iqn is None or s.target.casefold() == iqn.casefold())
        ]
        for session in new:
            self.ledger.add(
                f"session:{session}",
                f"iSCSI session {session} to {iqn}",
                lambda s=session: self._logout_own(s),
            )
            (self._sessions if named and len(new) == 1 else self._unnamed)[session] = request.target
        return result, new

    def _login_adapter(self) -> str:
        if self._adapters:
            return next(iter(self._adapters.values()))
        found = self.api.get().adapters()
        if len(found) != 1:
            raise Unsupported(
                "a session needs an initiator adapter: the case names none and "
                f"this host has {len(found)}"
            )
        return found[0][0]

    def _logout_own(self, session: str) -> None:
        iscsi = self.iscsi.get()
        if session not in {s.id for s in iscsi.sessions()}:
            return
        status = iscsi.logout(session)
        if status:
            raise OSError(f"LogoutIScsiTarget gave {hex32(status)}")

    def _create_group(self, name: str, fields: Mapping[str, Any]) -> str:
        """CreatePortalGroup on a borrowed target, then AddPortal for each portal. VDS picks
        the tag: the step's tag is kept beside it, as an adapter's name is."""
        exact_fields(fields, "portal_group", ("target",), ("portals", "tag"))
        target = self._target_ref(fields["target"])
        portals = fields.get("portals") or []
        if not isinstance(portals, list):
            raise ValueError(f"portal_group: portals must be a list, got {portals!r}")
        members = [self._portal_ref(p) for p in portals]
        api = self.api.get()
        result, group = api.create_portal_group(target)
        if group is None:
            raise Unsupported(
                f"CreatePortalGroup on {self._iqn(target)!r} failed "
                f"({hex32(_code(result))}); the provider may not support it"
            )
        self.ledger.add(
            f"portal-group:{group}", f"portal group {group}", lambda: self._delete_own(group)
        )
        self._groups[group] = target
        _, _, tag = api.group_properties(group)
        self._tags[group] = (int(fields.get("tag", tag or 0)), tag or 0)
        for portal in members:
            added = api.add_portal(group, portal)
            if failed(_code(added)):
                raise Unsupported(
                    f"AddPortal({portal}) to the new group failed ({hex32(_code(added))})"
                )
        return group

    def _portal_ref(self, value: Any) -> str:
        key = guid_key(value)
        if key is None or key not in self._portals.values():
            raise Unsupported(
                f"portal ref {value!r} is not an id this provider returned in this "
                "test case (its step was not supported?)"
            )
        return key

    def _delete_own(self, group: str) -> None:
        code = self._empty_and_delete(group)
        if failed(code) and code != C["VDS_E_OBJECT_DELETED"] & 0xFFFFFFFF:
            raise OSError(f"IVdsIscsiPortalGroup::Delete gave {hex32(code)}")

    def _empty_and_delete(self, group: str) -> int:
        """Delete a group made here: its portals first, as VDS refuses to delete a group that
        still has some (VDS_E_ASSOCIATED_PORTALS_EXIST)."""
        api = self.api.get()
        for portal in api.group_portals(group)[1] or []:
            api.remove_portal(group, portal)
        return _code(api.delete_portal_group(group))

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind == "object_deleted":
            exact_fields(fields, kind, ("object",))
            return self._delete_under_caller(fields["object"])
        if kind in _FAULT_REASONS:
            raise Unsupported(f"fault {kind!r}: {_FAULT_REASONS[kind]}")
        raise Unsupported(f"vds-iscsi has no fault {kind!r}")

    def _delete_under_caller(self, value: Any) -> str:
        """A real object_deleted: delete a group this provider made, keep its pointer."""
        group = guid_key(value)
        if group not in self._groups:
            raise Unsupported(
                "fault 'object_deleted' is built only for a portal group this "
                f"provider created; {value!r} is borrowed or not a group"
            )
        portals = self.api.get().group_portals(group)[1] or []
        code = self._empty_and_delete(group)
        if failed(code):
            raise Unsupported(f"deleting the portal group failed ({hex32(code)})")
        self._gone(group, self._groups[group], portals)
        return f"fault-{next(self._fault_serial)}"

    def _gone(self, group: str, target: str | None, portals: list[str]) -> None:
        """A group deleted while its pointer is held: out of the ledger, still callable."""
        self.ledger.discard(f"portal-group:{group}")
        self._groups.pop(group, None)
        self._deleted[group] = (target, portals)

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        handler = self._handlers.get(method_id)
        if handler is None:
            raise Unsupported(f"method {method_id!r}")
        for out in ("ppAsync", "ppEnum", "ppTarget", "pInitiatorAdapterProp", "pPortalGroupProp"):
            if out in args and args[out] is None:
                raise Unsupported(
                    f"a NULL {out} is not passed to a real VDS provider, which may write through it"
                )
        return handler(method_id, args)

    def _adapter(self, this: Any) -> str:
        adapter = guid_key(this)
        if adapter not in self._adapters.values():
            raise Unsupported(
                f"no interface pointer for {this!r}: not an initiator adapter this provider holds"
            )
        assert adapter is not None
        return adapter

    def _group(self, this: Any, method_id: str) -> str:
        group = guid_key(this)
        if group not in self._groups and group not in self._deleted:
            raise Unsupported(
                f"{method_id} is called only on portal groups this provider "
                f"created; {this!r} is not one"
            )
        assert group is not None
        return group

    def _adapter_properties(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("pInitiatorAdapterProp",))
        adapter = self._adapter(args["this"])
        self._refuse_renamed(adapter)
        hresult, adapter_id, name = self.api.get().adapter_properties(adapter)
        prop = None if failed(hresult) else {"id": adapter_id, "pwszName": name}
        return Outcome(hresult=hresult, outputs={"pInitiatorAdapterProp": prop})

    def _refuse_renamed(self, adapter: str) -> None:
        asked, real = self._names.get(adapter, ("", ""))
        if asked != real:
            raise Unsupported(
                f"the adapter lent for this case is named {real!r}; the step asks "
                f"for {asked!r}, and an adapter cannot be renamed"
            )

    def _query_initiator_portals(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("ppEnum",))
        adapter = self._adapter(args["this"])
        hresult, found = self.api.get().initiator_portals(adapter)
        if found is None:
            return Outcome(hresult=hresult, outputs={"ppEnum": None})
        named = {p for p, _ in self._initiator_portals.values()}
        unnamed = [p for p, _ in found if p not in named]
        if unnamed:
            raise Unsupported(
                f"the adapter has {len(unnamed)} initiator portal(s) this case "
                "does not name (lend them as initiator_portals)"
            )
        return Outcome(hresult=hresult, outputs={"ppEnum": [p for p, _ in found]})

    def _login_to_target(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        names = (
            "loginType",
            "targetId",
            "targetPortalId",
            "initiatorPortalId",
            "ulLoginFlags",
            "bHeaderDigest",
            "bDataDigest",
            "authType",
        )
        exact_fields(args, method_id, ("this", *names), ("ppAsync",))
        adapter = self._adapter(args["this"])
        request = LoginRequest(
            _int(args["loginType"]),
            _guid_arg(args["targetId"], "targetId"),
            _guid_arg(args["targetPortalId"], "targetPortalId"),
            _guid_arg(args["initiatorPortalId"], "initiatorPortalId"),
            _int(args["ulLoginFlags"]) & 0xFFFFFFFF,
            bool(args["bHeaderDigest"]),
            bool(args["bDataDigest"]),
            _int(args["authType"]),
        )
        self._refuse_unlent_target(request.target)
        result, _ = self._login(adapter, request, named=False)
        return async_outcome("ppAsync", result)

    def _refuse_unlent_target(self, target: str) -> None:
        """A real target the config does not lend gets no call (a login is network traffic,
        a logout ends the host's sessions); an id no target has is safe to pass."""
        if self._iqn(target) is None and any(t == target for t, _ in self.api.get().targets()):
            raise Unsupported(f"{target} is a real target the config does not lend")

    def _logout_from_target(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this", "targetId"), ("ppAsync",))
        adapter = self._adapter(args["this"])
        target = _guid_arg(args["targetId"], "targetId")
        self._refuse_unlent_target(target)
        iqn = self._iqn(target)
        foreign = self._sessions_to(iqn) if iqn is not None else []
        if foreign:
            raise Unsupported(
                f"{iqn} has {len(foreign)} session(s) this provider did not "
                "create; logging out would end them"
            )
        result = self.api.get().logout_from_target(adapter, target)
        self._forget_ended_sessions()
        return async_outcome("ppAsync", result)

    def _forget_ended_sessions(self) -> None:
        present = {s.id for s in self.iscsi.get().sessions()}
        for pool in (self._sessions, self._unnamed):
            for session in [s for s in pool if s not in present]:
                del pool[session]
                self.ledger.discard(f"session:{session}")

    def _group_properties(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("pPortalGroupProp",))
        group = self._group(args["this"], method_id)
        asked, real = self._tags.get(group, (0, 0))
        if asked != real:
            raise Unsupported(
                f"VDS gave the group tag {real}; the step asks for {asked}, and "
                "a portal group's tag is the provider's to choose"
            )
        hresult, group_id, tag = self.api.get().group_properties(group)
        prop = None if failed(hresult) else {"id": group_id, "tag": tag}
        return Outcome(hresult=hresult, outputs={"pPortalGroupProp": prop})

    def _group_target(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("ppTarget",))
        hresult, target = self.api.get().group_target(self._group(args["this"], method_id))
        return Outcome(hresult=hresult, outputs={"ppTarget": target})

    def _group_portals(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("ppEnum",))
        hresult, portals = self.api.get().group_portals(self._group(args["this"], method_id))
        return Outcome(hresult=hresult, outputs={"ppEnum": portals})

    def _add_portal(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this", "portalId"), ("ppAsync",))
        group = self._group(args["this"], method_id)
        portal = _guid_arg(args["portalId"], "portalId")
        return async_outcome("ppAsync", self.api.get().add_portal(group, portal))

    def _remove_portal(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this", "portalId"), ("ppAsync",))
        group = self._group(args["this"], method_id)
        portal = _guid_arg(args["portalId"], "portalId")
        return async_outcome("ppAsync", self.api.get().remove_portal(group, portal))

    def _delete_group(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, method_id, ("this",), ("ppAsync",))
        group = self._group(args["this"], method_id)
        api = self.api.get()
        portals = api.group_portals(group)[1] or [] if group in self._groups else []
        result = api.delete_portal_group(group)
        if not failed(_code(result)) and group in self._groups:
            self._gone(group, None, portals)
        return async_outcome("ppAsync", result)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        observer = self._observers.get(collection)
        if observer is None:
            raise Unsupported(f"collection {collection!r}")
        return observer()

    def _observe_adapters(self) -> list[dict[str, Any]]:
        for adapter in self._adapters.values():
            self._refuse_renamed(adapter)
        return [{"id": a, "name": self._names[a][1]} for a in self._adapters.values()]

    def _observe_targets(self) -> list[dict[str, Any]]:
        """A target is logged in while a session a call (or `logged_in`) opened is alive."""
        present = {s.id for s in self.iscsi.get().sessions()}
        live = {t for s, t in self._unnamed.items() if s in present}
        return [{"id": t, "logged_in": t in live} for t, _ in self._targets.values()]

    def _observe_sessions(self) -> list[dict[str, Any]]:
        present = {s.id for s in self.iscsi.get().sessions()}
        return [{"id": s, "target": t} for s, t in self._sessions.items() if s in present]

    def _observe_groups(self) -> list[dict[str, Any]]:
        """Groups made here, deleted ones included (their target is then null); the tag as
        the step asked, which only an equal real tag lets be shown."""
        api = self.api.get()
        rows = []
        for group in [*self._groups, *self._deleted]:
            asked, real = self._tags.get(group, (0, 0))
            if asked != real:
                raise Unsupported(f"portal group {group} has tag {real}, the step asked {asked}")
            if group in self._deleted:
                target, portals = self._deleted[group]
            else:
                target, portals = self._groups[group], api.group_portals(group)[1] or []
            rows.append({"id": group, "target": target, "tag": real, "portals": portals})
        return rows


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
