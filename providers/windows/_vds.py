"""VDS iSCSI (vds.h) through COM: initiator adapters, targets, portals, portal groups, sessions.

`VdsService` is the Windows-only part: CLSID_VdsLoader -> IVdsServiceLoader::LoadService ->
IVdsService (waited until ready) -> IVdsServiceIscsi for initiator adapters, and hardware
providers -> sub-systems -> IVdsSubSystemIscsi for targets and portals, each call through the
metadata's vtable slots. `VdsFamily` is plain Python: targets, portals and adapters are borrowed
from the config; sessions (LoginToTarget) and portal groups (CreatePortalGroup + AddPortal) are
created on borrowed objects and undone through the ledger; no call is made that could end a
session or change a group this provider did not create.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
from collections.abc import Mapping
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts, _structs
from ._com import (
    GUID_NULL,
    AsyncResult,
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
from ._config import Config, Lazy, Ledger
from ._iscsi import IscsiApi

LOGOUT_FROM_TARGET = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
C = _layouts.CONSTANTS

_FAULT_REASONS = {
    "logout_fails": "a real initiator cannot be told to refuse the logout of one session",
    "provider_cache_corrupt": "corrupting a hardware provider's cache needs the vendor's own "
                              "test hooks",
    "operation_pending": "VDS offers no way to hold an operation pending on an object",
}


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
    def login(self, adapter: str, target: str) -> AsyncResult: ...
    def logout_from_target(self, adapter: str, target: str) -> AsyncResult: ...
    def create_portal_group(self, target: str) -> tuple[AsyncResult, str | None]: ...
    def add_portal(self, group: str, portal: str) -> AsyncResult: ...
    def remove_portal(self, group: str, portal: str) -> AsyncResult: ...
    def delete_portal_group(self, group: str) -> AsyncResult: ...
    def group_portals(self, group: str) -> list[str]: ...
    def forget(self, object_id: str) -> None: ...


class VdsService:
    """The VDS service on this machine; constructing it needs Windows and a running VDS."""

    def __init__(self, ole: Ole) -> None:
        self.ole = ole
        self._objects: dict[str, ComObject] = {}  # VDS_OBJECT_ID -> the interface held
        with ole.create(guid(_layouts.GUIDS["CLSID_VdsLoader"]), "IVdsServiceLoader",
                        C["CLSCTX_LOCAL_SERVER"]) as loader:
            pointer = ctypes.c_void_p()
            loader.check("LoadService", None, ctypes.byref(pointer))
        self.service = ComObject(pointer.value, "IVdsService")
        self.service.check("WaitForServiceReady")
        iscsi = self.service.query("IVdsServiceIscsi")
        if iscsi is None:
            raise Unsupported("this VDS has no iSCSI service (IVdsServiceIscsi)")
        self.iscsi = iscsi

    def _each(self, owner: ComObject, method: str, interface: str, *args: Any) -> list[ComObject]:
        pointer = ctypes.c_void_p()
        owner.check(method, *args, ctypes.byref(pointer))
        found = []
        with ComObject(pointer.value, "IEnumVdsObject") as enum:
            for unknown in enumerate_objects(enum):
                with unknown:
                    obj = unknown.query(interface)
                if obj is not None:
                    found.append(obj)
        return found

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
        for provider in self._each(self.service, "QueryProviders", "IVdsHwProvider",
                                   C["VDS_QUERY_HARDWARE_PROVIDERS"]):
            with provider:
                for subsystem in self._each(provider, "QuerySubSystems", "IUnknown"):
                    with subsystem:
                        iscsi = subsystem.query("IVdsSubSystemIscsi")
                    if iscsi is not None:
                        out.append(iscsi)
        return out

    def adapters(self) -> list[tuple[str, str]]:
        out = []
        for adapter in self._each(self.iscsi, "QueryInitiatorAdapters",
                                  "IVdsIscsiInitiatorAdapter"):
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
                    out.append((self._keep(guid_text(prop.id), portal), ip_text(prop.address),
                                int(prop.address.ulPort)))
        return out

    def login(self, adapter: str, target: str) -> AsyncResult:
        return call_async(self._held(adapter), "LoginToTarget", C["VDS_ILT_MANUAL"],
                          guid(target), guid(GUID_NULL), guid(GUID_NULL), 0, 0, 0,
                          C["VDS_IAT_NONE"])

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
        if failed(completion) or output.type != C["VDS_ASYNCOUT_CREATEPORTALGROUP"] \
                or not output.cpg.pPortalGroupUnk:
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

    def group_portals(self, group: str) -> list[str]:
        ids = []
        for portal in self._each(self._held(group), "QueryAssociatedPortals", "IVdsIscsiPortal"):
            with portal:
                prop = _structs.struct("VDS_ISCSI_PORTAL_PROP")()
                portal.check("GetProperties", ctypes.byref(prop))
                ids.append(guid_text(prop.id))
        return ids

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


class VdsFamily:
    """The vds-iscsi family on a real VDS service."""

    steps = ("initiator_adapter", "target", "session", "portal", "portal_group")
    faults = ("logout_fails", "provider_cache_corrupt", "operation_pending", "object_deleted")
    collections = ("initiator_adapters", "targets", "sessions", "portals", "portal_groups")
    methods = (LOGOUT_FROM_TARGET, REMOVE_PORTAL)

    def __init__(self, config: Config, api: Lazy[VdsApi], iscsi: Lazy[IscsiApi]) -> None:
        self.config = config
        self.api = api
        self.iscsi = iscsi
        self.ledger = Ledger()
        self.reset_names()

    def reset_names(self) -> None:
        self._adapters: dict[str, str] = {}  # scenario name -> VDS id (borrowed)
        self._targets: dict[str, tuple[str, str]] = {}  # scenario name -> (id, iqn) (borrowed)
        self._portals: dict[str, str] = {}  # scenario name -> id (borrowed)
        self._sessions: dict[str, str] = {}  # session id -> target id (created)
        self._groups: dict[str, str] = {}  # group id -> target id (created, not deleted)
        self._deleted: set[str] = set()  # groups deleted by a fault; the pointer is still held
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
        if kind == "initiator_adapter":
            _exact(fields, kind, ())
            return self._borrow_adapter(name)
        if kind == "target":
            _exact(fields, kind, ())
            return self._borrow_target(name)
        if kind == "portal":
            _exact(fields, kind, ())
            return self._borrow_portal(name)
        if kind == "session":
            _exact(fields, kind, ("target",))
            return self._create_session(self._target_ref(fields["target"]))
        if kind == "portal_group":
            _exact(fields, kind, ("target",), ("portals",))
            return self._create_group(self._target_ref(fields["target"]),
                                      fields.get("portals") or [])
        raise Unsupported(f"vds-iscsi step {kind!r}")

    def _borrow_adapter(self, name: str) -> str:
        found = self.api.get().adapters()
        entry = self.config.lent("initiator_adapters", name)
        if entry is None:
            taken = set(self._adapters.values())
            free = [a for a in found if a[0] not in taken]
            if len(found) == 1 and free:
                return self._remember(self._adapters, name, free[0][0])
            self.config.require("initiator_adapters", name,
                                "an initiator adapter cannot be created, and this host has "
                                f"{len(found)} to choose from")
        assert entry is not None
        for adapter_id, adapter_name in found:
            if entry.get("id") == adapter_id or (
                    "id" not in entry and entry["name"].casefold() == adapter_name.casefold()):
                return self._remember(self._adapters, name, adapter_id)
        raise Unsupported(f"initiator_adapters.{name} matches none of this host's adapters: "
                          f"{[f'{n} ({i})' for i, n in found]}")

    def _borrow_target(self, name: str) -> str:
        entry = self.config.require("targets", name, "creating an iSCSI target needs a storage "
                                    "array (a VDS hardware provider's sub-system)")
        found = self.api.get().targets()
        for target_id, iqn in found:
            if iqn.casefold() == entry["iqn"].casefold():
                self._targets[name] = (target_id, iqn)
                return target_id
        raise Unsupported(f"targets.{name}: no VDS hardware provider exposes {entry['iqn']!r} "
                          f"(targets seen: {[iqn for _, iqn in found]})")

    def _borrow_portal(self, name: str) -> str:
        entry = self.config.require("portals", name, "a portal belongs to a storage array and "
                                    "cannot be created through VDS")
        found = self.api.get().portals()
        for portal_id, address, port in found:
            if same_address(address, entry["address"]) and port == entry["port"]:
                return self._remember(self._portals, name, portal_id)
        raise Unsupported(f"portals.{name}: no portal at {entry['address']}:{entry['port']} "
                          f"(portals seen: {[f'{a}:{p}' for _, a, p in found]})")

    def _remember(self, pool: dict[str, str], name: str, object_id: str) -> str:
        if object_id in pool.values():
            raise Unsupported(f"{object_id} already stands for another name in this case")
        pool[name] = object_id
        return object_id

    def _target_ref(self, value: Any) -> str:
        key = guid_key(value)
        if key is None or key not in {t for t, _ in self._targets.values()}:
            raise Unsupported(f"target ref {value!r} is not an id this provider returned in this "
                              "test case (its step was not supported?)")
        return key

    def _iqn(self, target: str) -> str | None:
        return next((iqn for t, iqn in self._targets.values() if t == target), None)

    def _create_session(self, target: str) -> str:
        """IVdsIscsiInitiatorAdapter::LoginToTarget on a borrowed target; the new session is
        the one GetIScsiSessionList shows that was not there before."""
        iqn = self._iqn(target) or ""
        iscsi = self.iscsi.get()
        before = {s.id for s in iscsi.sessions()}
        result = self.api.get().login(self._login_adapter(), target)
        if failed(result.hresult) or result.completion is None or failed(result.completion):
            code = result.hresult if failed(result.hresult) else result.completion
            raise Unsupported(f"LoginToTarget to {iqn!r} failed ({hex32(code or 0)}); the "
                              "session cannot be built here")
        new = [s.id for s in iscsi.sessions()
               if s.id not in before and s.target.casefold() == iqn.casefold()]
        for session in new:
            self.ledger.add(f"session:{session}", f"iSCSI session {session} to {iqn}",
                            lambda s=session: self._logout_own(s))
        if len(new) != 1:
            for session in new:
                self.ledger.undo(f"session:{session}")
            raise Unsupported(f"LoginToTarget to {iqn!r} made {len(new)} new sessions, not one")
        self._sessions[new[0]] = target
        return new[0]

    def _login_adapter(self) -> str:
        if self._adapters:
            return next(iter(self._adapters.values()))
        found = self.api.get().adapters()
        if len(found) != 1:
            raise Unsupported("a session needs an initiator adapter: the case names none and "
                              f"this host has {len(found)}")
        return found[0][0]

    def _logout_own(self, session: str) -> None:
        iscsi = self.iscsi.get()
        if session not in {s.id for s in iscsi.sessions()}:
            return
        status = iscsi.logout(session)
        if status:
            raise OSError(f"LogoutIScsiTarget gave {hex32(status)}")

    def _create_group(self, target: str, portals: Any) -> str:
        if not isinstance(portals, list):
            raise ValueError(f"portal_group: portals must be a list, got {portals!r}")
        members = [self._portal_ref(p) for p in portals]
        api = self.api.get()
        result, group = api.create_portal_group(target)
        if group is None:
            code = result.hresult if failed(result.hresult) else (result.completion or 0)
            raise Unsupported(f"CreatePortalGroup on {self._iqn(target)!r} failed "
                              f"({hex32(code)}); the provider may not support it")
        key = f"portal-group:{group}"
        self.ledger.add(key, f"portal group {group}", lambda: self._delete_own(group))
        self._groups[group] = target
        for portal in members:
            added = api.add_portal(group, portal)
            if failed(added.hresult) or failed(added.completion or 0):
                raise Unsupported(f"AddPortal({portal}) to the new group failed "
                                  f"({hex32(added.completion or added.hresult)})")
        return group

    def _portal_ref(self, value: Any) -> str:
        key = guid_key(value)
        if key is None or key not in self._portals.values():
            raise Unsupported(f"portal ref {value!r} is not an id this provider returned in this "
                              "test case (its step was not supported?)")
        return key

    def _delete_own(self, group: str) -> None:
        result = self.api.get().delete_portal_group(group)
        code = result.hresult if failed(result.hresult) else (result.completion or 0)
        if failed(code) and code != C["VDS_E_OBJECT_DELETED"] & 0xFFFFFFFF:
            raise OSError(f"IVdsIscsiPortalGroup::Delete gave {hex32(code)}")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind == "object_deleted":
            _exact(fields, kind, ("object",))
            return self._delete_under_caller(fields["object"])
        if kind in _FAULT_REASONS:
            raise Unsupported(f"fault {kind!r}: {_FAULT_REASONS[kind]}")
        raise Unsupported(f"vds-iscsi has no fault {kind!r}")

    def _delete_under_caller(self, value: Any) -> str:
        """A real object_deleted: delete a group this provider made, keep its pointer."""
        group = guid_key(value)
        if group not in self._groups:
            raise Unsupported("fault 'object_deleted' is built only for a portal group this "
                              f"provider created; {value!r} is borrowed or not a group")
        result = self.api.get().delete_portal_group(group)
        code = result.hresult if failed(result.hresult) else (result.completion or 0)
        if failed(code):
            raise Unsupported(f"deleting the portal group failed ({hex32(code)})")
        self.ledger.discard(f"portal-group:{group}")
        del self._groups[group]
        self._deleted.add(group)
        return f"fault-{next(self._fault_serial)}"

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if "ppAsync" in args and args["ppAsync"] is None:
            raise Unsupported("a NULL ppAsync is not passed to a real VDS provider, which "
                              "may write through it")
        if method_id == LOGOUT_FROM_TARGET:
            _exact(args, method_id, ("this", "targetId"), ("ppAsync",))
            return self._logout_from_target(args["this"], args["targetId"])
        if method_id == REMOVE_PORTAL:
            _exact(args, method_id, ("this", "portalId"), ("ppAsync",))
            return self._remove_portal(args["this"], args["portalId"])
        raise Unsupported(f"method {method_id!r}")

    def _logout_from_target(self, this: Any, target_id: Any) -> Outcome:
        adapter = guid_key(this)
        if adapter not in self._adapters.values():
            raise Unsupported(f"no interface pointer for {this!r}: not an initiator adapter "
                              "this provider holds")
        target = guid_key(target_id)
        if target is None:
            raise Unsupported(f"targetId {target_id!r} is not a GUID; VDS_OBJECT_ID is one")
        self._refuse_foreign_sessions(target)
        result = self.api.get().logout_from_target(adapter, target)
        self._forget_ended_sessions()
        return async_outcome("ppAsync", result)

    def _refuse_foreign_sessions(self, target: str) -> None:
        """LogoutFromTarget ends every session to the target: refuse if one is not ours."""
        iqn = self._iqn(target)
        if iqn is None:
            if any(t == target for t, _ in self.api.get().targets()):
                raise Unsupported(f"{target} is a real target the config does not lend")
            return  # an id no target has: the call can end no session
        foreign = [s.id for s in self.iscsi.get().sessions()
                   if s.target.casefold() == iqn.casefold() and s.id not in self._sessions]
        if foreign:
            raise Unsupported(f"{iqn} has {len(foreign)} session(s) this provider did not "
                              "create; logging out would end them")

    def _forget_ended_sessions(self) -> None:
        present = {s.id for s in self.iscsi.get().sessions()}
        for session in list(self._sessions):
            if session not in present:
                del self._sessions[session]
                self.ledger.discard(f"session:{session}")

    def _remove_portal(self, this: Any, portal_id: Any) -> Outcome:
        group = guid_key(this)
        if group not in self._groups and group not in self._deleted:
            raise Unsupported(f"RemovePortal is called only on portal groups this provider "
                              f"created; {this!r} is not one")
        portal = guid_key(portal_id)
        if portal is None:
            raise Unsupported(f"portalId {portal_id!r} is not a GUID; VDS_OBJECT_ID is one")
        return async_outcome("ppAsync", self.api.get().remove_portal(group, portal))

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiator_adapters":
            return [{"id": a} for a in self._adapters.values()]
        if collection == "targets":
            return [{"id": t} for t, _ in self._targets.values()]
        if collection == "portals":
            return [{"id": p} for p in self._portals.values()]
        if collection == "sessions":
            present = {s.id for s in self.iscsi.get().sessions()}
            return [{"id": s, "target": t} for s, t in self._sessions.items() if s in present]
        if collection == "portal_groups":
            api = self.api.get()
            return [{"id": g, "target": t, "portals": api.group_portals(g)}
                    for g, t in self._groups.items()]
        raise Unsupported(f"collection {collection!r}")


def _exact(fields: Mapping[str, Any], what: str, required: tuple[str, ...],
           optional: tuple[str, ...] = ()) -> None:
    missing = [n for n in required if n not in fields]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(fields) - set(required) - set(optional))
    if extra:
        raise Unsupported(f"{what}: unexpected field(s) {', '.join(extra)}")
