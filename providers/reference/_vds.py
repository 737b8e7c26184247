"""VDS iSCSI family: initiator adapters and their portals, targets, sessions, portals and
portal groups, as the VDS service and a hardware provider hold them.

Written from the IVdsIscsiInitiatorAdapter and IVdsIscsiPortalGroup pages alone. Faults stand
for the conditions the pages name but a caller cannot bring about (refusing sessions, a target
that refuses logins, a corrupt provider cache, a busy object, properties that cannot all be
read, an object deleted behind the caller's pointer).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._world import S_OK, World, check_args, check_step, direct, started

_ADAPTER = "IVdsIscsiInitiatorAdapter::"
_GROUP = "IVdsIscsiPortalGroup::"
ADAPTER_GET_PROPERTIES = _ADAPTER + "GetProperties"
QUERY_INITIATOR_PORTALS = _ADAPTER + "QueryInitiatorPortals"
LOGIN_TO_TARGET = _ADAPTER + "LoginToTarget"
LOGOUT_FROM_TARGET = _ADAPTER + "LogoutFromTarget"
GROUP_GET_PROPERTIES = _GROUP + "GetProperties"
GET_TARGET = _GROUP + "GetTarget"
QUERY_ASSOCIATED_PORTALS = _GROUP + "QueryAssociatedPortals"
ADD_PORTAL = _GROUP + "AddPortal"
REMOVE_PORTAL = _GROUP + "RemovePortal"
DELETE = _GROUP + "Delete"

# vds.h / vdserr.h, as listed on the method pages and the VDS common return codes page.
E_INVALIDARG = 0x80070057
VDS_E_ANOTHER_CALL_IN_PROGRESS = 0x80042404
VDS_E_OBJECT_NOT_FOUND = 0x80042405
VDS_E_OBJECT_DELETED = 0x8004240B
VDS_E_PROVIDER_CACHE_CORRUPT = 0x8004241F
VDS_E_ISCSI_LOGIN_FAILED = 0x80042708
VDS_E_ISCSI_LOGOUT_FAILED = 0x80042709
VDS_E_ISCSI_SESSION_NOT_FOUND = 0x8004270A
VDS_E_ASSOCIATED_PORTALS_EXIST = 0x8004270C
VDS_E_ISCSI_LOGOUT_INCOMPLETE = 0x80042710
VDS_S_PROPERTIES_INCOMPLETE = 0x00042715

GUID_NULL = "00000000-0000-0000-0000-000000000000"

_LOGIN_ARGS = (
    "loginType",
    "targetId",
    "targetPortalId",
    "initiatorPortalId",
    "ulLoginFlags",
    "bHeaderDigest",
    "bDataDigest",
    "authType",
)


def guid_key(value: Any) -> str | None:
    """Canonical form of a VDS_OBJECT_ID, so GUIDs compare by value, not by spelling; an int is
    the GUID's 128-bit value (how the harness passes GUID_NULL, as 0)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(uuid.UUID(int=value))
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass
class _Target:
    manual_logins: int = 0  # sessions LoginToTarget opened (they have no VDS object of their own)


@dataclass
class _PortalGroup:
    target: str | None  # None once Delete succeeded: no longer one of the target's groups
    tag: int = 0
    portals: list[str] = field(default_factory=list)


class VdsWorld(World):
    """What the VDS service and its hardware provider hold for the iSCSI objects."""

    steps = ("initiator_adapter", "initiator_portal", "target", "session", "portal", "portal_group")
    faults = (
        "logout_fails",
        "login_fails",
        "provider_cache_corrupt",
        "operation_pending",
        "object_deleted",
        "properties_incomplete",
    )
    collections = (
        "initiator_adapters",
        "initiator_portals",
        "targets",
        "sessions",
        "portals",
        "portal_groups",
    )
    methods = (
        ADAPTER_GET_PROPERTIES,
        QUERY_INITIATOR_PORTALS,
        LOGIN_TO_TARGET,
        LOGOUT_FROM_TARGET,
        GROUP_GET_PROPERTIES,
        GET_TARGET,
        QUERY_ASSOCIATED_PORTALS,
        ADD_PORTAL,
        REMOVE_PORTAL,
        DELETE,
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._adapters: dict[str, str] = {}  # adapter -> name
        self._initiator_portals: dict[str, str] = {}  # initiator portal -> adapter
        self._targets: dict[str, _Target] = {}
        self._sessions: dict[str, str] = {}  # session -> target
        self._portals: dict[str, None] = {}
        self._groups: dict[str, _PortalGroup] = {}
        self._refusing_logout: set[str] = set()
        self._refusing_login: set[str] = set()
        self._cache_corrupt = False
        self._pending: set[str] = set()
        self._deleted: set[str] = set()
        self._incomplete: set[str] = set()
        self._async_serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        maker = {
            "initiator_adapter": self._create_adapter,
            "initiator_portal": self._create_initiator_portal,
            "target": self._create_target,
            "session": self._create_session,
            "portal": self._create_portal,
            "portal_group": self._create_group,
        }.get(kind)
        if maker is None:
            raise Unsupported(f"vds-iscsi step {kind!r}")
        new = str(uuid.uuid4())
        maker(new, fields)
        return new

    def _create_adapter(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "initiator_adapter", optional=("name",))
        name = fields.get("name", "")
        if not isinstance(name, str):
            raise ValueError(f"initiator_adapter: name must be a string, got {name!r}")
        self._adapters[new] = name

    def _create_initiator_portal(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "initiator_portal", required=("adapter",))
        self._initiator_portals[new] = self._ref(fields["adapter"], self._adapters, "adapter")

    def _create_target(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "target", optional=("logged_in",))
        logged_in = fields.get("logged_in", False)
        if not isinstance(logged_in, bool):
            raise ValueError(f"target: logged_in must be a bool, got {logged_in!r}")
        self._targets[new] = _Target(manual_logins=int(logged_in))

    def _create_session(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "session", required=("target",))
        self._sessions[new] = self._ref(fields["target"], self._targets, "target")

    def _create_portal(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "portal")
        self._portals[new] = None

    def _create_group(self, new: str, fields: Mapping[str, Any]) -> None:
        check_step(fields, "portal_group", required=("target",), optional=("portals", "tag"))
        target = self._ref(fields["target"], self._targets, "target")
        listed = fields.get("portals") or []
        if not isinstance(listed, list):
            raise ValueError(f"portal_group: portals must be a list, got {listed!r}")
        portals = [self._ref(p, self._portals, "portal") for p in listed]
        if len(set(portals)) != len(portals):
            raise ValueError("portal_group: a portal is listed more than once")
        tag = fields.get("tag", 0)
        if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag <= 0xFFFF:
            raise ValueError(f"portal_group: tag is a USHORT, got {tag!r}")
        self._groups[new] = _PortalGroup(target, tag, portals)

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        if kind == "logout_fails":
            check_step(fields, kind, required=("session",))
            self._refusing_logout.add(self._ref(fields["session"], self._sessions, "session"))
        elif kind == "login_fails":
            check_step(fields, kind, required=("target",))
            self._refusing_login.add(self._ref(fields["target"], self._targets, "target"))
        elif kind == "provider_cache_corrupt":
            check_step(fields, kind)
            self._cache_corrupt = True
        elif kind in ("operation_pending", "object_deleted", "properties_incomplete"):
            check_step(fields, kind, required=("object",))
            obj = self._any_ref(fields["object"])
            {
                "operation_pending": self._pending,
                "object_deleted": self._deleted,
                "properties_incomplete": self._incomplete,
            }[kind].add(obj)
        else:
            raise Unsupported(f"vds-iscsi fault {kind!r}")

    def _ref(self, value: Any, pool: Mapping[str, Any], what: str) -> str:
        key = guid_key(value)
        if key is None or key not in pool:
            raise ValueError(f"{what} ref {value!r} is not an id this provider returned")
        return key

    def _any_ref(self, value: Any) -> str:
        key = guid_key(value)
        pools = (
            self._adapters,
            self._initiator_portals,
            self._targets,
            self._sessions,
            self._portals,
            self._groups,
        )
        if key is None or not any(key in pool for pool in pools):
            raise ValueError(f"object ref {value!r} is not an id this provider returned")
        return key

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        entry = self._table().get(method_id)
        if entry is None:
            raise Unsupported(f"method {method_id!r}")
        params, out, handler = entry
        check_args(args, method_id, required=("this", *params), optional=(out,))
        if out in args and args[out] is None:
            return direct(E_INVALIDARG, {out: None})  # a NULL out-pointer: nothing to return
        return handler(args)

    def _table(
        self,
    ) -> dict[str, tuple[tuple[str, ...], str, Callable[[Mapping[str, Any]], Outcome]]]:
        """Method -> (in-parameters, out-parameter, handler)."""
        return {
            ADAPTER_GET_PROPERTIES: ((), "pInitiatorAdapterProp", self._adapter_properties),
            QUERY_INITIATOR_PORTALS: ((), "ppEnum", self._query_initiator_portals),
            LOGIN_TO_TARGET: (_LOGIN_ARGS, "ppAsync", self._login_to_target),
            LOGOUT_FROM_TARGET: (("targetId",), "ppAsync", self._logout_from_target),
            GROUP_GET_PROPERTIES: ((), "pPortalGroupProp", self._group_properties),
            GET_TARGET: ((), "ppTarget", self._get_target),
            QUERY_ASSOCIATED_PORTALS: ((), "ppEnum", self._query_associated_portals),
            ADD_PORTAL: (("portalId",), "ppAsync", self._add_portal),
            REMOVE_PORTAL: (("portalId",), "ppAsync", self._remove_portal),
            DELETE: ((), "ppAsync", self._delete),
        }

    def _async(self, completion: int) -> Outcome:
        """S_OK with an opaque IVdsAsync stand-in whose Wait gives `completion`."""
        return started("ppAsync", f"IVdsAsync#{next(self._async_serial)}", completion)

    # -- IVdsIscsiInitiatorAdapter -------------------------------------------------------

    def _adapter(self, args: Mapping[str, Any]) -> str | None:
        key = guid_key(args["this"])
        return key if key in self._adapters else None

    def _adapter_properties(self, args: Mapping[str, Any]) -> Outcome:
        """Some properties unreadable (e.g. the device is going away): a success, incomplete."""
        out = "pInitiatorAdapterProp"
        adapter = self._adapter(args)
        if adapter is None:
            return direct(VDS_E_OBJECT_NOT_FOUND, {out: None})
        if adapter in self._incomplete:
            return direct(VDS_S_PROPERTIES_INCOMPLETE, {out: {"id": adapter, "pwszName": None}})
        return direct(S_OK, {out: {"id": adapter, "pwszName": self._adapters[adapter]}})

    def _query_initiator_portals(self, args: Mapping[str, Any]) -> Outcome:
        """The page's only code is S_OK: an adapter without portals gives an empty list."""
        adapter = self._adapter(args)
        if adapter is None:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppEnum": None})
        mine = [p for p, owner in self._initiator_portals.items() if owner == adapter]
        return direct(S_OK, {"ppEnum": mine})

    def _login_to_target(self, args: Mapping[str, Any]) -> Outcome:
        """A login needs a target, a path to it and a portal of this adapter; any of them
        missing, or a target that refuses, is a failed login reported through the async."""
        adapter = self._adapter(args)
        if adapter is None:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        target = guid_key(args["targetId"])
        if (
            target not in self._targets
            or target in self._refusing_login
            or not self._reaches(target, args["targetPortalId"])
            or not self._initiator_portal_of(adapter, args["initiatorPortalId"])
        ):
            return self._async(VDS_E_ISCSI_LOGIN_FAILED)
        self._targets[target].manual_logins += 1
        return self._async(S_OK)

    def _reaches(self, target: str, portal_id: Any) -> bool:
        """GUID_NULL lets the initiator choose; a named portal must serve the target, that is
        be in one of the target's portal groups that still exists."""
        portal = guid_key(portal_id)
        return portal == GUID_NULL or any(portal in g.portals for g in self._live_groups(target))

    def _live_groups(self, target: str | None) -> list[_PortalGroup]:
        """The target's portal groups that have not been deleted (by anyone)."""
        return [
            g
            for key, g in self._groups.items()
            if target is not None and g.target == target and key not in self._deleted
        ]

    def _initiator_portal_of(self, adapter: str, portal_id: Any) -> bool:
        portal = guid_key(portal_id)
        return portal == GUID_NULL or self._initiator_portals.get(portal or "") == adapter

    def _logout_from_target(self, args: Mapping[str, Any]) -> Outcome:
        """Log out of every session to the target, on any adapter (the page: 'all sessions')."""
        if self._adapter(args) is None:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        target = guid_key(args["targetId"])
        record = self._targets.get(target or "")
        sessions = [s for s, t in self._sessions.items() if t == target]
        manual = record.manual_logins if record else 0
        if not sessions and not manual:
            return direct(VDS_E_ISCSI_SESSION_NOT_FOUND, {"ppAsync": None})
        leaving = [s for s in sessions if s not in self._refusing_logout]
        if not leaving and not manual:
            return self._async(VDS_E_ISCSI_LOGOUT_FAILED)
        for session in leaving:
            self._forget(session)
        if record is not None:
            record.manual_logins = 0
        staying = len(sessions) - len(leaving)
        return self._async(VDS_E_ISCSI_LOGOUT_INCOMPLETE if staying else S_OK)

    def _forget(self, session: str) -> None:
        del self._sessions[session]
        self._pending.discard(session)
        self._deleted.discard(session)
        self._incomplete.discard(session)

    # -- IVdsIscsiPortalGroup ------------------------------------------------------------

    def _group_check(
        self, args: Mapping[str, Any], out: str, busy: bool
    ) -> tuple[str, _PortalGroup] | Outcome:
        """What every portal group method checks first, in this order: the object behind the
        pointer, the provider's cache, then (where the page lists it) another call running."""
        key = guid_key(args["this"])
        group = self._groups.get(key or "")
        if key is None or group is None:
            return direct(VDS_E_OBJECT_NOT_FOUND, {out: None})
        if group.target is None or key in self._deleted:
            return direct(VDS_E_OBJECT_DELETED, {out: None})
        if self._cache_corrupt:
            return direct(VDS_E_PROVIDER_CACHE_CORRUPT, {out: None})
        if busy and key in self._pending:
            return direct(VDS_E_ANOTHER_CALL_IN_PROGRESS, {out: None})
        return key, group

    def _group_properties(self, args: Mapping[str, Any]) -> Outcome:
        out = "pPortalGroupProp"
        checked = self._group_check(args, out, busy=False)
        if isinstance(checked, Outcome):
            return checked
        key, group = checked
        if key in self._incomplete:
            return direct(VDS_S_PROPERTIES_INCOMPLETE, {out: {"id": key, "tag": None}})
        return direct(S_OK, {out: {"id": key, "tag": group.tag}})

    def _get_target(self, args: Mapping[str, Any]) -> Outcome:
        checked = self._group_check(args, "ppTarget", busy=False)
        if isinstance(checked, Outcome):
            return checked
        return direct(S_OK, {"ppTarget": checked[1].target})

    def _query_associated_portals(self, args: Mapping[str, Any]) -> Outcome:
        checked = self._group_check(args, "ppEnum", busy=True)
        if isinstance(checked, Outcome):
            return checked
        return direct(S_OK, {"ppEnum": list(checked[1].portals)})

    def _add_portal(self, args: Mapping[str, Any]) -> Outcome:
        """A portal belongs to one portal group per target at most (the page's description);
        adding it to a second one of the same target is an invalid argument."""
        checked = self._group_check(args, "ppAsync", busy=True)
        if isinstance(checked, Outcome):
            return checked
        _, group = checked
        portal = guid_key(args["portalId"])
        if portal is None or portal not in self._portals:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        if any(portal in g.portals for g in self._live_groups(group.target)):
            return direct(E_INVALIDARG, {"ppAsync": None})
        group.portals.append(portal)
        return self._async(S_OK)

    def _remove_portal(self, args: Mapping[str, Any]) -> Outcome:
        """A portal that is not a member of this group is, for this group, not found."""
        checked = self._group_check(args, "ppAsync", busy=True)
        if isinstance(checked, Outcome):
            return checked
        _, group = checked
        portal = guid_key(args["portalId"])
        if portal is None or portal not in group.portals:
            return direct(VDS_E_OBJECT_NOT_FOUND, {"ppAsync": None})
        group.portals.remove(portal)
        return self._async(S_OK)

    def _delete(self, args: Mapping[str, Any]) -> Outcome:
        """Only an empty group can go; it leaves its target, and the caller's pointer then
        answers VDS_E_OBJECT_DELETED."""
        checked = self._group_check(args, "ppAsync", busy=True)
        if isinstance(checked, Outcome):
            return checked
        _, group = checked
        if group.portals:
            return direct(VDS_E_ASSOCIATED_PORTALS_EXIST, {"ppAsync": None})
        group.target = None
        return self._async(S_OK)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiator_adapters":
            return [{"id": a, "name": name} for a, name in self._adapters.items()]
        if collection == "initiator_portals":
            return [{"id": p, "adapter": a} for p, a in self._initiator_portals.items()]
        if collection == "targets":
            return [{"id": t, "logged_in": r.manual_logins > 0} for t, r in self._targets.items()]
        if collection == "sessions":
            return [{"id": s, "target": t} for s, t in self._sessions.items()]
        if collection == "portals":
            return [{"id": p} for p in self._portals]
        if collection == "portal_groups":
            return [
                {"id": g, "target": group.target, "tag": group.tag, "portals": list(group.portals)}
                for g, group in self._groups.items()
            ]
        raise Unsupported(f"collection {collection!r}")
