"""iSCSI discovery family (iscsidsc.h): what the iSCSI initiator service keeps.

Initiator instances (HBAs) and their ports, the static target list, login sessions, and the
persistent logins the service replays at boot. Written from the iscsidsc function pages and
the ISCSI_STATUS_QUALIFIERS table: each function checks the objects it names in the order a
caller's mistake would be noticed (initiator, port, target, then the stores it writes), and
every `...A` entry point is the `...W` one after the ANSI round trip of its text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._ansi import AnsiCodePage
from ._world import World, check_args, check_step, direct, u32

ADD_STATIC_TARGET_W, ADD_STATIC_TARGET_A = "AddIScsiStaticTargetW", "AddIScsiStaticTargetA"
REMOVE_STATIC_TARGET_W = "RemoveIScsiStaticTargetW"
REMOVE_STATIC_TARGET_A = "RemoveIScsiStaticTargetA"
REPORT_PERSISTENT_LOGINS_W = "ReportIScsiPersistentLoginsW"
REPORT_PERSISTENT_LOGINS_A = "ReportIScsiPersistentLoginsA"
REMOVE_PERSISTENT_TARGET_W = "RemoveIScsiPersistentTargetW"
REMOVE_PERSISTENT_TARGET_A = "RemoveIScsiPersistentTargetA"
LOGIN_TARGET_W, LOGIN_TARGET_A = "LoginIScsiTargetW", "LoginIScsiTargetA"
LOGOUT_TARGET = "LogoutIScsiTarget"

ERROR_SUCCESS = 0
ERROR_INSUFFICIENT_BUFFER = 0x7A
# iscsidsc.h defines both as ((ULONG)-1): "any port" when logging in, "all ports" when removing.
ISCSI_ANY_INITIATOR_PORT = ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF
ISCSI_TARGET_FLAG_HIDE_STATIC_TARGET = 0x2
MAX_ISCSI_NAME_LEN = 223  # iscsidsc.h; name buffers are MAX_ISCSI_NAME_LEN + 1 characters
# iscsierr.h, as listed on the ISCSI_STATUS_QUALIFIERS page.
ISDSC_INITIATOR_INSTANCE_NOT_FOUND = 0xEFFF0017
ISDSC_INVALID_SESSION_ID = 0xEFFF001C
ISDSC_TARGET_NOT_FOUND = 0xEFFF0029
ISDSC_INVALID_PORT_NUMBER = 0xEFFF002D
ISDSC_DEVICE_BUSY_ON_SESSION = 0xEFFF0040
ISDSC_COULD_NOT_SAVE_PERSISTENT_LOGIN_DATA = 0xEFFF0041
ISDSC_COULD_NOT_REMOVE_PERSISTENT_LOGIN_DATA = 0xEFFF0042
ISDSC_INVALID_ISCSI_NAME = 0xEFFF0051

DEVICE_IN_USE, STORE_FAILS = "session_device_in_use", "persistent_login_store_fails"

_PORTAL_FIELDS = ("SymbolicName", "Address", "Socket")
# Port numbers start high so that a port's id never reads like the short strings ("0", "1")
# drawn as target names: the harness maps every output string equal to an id back to a name.
_FIRST_PORT = 1000
# ISCSI_UNIQUE_SESSION_ID.AdapterUnique of this simulated initiator service's adapter.
_ADAPTER_UNIQUE = 0xFFFFE0000A5C5100

Text = Callable[[str], str]


def _same(text: str) -> str:
    return text


@dataclass(frozen=True)
class Portal:
    """ISCSI_TARGET_PORTAL: a symbolic name, an address and a TCP port."""

    symbolic_name: str
    address: str
    socket: int

    @classmethod
    def parse(cls, value: Any, what: str) -> Portal:
        if not isinstance(value, Mapping):
            raise ValueError(f"{what}: a portal is a mapping of {_PORTAL_FIELDS}, got {value!r}")
        check_step(value, what, required=_PORTAL_FIELDS)
        name, address, socket = (value[f] for f in _PORTAL_FIELDS)
        if not isinstance(name, str) or not isinstance(address, str):
            raise ValueError(f"{what}: SymbolicName and Address must be strings")
        if isinstance(socket, bool) or not isinstance(socket, int) or not 0 <= socket <= 0xFFFF:
            raise ValueError(f"{what}: Socket must be a uint16, got {socket!r}")
        return cls(name, address, socket)

    def is_blank(self) -> bool:
        """The page's 'contains no information': no name, no address, no socket."""
        return self.symbolic_name == "" and self.address == "" and self.socket == 0

    def converted(self, text: Text) -> Portal:
        """The portal an A entry point hands on: both strings through the code page."""
        return Portal(text(self.symbolic_name), text(self.address), self.socket)

    def as_dict(self) -> dict[str, Any]:
        return dict(
            zip(_PORTAL_FIELDS, (self.symbolic_name, self.address, self.socket), strict=True)
        )


_BLANK = Portal("", "", 0)


@dataclass(frozen=True)
class _PersistentLogin:
    """One PERSISTENT_ISCSI_LOGIN_INFO; port None is ISCSI_ANY_INITIATOR_PORT."""

    initiator: str
    port: int | None
    target_name: str
    portal: Portal

    def matches(self, initiator: str, port: int, target_name: str, portal: Portal | None) -> bool:
        """The removal filter; a portal is identified by address and socket, not its name."""
        if self.initiator != initiator or self.target_name != target_name:
            return False
        if port != ISCSI_ALL_INITIATOR_PORTS and self.port != port:
            return False
        if portal is None or portal.is_blank():
            return True
        return (self.portal.address, self.portal.socket) == (portal.address, portal.socket)


@dataclass(frozen=True)
class _StaticTarget:
    name: str
    hidden: bool  # ISCSI_TARGET_FLAG_HIDE_STATIC_TARGET: not reported, so not logged in to


@dataclass(frozen=True)
class _Session:
    informational: bool  # no LUNs reported to PnP, so no device can hold the session open


class IscsiWorld(World):
    """The iSCSI initiator service's view of one machine."""

    steps = ("initiator", "port", "persistent_target", "static_target", "iscsi_session")
    faults = (DEVICE_IN_USE, STORE_FAILS)
    # Sessions are not observable: a login opens one the harness has no name for.
    collections = ("initiators", "ports", "persistent_targets", "static_targets")
    methods = (
        ADD_STATIC_TARGET_W, ADD_STATIC_TARGET_A,
        REMOVE_STATIC_TARGET_W, REMOVE_STATIC_TARGET_A,
        REPORT_PERSISTENT_LOGINS_W, REPORT_PERSISTENT_LOGINS_A,
        REMOVE_PERSISTENT_TARGET_W, REMOVE_PERSISTENT_TARGET_A,
        LOGIN_TARGET_W, LOGIN_TARGET_A,
        LOGOUT_TARGET,
    )  # fmt: skip

    def __init__(self, code_page: str = "cp1252") -> None:
        self._ansi = AnsiCodePage(code_page)
        self._handlers: dict[str, tuple[Callable[[Mapping[str, Any], Text], Outcome], Text]] = {
            ADD_STATIC_TARGET_W: (self._add_static, _same),
            ADD_STATIC_TARGET_A: (self._add_static, self._ansi.round_trip),
            REMOVE_STATIC_TARGET_W: (self._remove_static, _same),
            REMOVE_STATIC_TARGET_A: (self._remove_static, self._ansi.round_trip),
            REPORT_PERSISTENT_LOGINS_W: (self._report, _same),
            REPORT_PERSISTENT_LOGINS_A: (self._report, self._ansi.round_trip),
            REMOVE_PERSISTENT_TARGET_W: (self._remove_persistent, _same),
            REMOVE_PERSISTENT_TARGET_A: (self._remove_persistent, self._ansi.round_trip),
            LOGIN_TARGET_W: (self._login, _same),
            LOGIN_TARGET_A: (self._login, self._ansi.round_trip),
            LOGOUT_TARGET: (self._logout, _same),
        }
        self.reset()

    def reset(self) -> None:
        self._initiators: dict[str, None] = {}
        self._ports: dict[int, str] = {}  # port number -> initiator
        # Lists of (id, object): several logins or static entries may share a name.
        self._logins: list[tuple[str, _PersistentLogin]] = []
        self._static: list[tuple[str, _StaticTarget]] = []
        self._sessions: dict[str, _Session] = {}
        self._busy: set[str] = set()  # sessions with a device in use
        self._store_fails: set[str] = set()  # initiators whose persistent list cannot change
        self._initiator_serial = itertools.count(0)
        self._port_serial = itertools.count(_FIRST_PORT)
        self._login_serial = itertools.count(1)
        self._static_serial = itertools.count(1)
        self._session_serial = itertools.count(1)
        self._connection_serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        makers = {
            "initiator": self._create_initiator,
            "port": self._create_port,
            "persistent_target": self._create_persistent,
            "static_target": self._create_static,
            "iscsi_session": self._create_session,
        }
        if kind not in makers:
            raise Unsupported(f"iscsi-discovery step {kind!r}")
        return makers[kind](fields)

    def _create_initiator(self, fields: Mapping[str, Any]) -> str:
        check_step(fields, "initiator")
        instance = f"ROOT\\ISCSIPRT\\{next(self._initiator_serial):04d}_0"
        self._initiators[instance] = None
        return instance

    def _create_port(self, fields: Mapping[str, Any]) -> str:
        check_step(fields, "port", required=("initiator",))
        number = next(self._port_serial)
        self._ports[number] = self._initiator_ref(fields["initiator"])
        return str(number)

    def _create_persistent(self, fields: Mapping[str, Any]) -> str:
        kind = "persistent_target"
        check_step(fields, kind, required=("initiator", "port", "target_name", "portal"))
        initiator = self._initiator_ref(fields["initiator"])
        port = self._port_ref(fields["port"])
        if self._ports[port] != initiator:
            raise ValueError(
                f"{kind}: port {port} belongs to {self._ports[port]!r}, not to {initiator!r}"
            )
        name = _text_field(fields, "target_name", kind)
        portal = Portal.parse(fields["portal"], f"{kind}.portal")
        login_id = f"persistent-{next(self._login_serial)}"
        self._logins.append((login_id, _PersistentLogin(initiator, port, name, portal)))
        return login_id

    def _create_static(self, fields: Mapping[str, Any]) -> str:
        check_step(fields, "static_target", required=("target_name",), optional=("hidden",))
        name = _text_field(fields, "target_name", "static_target")
        hidden = fields.get("hidden", False)
        if not isinstance(hidden, bool):
            raise ValueError(f"static_target: hidden must be true or false, got {hidden!r}")
        static_id = f"static-{next(self._static_serial)}"
        self._static.append((static_id, _StaticTarget(name, hidden)))
        return static_id

    def _create_session(self, fields: Mapping[str, Any]) -> str:
        check_step(fields, "iscsi_session", optional=("informational",))
        informational = fields.get("informational", False)
        if not isinstance(informational, bool):
            raise ValueError(
                f"iscsi_session: informational must be true or false, got {informational!r}"
            )
        return self._open_session(informational)

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
        if kind == DEVICE_IN_USE:
            check_step(fields, kind, required=("session",))
            session = fields["session"]
            if session not in self._sessions:
                raise ValueError(f"{kind}: session {session!r} is not an id this provider returned")
            self._busy.add(session)
        elif kind == STORE_FAILS:
            check_step(fields, kind, required=("initiator",))
            self._store_fails.add(self._initiator_ref(fields["initiator"]))
        else:
            raise Unsupported(f"iscsi-discovery fault {kind!r}")

    def _initiator_ref(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self._initiators:
            raise ValueError(f"initiator ref {value!r} is not an id this provider returned")
        return value

    def _port_ref(self, value: Any) -> int:
        for number in self._ports:
            if value == str(number):
                return number
        raise ValueError(f"port ref {value!r} is not an id this provider returned")

    def _open_session(self, informational: bool) -> str:
        session_id = f"{_ADAPTER_UNIQUE:016X}-{next(self._session_serial):016X}"
        self._sessions[session_id] = _Session(informational)
        return session_id

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id not in self._handlers:
            raise Unsupported(f"method {method_id!r}")
        handler, text = self._handlers[method_id]
        return handler(args, text)

    def _add_static(self, args: Mapping[str, Any], text: Text) -> Outcome:
        """AddIScsiStaticTarget: add to (or update) the static list; other data is opaque."""
        optional = ("TargetAlias", "Mappings", "LoginOptions", "PortalGroup")
        check_args(
            args,
            "AddIScsiStaticTarget",
            required=("TargetName", "TargetFlags", "Persist"),
            optional=optional,
        )
        name = text(_string(args, "TargetName"))
        flags = _ulong(args, "TargetFlags")
        if not 1 <= len(name) <= MAX_ISCSI_NAME_LEN:
            return direct(ISDSC_INVALID_ISCSI_NAME)
        # The flag says how the target is enumerated from now on, with or without
        # ISCSI_TARGET_FLAG_MERGE_TARGET_INFORMATION (which merges the stored information).
        target = _StaticTarget(name, bool(flags & ISCSI_TARGET_FLAG_HIDE_STATIC_TARGET))
        if any(t.name == name for _, t in self._static):
            self._static = [(i, target if t.name == name else t) for i, t in self._static]
        else:  # A static target a call adds is known by its name: it has no other identity.
            self._static.append((name, target))
        return direct(ERROR_SUCCESS)

    def _remove_static(self, args: Mapping[str, Any], text: Text) -> Outcome:
        check_args(args, "RemoveIScsiStaticTarget", required=("TargetName",))
        name = text(_string(args, "TargetName"))
        kept = [(i, t) for i, t in self._static if t.name != name]
        if len(kept) == len(self._static):
            return direct(ISDSC_TARGET_NOT_FOUND)
        self._static = kept
        return direct(ERROR_SUCCESS)

    def _report(self, args: Mapping[str, Any], text: Text) -> Outcome:
        """ReportIScsiPersistentLogins. The harness passes a buffer as a valid pointer (absent
        from args) or NULL; a NULL buffer holds no entry, so it is too small for any."""
        check_args(
            args,
            "ReportIScsiPersistentLogins",
            optional=("Count", "PersistentLoginInfo", "BufferSizeInBytes"),
        )
        no_buffer = "PersistentLoginInfo" in args and args["PersistentLoginInfo"] is None
        if no_buffer and self._logins:
            return direct(ERROR_INSUFFICIENT_BUFFER)
        infos = None if no_buffer else [self._login_info(login, text) for _, login in self._logins]
        return direct(ERROR_SUCCESS, {"Count": len(self._logins), "PersistentLoginInfo": infos})

    def _login_info(self, login: _PersistentLogin, text: Text) -> dict[str, Any]:
        """PERSISTENT_ISCSI_LOGIN_INFO as modelled; the port is named by the id setup gave."""
        port: int | str = ISCSI_ANY_INITIATOR_PORT if login.port is None else str(login.port)
        return {
            "TargetName": text(login.target_name),
            "InitiatorInstance": text(login.initiator),
            "InitiatorPortNumber": port,
            "TargetPortal": login.portal.converted(text).as_dict(),
        }

    def _remove_persistent(self, args: Mapping[str, Any], text: Text) -> Outcome:
        check_args(
            args,
            "RemoveIScsiPersistentTarget",
            required=("InitiatorInstance", "InitiatorPortNumber", "TargetName"),
            optional=("Portal",),
        )
        instance = text(_string(args, "InitiatorInstance"))
        target_name = text(_string(args, "TargetName"))
        port = _ulong(args, "InitiatorPortNumber")
        raw_portal = args.get("Portal")
        portal = None if raw_portal is None else Portal.parse(raw_portal, "Portal").converted(text)
        return direct(self._remove(instance, port, target_name, portal))

    def _remove(self, instance: str, port: int, target_name: str, portal: Portal | None) -> int:
        """RemoveIScsiPersistentTargetW: the initiator, the port, a match, then the store."""
        if instance not in self._initiators:
            return ISDSC_INITIATOR_INSTANCE_NOT_FOUND
        if port != ISCSI_ALL_INITIATOR_PORTS and self._ports.get(port) != instance:
            return ISDSC_INVALID_PORT_NUMBER
        kept = [
            (i, t) for i, t in self._logins if not t.matches(instance, port, target_name, portal)
        ]
        if len(kept) == len(self._logins):
            return ISDSC_TARGET_NOT_FOUND
        if instance in self._store_fails:  # the HBA keeps the list; it cannot be written
            return ISDSC_COULD_NOT_REMOVE_PERSISTENT_LOGIN_DATA
        self._logins = kept
        return ERROR_SUCCESS

    def _login(self, args: Mapping[str, Any], text: Text) -> Outcome:
        """LoginIScsiTarget: check what the caller named, save persistent data, then log in."""
        check_args(args, "LoginIScsiTarget", required=_LOGIN_REQUIRED, optional=_LOGIN_OPTIONAL)
        if args["InitiatorInstance"] is None:
            # Which initiator the service selects is not documented.
            raise Unsupported("LoginIScsiTarget with a NULL InitiatorInstance")
        instance = text(_string(args, "InitiatorInstance"))
        target_name = text(_string(args, "TargetName"))
        port = _ulong(args, "InitiatorPortNumber")
        raw_portal = args.get("TargetPortal")
        portal = None if raw_portal is None else Portal.parse(raw_portal, "TargetPortal")
        status = self._login_status(instance, port, target_name)
        if status != ERROR_SUCCESS:
            return direct(status)
        if _boolean(args, "IsPersistent"):
            if instance in self._store_fails:  # no session before its data is saved
                return direct(ISDSC_COULD_NOT_SAVE_PERSISTENT_LOGIN_DATA)
            login = _PersistentLogin(
                instance,
                None if port == ISCSI_ANY_INITIATOR_PORT else port,
                target_name,
                _BLANK if portal is None else portal.converted(text),
            )
            # A persistent login a call creates is known by its target name.
            self._logins.append((target_name, login))
        session = self._open_session(_boolean(args, "IsInformationalSession"))
        connection = f"{_ADAPTER_UNIQUE:016X}-{next(self._connection_serial):016X}"
        return direct(ERROR_SUCCESS, {"UniqueSessionId": session, "UniqueConnectionId": connection})

    def _login_status(self, instance: str, port: int, target_name: str) -> int:
        if instance not in self._initiators:
            return ISDSC_INITIATOR_INSTANCE_NOT_FOUND
        if port != ISCSI_ANY_INITIATOR_PORT and self._ports.get(port) != instance:
            return ISDSC_INVALID_PORT_NUMBER
        # "must already exist in the list of discovered targets": a hidden static target is
        # not reported, and ISDSC_TARGET_NOT_FOUND covers targets "marked as hidden".
        if not any(t.name == target_name and not t.hidden for _, t in self._static):
            return ISDSC_TARGET_NOT_FOUND
        return ERROR_SUCCESS

    def _logout(self, args: Mapping[str, Any], text: Text) -> Outcome:
        """LogoutIScsiTarget: an informational session closes at once; another waits for its
        devices to be removable, and a device in use keeps it open."""
        check_args(args, "LogoutIScsiTarget", required=("UniqueSessionId",))
        session_id = args["UniqueSessionId"]
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            return direct(ISDSC_INVALID_SESSION_ID)
        if not session.informational and session_id in self._busy:
            return direct(ISDSC_DEVICE_BUSY_ON_SESSION)
        del self._sessions[session_id]
        self._busy.discard(session_id)
        return direct(ERROR_SUCCESS)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiators":
            return [{"id": i} for i in self._initiators]
        if collection == "ports":
            return [{"id": str(n), "initiator": i} for n, i in self._ports.items()]
        if collection == "persistent_targets":
            return [_login_row(login_id, login) for login_id, login in self._logins]
        if collection == "static_targets":
            return [{"id": i, "target_name": t.name, "hidden": t.hidden} for i, t in self._static]
        raise Unsupported(f"collection {collection!r}")


_LOGIN_REQUIRED = (
    "TargetName", "IsInformationalSession", "InitiatorInstance", "InitiatorPortNumber",
    "IsPersistent",
)  # fmt: skip
# Security flags, mappings, login options and the preshared key shape the session's
# connection, which this model does not simulate: any value is accepted.
_LOGIN_OPTIONAL = (
    "TargetPortal", "SecurityFlags", "Mappings", "LoginOptions", "KeySize", "Key",
    "UniqueSessionId", "UniqueConnectionId",
)  # fmt: skip


def _login_row(login_id: str, login: _PersistentLogin) -> dict[str, Any]:
    return {
        "id": login_id,
        "initiator": login.initiator,
        "port": None if login.port is None else str(login.port),
        "target_name": login.target_name,
        "portal": login.portal.as_dict(),
    }


def _text_field(fields: Mapping[str, Any], name: str, what: str) -> str:
    value = fields[name]
    if not isinstance(value, str):
        raise ValueError(f"{what}: {name} must be a string, got {value!r}")
    return value


def _string(args: Mapping[str, Any], name: str) -> str:
    value = args[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _ulong(args: Mapping[str, Any], name: str) -> int:
    """A ULONG argument; a negative Python int stands for its bit pattern."""
    value = args[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return u32(value)


def _boolean(args: Mapping[str, Any], name: str) -> bool:
    """A BOOLEAN (a UCHAR in C): true or false, or the integer a C caller would pass."""
    value = args[name]
    if not isinstance(value, bool | int):
        raise ValueError(f"{name} must be a BOOLEAN, got {value!r}")
    return bool(value)


__all__ = ["IscsiWorld", "Portal"]
