"""VDS iSCSI family: initiator adapters, targets, sessions, portals and portal groups.

Sessions and portals are modelled as the VDS service sees them; faults stand for the
conditions (refusing sessions, corrupt cache, busy or deleted objects) the pages name.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._world import S_OK, World, check_args, check_step, direct, started

LOGOUT_FROM_TARGET = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"

# vds.h, as listed on the VDS common return codes page.
VDS_E_OBJECT_NOT_FOUND = 0x80042405
VDS_E_OPERATION_PENDING = 0x80042409
VDS_E_OBJECT_DELETED = 0x8004240B
VDS_E_PROVIDER_CACHE_CORRUPT = 0x8004241F
VDS_E_ISCSI_LOGOUT_FAILED = 0x80042709
VDS_E_ISCSI_SESSION_NOT_FOUND = 0x8004270A
VDS_E_ISCSI_LOGOUT_INCOMPLETE = 0x80042710


def guid_key(value: Any) -> str | None:
    """Canonical form of a VDS_OBJECT_ID, so GUIDs compare by value, not by spelling."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass
class _PortalGroup:
    target: str
    portals: list[str] = field(default_factory=list)


class VdsWorld(World):
    """What the VDS service and its hardware provider hold for the iSCSI objects."""

    steps = ("initiator_adapter", "target", "session", "portal", "portal_group")
    faults = ("logout_fails", "provider_cache_corrupt", "operation_pending", "object_deleted")
    collections = ("initiator_adapters", "targets", "sessions", "portals", "portal_groups")
    methods = (LOGOUT_FROM_TARGET, REMOVE_PORTAL)

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._adapters: dict[str, None] = {}
        self._targets: dict[str, None] = {}
        self._sessions: dict[str, str] = {}  # session -> target
        self._portals: dict[str, None] = {}
        self._groups: dict[str, _PortalGroup] = {}
        self._refusing_logout: set[str] = set()
        self._cache_corrupt = False
        self._pending: set[str] = set()
        self._deleted: set[str] = set()
        self._async_serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        new = str(uuid.uuid4())
        if kind == "initiator_adapter":
            check_step(fields, kind)
            self._adapters[new] = None
        elif kind == "target":
            check_step(fields, kind)
            self._targets[new] = None
        elif kind == "session":
            check_step(fields, kind, required=("target",))
            self._sessions[new] = self._ref(fields["target"], self._targets, "target")
        elif kind == "portal":
            check_step(fields, kind)
            self._portals[new] = None
        elif kind == "portal_group":
            check_step(fields, kind, required=("target",), optional=("portals",))
            target = self._ref(fields["target"], self._targets, "target")
            listed = fields.get("portals") or []
            if not isinstance(listed, list):
                raise ValueError(f"portal_group: portals must be a list, got {listed!r}")
            portals = [self._ref(p, self._portals, "portal") for p in listed]
            if len(set(portals)) != len(portals):
                raise ValueError("portal_group: a portal is listed more than once")
            self._groups[new] = _PortalGroup(target, portals)
        else:
            raise Unsupported(f"vds-iscsi step {kind!r}")
        return new

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        if kind == "logout_fails":
            check_step(fields, kind, required=("session",))
            self._refusing_logout.add(self._ref(fields["session"], self._sessions, "session"))
        elif kind == "provider_cache_corrupt":
            check_step(fields, kind)
            self._cache_corrupt = True
        elif kind in ("operation_pending", "object_deleted"):
            check_step(fields, kind, required=("object",))
            obj = self._any_ref(fields["object"])
            (self._pending if kind == "operation_pending" else self._deleted).add(obj)
        else:
            raise Unsupported(f"vds-iscsi fault {kind!r}")

    def _ref(self, value: Any, pool: Mapping[str, Any], what: str) -> str:
        key = guid_key(value)
        if key is None or key not in pool:
            raise ValueError(f"{what} ref {value!r} is not an id this provider returned")
        return key

    def _any_ref(self, value: Any) -> str:
        key = guid_key(value)
        pools = (self._adapters, self._targets, self._sessions, self._portals, self._groups)
        if key is None or not any(key in pool for pool in pools):
            raise ValueError(f"object ref {value!r} is not an id this provider returned")
        return key

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id == LOGOUT_FROM_TARGET:
            check_args(args, method_id, required=("this", "targetId"))
            return self._logout_from_target(args["this"], args["targetId"])
        if method_id == REMOVE_PORTAL:
            check_args(args, method_id, required=("this", "portalId"))
            return self._remove_portal(args["this"], args["portalId"])
        raise Unsupported(f"method {method_id!r}")

    def _async(self) -> str:
        """An opaque IVdsAsync stand-in; a string so reports can serialise it."""
        return f"IVdsAsync#{next(self._async_serial)}"

    def _logout_from_target(self, this: Any, target_id: Any) -> Outcome:
        """Log out of every session to the target, on any adapter (the page: 'all sessions')."""
        if guid_key(this) not in self._adapters:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        target = guid_key(target_id)
        sessions = [s for s, t in self._sessions.items() if target is not None and t == target]
        if not sessions:
            return direct(VDS_E_ISCSI_SESSION_NOT_FOUND, {"ppAsync": None})
        leaving = [s for s in sessions if s not in self._refusing_logout]
        if not leaving:
            result = VDS_E_ISCSI_LOGOUT_FAILED
        else:
            for session in leaving:
                self._forget(session)
            result = VDS_E_ISCSI_LOGOUT_INCOMPLETE if len(leaving) < len(sessions) else S_OK
        return started("ppAsync", self._async(), result)

    def _forget(self, session: str) -> None:
        del self._sessions[session]
        self._pending.discard(session)
        self._deleted.discard(session)

    def _remove_portal(self, this: Any, portal_id: Any) -> Outcome:
        """Check the pointer's object, then the provider, then the portal, as a call would."""
        key = guid_key(this)
        if key is None or key not in self._groups:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        group = self._groups[key]
        if key in self._deleted:
            return direct(VDS_E_OBJECT_DELETED, {"ppAsync": None})
        if self._cache_corrupt:
            return direct(VDS_E_PROVIDER_CACHE_CORRUPT, {"ppAsync": None})
        if key in self._pending:
            return direct(VDS_E_OPERATION_PENDING, {"ppAsync": None})
        portal = guid_key(portal_id)
        if portal is None or portal not in group.portals:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        group.portals.remove(portal)
        return started("ppAsync", self._async(), S_OK)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiator_adapters":
            return [{"id": a} for a in self._adapters]
        if collection == "targets":
            return [{"id": t} for t in self._targets]
        if collection == "sessions":
            return [{"id": s, "target": t} for s, t in self._sessions.items()]
        if collection == "portals":
            return [{"id": p} for p in self._portals]
        if collection == "portal_groups":
            return [
                {"id": g, "target": group.target, "portals": list(group.portals)}
                for g, group in self._groups.items()
            ]
        raise Unsupported(f"collection {collection!r}")
