"""iSCSI discovery (iscsidsc.dll): initiators, ports, static targets, sessions, persistent logins.

`IscsiDsc` is the only Windows-only part: ctypes calls bound from the metadata's declarations.
Everything else is plain Python: the marshalling of ISCSI_TARGET_PORTAL, the portal groups and
the report buffers, and `IscsiFamily`, which builds the abstract steps from real objects, calls
every iscsidsc function the specs name (A and W), observes through the report functions, and
refuses any call that could change a static target, a session or a persistent login it did not
create.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts, _structs
from ._com import bind, hex32, u32
from ._config import Config, Lazy, Ledger, exact_fields
from ._structs import TextError

ADD_STATIC_W, ADD_STATIC_A = "AddIScsiStaticTargetW", "AddIScsiStaticTargetA"
REMOVE_STATIC_W, REMOVE_STATIC_A = "RemoveIScsiStaticTargetW", "RemoveIScsiStaticTargetA"
REPORT_W, REPORT_A = "ReportIScsiPersistentLoginsW", "ReportIScsiPersistentLoginsA"
REMOVE_W, REMOVE_A = "RemoveIScsiPersistentTargetW", "RemoveIScsiPersistentTargetA"
LOGIN_W, LOGIN_A = "LoginIScsiTargetW", "LoginIScsiTargetA"
LOGOUT = "LogoutIScsiTarget"
C = _layouts.CONSTANTS
ERROR_SUCCESS = C["ERROR_SUCCESS"]
ERROR_INSUFFICIENT_BUFFER = C["ERROR_INSUFFICIENT_BUFFER"]
HIDE_STATIC_TARGET = C["ISCSI_TARGET_FLAG_HIDE_STATIC_TARGET"]
# iscsidsc.h: #define ISCSI_ALL_INITIATOR_PORTS ((ULONG)-1) and ISCSI_ANY_INITIATOR_PORT
# ((ULONG)-1). The metadata carries neither (see _layouts.MISSING_CONSTANTS); the specs state
# the same values.
ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF
ISCSI_ANY_INITIATOR_PORT = 0xFFFFFFFF
_PORTAL_FIELDS = ("SymbolicName", "Address", "Socket")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Portal:
    """ISCSI_TARGET_PORTAL's three members."""

    symbolic_name: str
    address: str
    socket: int

    @classmethod
    def parse(cls, value: Any, what: str) -> Portal:
        if not isinstance(value, Mapping) or set(value) != set(_PORTAL_FIELDS):
            raise ValueError(
                f"{what}: a portal is a mapping of exactly {_PORTAL_FIELDS}, got {value!r}"
            )
        name, address, socket = (value[f] for f in _PORTAL_FIELDS)
        if not isinstance(name, str) or not isinstance(address, str):
            raise ValueError(f"{what}: SymbolicName and Address must be strings")
        if isinstance(socket, bool) or not isinstance(socket, int) or not 0 <= socket <= 0xFFFF:
            raise ValueError(f"{what}: Socket must be a USHORT, got {socket!r}")
        return cls(name, address, socket)

    def is_blank(self) -> bool:
        """The page's portal that 'contains no information': every portal."""
        return self.symbolic_name == "" and self.address == "" and self.socket == 0

    def as_dict(self) -> dict[str, Any]:
        return dict(
            zip(_PORTAL_FIELDS, (self.symbolic_name, self.address, self.socket), strict=True)
        )


BLANK_PORTAL = Portal("", "", 0)


@dataclass(frozen=True)
class PersistentLogin:
    """One PERSISTENT_ISCSI_LOGIN_INFO, as far as the abstract state reads it."""

    initiator: str
    port: int
    target_name: str
    portal: Portal

    def same(self, other: PersistentLogin) -> bool:
        """The same login; iSCSI names and host names compare without case."""
        return (
            self.initiator.casefold() == other.initiator.casefold()
            and self.port == other.port
            and self.target_name.casefold() == other.target_name.casefold()
            and self.portal.address.casefold() == other.portal.address.casefold()
            and self.portal.socket == other.portal.socket
        )


@dataclass(frozen=True)
class Session:
    """An iSCSI session as GetIScsiSessionList reports it."""

    id: str
    target: str


@dataclass(frozen=True)
class Login:
    """LoginIScsiTarget's arguments, as the backend passes them (NULL where None)."""

    target_name: str
    informational: bool
    instance: str | None
    port: int
    portal: Portal | None
    security_flags: int
    key: str | None
    persistent: bool


@dataclass(frozen=True)
class StaticTarget:
    """AddIScsiStaticTarget's arguments the backend passes (Mappings, LoginOptions: NULL)."""

    target_name: str
    alias: str | None
    flags: int
    persist: bool
    portals: tuple[Portal, ...] | None


# --------------------------------------------------------------------------- marshalling


def portal_struct(portal: Portal, wide: bool, code_page: str) -> Any:
    """ISCSI_TARGET_PORTALA/W for a portal; TextError if a member cannot be carried."""
    value = _structs.struct("ISCSI_TARGET_PORTALW" if wide else "ISCSI_TARGET_PORTALA")()
    _structs.put_text(
        value, "SymbolicName", portal.symbolic_name, wide, code_page, "Portal.SymbolicName"
    )
    _structs.put_text(value, "Address", portal.address, wide, code_page, "Portal.Address")
    value.Socket = portal.socket
    return value


def portal_from_struct(value: Any, wide: bool, code_page: str) -> Portal:
    return Portal(
        _structs.get_text(value, "SymbolicName", wide, code_page),
        _structs.get_text(value, "Address", wide, code_page),
        int(value.Socket),
    )


def portal_group_struct(portals: list[Portal], wide: bool = True, code_page: str = "ascii") -> Any:
    """ISCSI_TARGET_PORTAL_GROUPA/W with its flexible array sized to `portals`."""
    suffix = "W" if wide else "A"
    layout = _structs.struct(f"ISCSI_TARGET_PORTAL_GROUP{suffix}")
    element = _structs.struct(f"ISCSI_TARGET_PORTAL{suffix}")
    sized = type(
        f"ISCSI_TARGET_PORTAL_GROUP{suffix}_N",
        (ctypes.Structure,),
        {"_fields_": (("Count", ctypes.c_uint32), ("Portals", element * len(portals)))},
    )
    assert sized.Portals.offset == layout.Portals.offset, "flexible array moved"
    group = sized()
    group.Count = len(portals)
    for i, portal in enumerate(portals):
        group.Portals[i] = portal_struct(portal, wide, code_page)
    return group


def parse_persistent_logins(
    buffer: Any, count: int, wide: bool = True, code_page: str = "ascii"
) -> list[PersistentLogin]:
    """The PERSISTENT_ISCSI_LOGIN_INFOA/W array ReportIScsiPersistentLogins filled in."""
    info = _structs.struct("PERSISTENT_ISCSI_LOGIN_INFO" + ("W" if wide else "A"))
    if count * ctypes.sizeof(info) > ctypes.sizeof(buffer):
        raise ValueError(f"{count} logins do not fit in a {ctypes.sizeof(buffer)}-byte buffer")
    array = ctypes.cast(buffer, ctypes.POINTER(info))
    return [
        PersistentLogin(
            _structs.get_text(array[i], "InitiatorInstance", wide, code_page),
            int(array[i].InitiatorPortNumber),
            _structs.get_text(array[i], "TargetName", wide, code_page),
            portal_from_struct(array[i].TargetPortal, wide, code_page),
        )
        for i in range(count)
    ]


def session_id_text(value: Any) -> str:
    """ISCSI_UNIQUE_SESSION_ID as iscsicli writes it: two 16-digit hex halves."""
    return f"{value.AdapterUnique:016x}-{value.AdapterSpecific:016x}"


def session_id_struct(text: str) -> Any:
    unique, _, specific = text.partition("-")
    try:
        value = _structs.struct("ISCSI_UNIQUE_SESSION_ID")(int(unique, 16), int(specific, 16))
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not an iSCSI session id") from None
    return value


def session_id_key(text: str) -> str:
    """A session id in canonical form; text that is none stands for an id derived from it
    (a drawn 'unknown' session is still a well-formed ISCSI_UNIQUE_SESSION_ID on the wire)."""
    try:
        return session_id_text(session_id_struct(text))
    except ValueError:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{digest[:16]}-{digest[16:32]}"


def parse_sessions(buffer: Any, count: int) -> list[Session]:
    """GetIScsiSessionListW's ISCSI_SESSION_INFOW array; its strings point into the buffer."""
    info = _structs.struct("ISCSI_SESSION_INFOW")
    array = ctypes.cast(buffer, ctypes.POINTER(info))
    sessions = []
    for i in range(count):
        target = (
            _structs.read_wide(array[i].TargetNodeName)
            or _structs.read_wide(array[i].TargetName)
            or ""
        )
        sessions.append(Session(session_id_text(array[i].SessionId), target))
    return sessions


def fetch_sized(
    call: Callable[[int], tuple[int, int]], first: int = 4096, tries: int = 4
) -> tuple[int, int]:
    """The report-function dance: call with a size, grow to what it asks while it says the
    buffer is too small. `call(size)` returns (status, size it needs); the result is
    (status, the size that worked)."""
    size = first
    status = ERROR_INSUFFICIENT_BUFFER
    for _ in range(tries):
        status, needed = call(size)
        if status != ERROR_INSUFFICIENT_BUFFER:
            return status, size
        size = max(needed, size * 2)
    return status, size


# --------------------------------------------------------------------------- the DLL


class IscsiApi(Protocol):
    """The iscsidsc.dll calls the family needs (a fake stands in for it in tests)."""

    code_page: str

    def initiators(self) -> list[str]: ...
    def targets(self) -> list[str]: ...
    def persistent_logins(self) -> list[PersistentLogin]: ...
    def sessions(self) -> list[Session]: ...
    def add_static(self, wide: bool, target: StaticTarget) -> int: ...
    def remove_static(self, wide: bool, name: str) -> int: ...
    def login(self, wide: bool, login: Login) -> tuple[int, str | None]: ...
    def report_persistent(
        self, wide: bool, buffer: bool
    ) -> tuple[int, int, list[PersistentLogin] | None]: ...
    def remove_persistent(
        self, wide: bool, instance: str, port: int, name: str, portal: Portal | None
    ) -> int: ...
    def logout(self, session_id: str) -> int: ...


def _suffix(wide: bool) -> str:
    return "W" if wide else "A"


class IscsiDsc:
    """iscsidsc.dll through ctypes; constructing it needs Windows (or a stand-in `dll`)."""

    _EXPORTS = tuple(
        name for name, decl in _layouts.FUNCTIONS.items() if decl["dll"].lower() == "iscsidsc.dll"
    )

    def __init__(self, dll: Any = None, code_page: str | None = None) -> None:
        """`dll`/`code_page` stand in for iscsidsc.dll and GetACP in tests."""
        if dll is None:
            dll = ctypes.WinDLL("iscsidsc")  # type: ignore[attr-defined]
        self._fn = {name: bind(dll, name) for name in self._EXPORTS}
        if code_page is None:
            kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
            code_page = f"cp{bind(kernel32, 'GetACP')()}"
        self.code_page = code_page

    def _status(self, name: str, *args: Any) -> int:
        return u32(self._fn[name](*args))

    def _text(self, text: str | None, wide: bool) -> Any:
        """A PSTR/PWSTR argument: NULL for None, else a buffer the caller keeps alive."""
        if text is None:
            return None
        return ctypes.cast(_structs.c_string(text, wide, self.code_page), ctypes.c_void_p)

    def _wide_list(self, name: str, *leading: Any) -> list[str]:
        buffers: list[Any] = []

        def call(chars: int) -> tuple[int, int]:
            buffers[:] = [(ctypes.c_uint16 * chars)()]
            size = ctypes.c_uint32(chars)
            return self._status(
                name, *leading, ctypes.byref(size), ctypes.cast(buffers[0], ctypes.c_void_p)
            ), size.value

        status, _ = fetch_sized(call)
        if status != ERROR_SUCCESS:
            raise OSError(f"{name} failed with {hex32(status)}")
        return _structs.multi_sz(bytes(buffers[0]))

    def initiators(self) -> list[str]:
        return self._wide_list("ReportIScsiInitiatorListW")

    def targets(self) -> list[str]:
        return self._wide_list("ReportIScsiTargetsW", 0)

    def persistent_logins(self) -> list[PersistentLogin]:
        status, _, logins = self.report_persistent(True, True)
        if status != ERROR_SUCCESS or logins is None:
            raise OSError(f"ReportIScsiPersistentLoginsW failed with {hex32(status)}")
        return logins

    def report_persistent(
        self, wide: bool, buffer: bool
    ) -> tuple[int, int, list[PersistentLogin] | None]:
        """(status, Count, the logins); `buffer` False is the size query (NULL, size 0)."""
        name = "ReportIScsiPersistentLogins" + _suffix(wide)
        info = _structs.struct("PERSISTENT_ISCSI_LOGIN_INFO" + _suffix(wide))
        count = ctypes.c_uint32()
        if not buffer:
            size = ctypes.c_uint32(0)
            status = self._status(name, ctypes.byref(count), None, ctypes.byref(size))
            return status, count.value, None
        buffers: list[Any] = []

        def call(size_bytes: int) -> tuple[int, int]:
            buffers[:] = [ctypes.create_string_buffer(size_bytes)]
            size = ctypes.c_uint32(size_bytes)
            array = ctypes.cast(buffers[0], ctypes.POINTER(info))
            return self._status(name, ctypes.byref(count), array, ctypes.byref(size)), size.value

        status, _ = fetch_sized(call, first=64 * 1024)
        if status != ERROR_SUCCESS:
            return status, count.value, None
        return (
            status,
            count.value,
            parse_persistent_logins(buffers[0], count.value, wide, self.code_page),
        )

    def sessions(self) -> list[Session]:
        buffers: list[Any] = []
        count = ctypes.c_uint32()

        def call(size_bytes: int) -> tuple[int, int]:
            buffers[:] = [ctypes.create_string_buffer(size_bytes)]
            size = ctypes.c_uint32(size_bytes)
            info = ctypes.cast(buffers[0], ctypes.POINTER(_structs.struct("ISCSI_SESSION_INFOW")))
            return self._status(
                "GetIScsiSessionListW", ctypes.byref(size), ctypes.byref(count), info
            ), size.value

        status, _ = fetch_sized(call, first=64 * 1024)
        if status != ERROR_SUCCESS:
            raise OSError(f"GetIScsiSessionListW failed with {hex32(status)}")
        return parse_sessions(buffers[0], count.value)

    def add_static(self, wide: bool, target: StaticTarget) -> int:
        group = None
        if target.portals is not None:
            sized = portal_group_struct(list(target.portals), wide, self.code_page)
            group = ctypes.cast(
                ctypes.pointer(sized),
                ctypes.POINTER(_structs.struct("ISCSI_TARGET_PORTAL_GROUP" + _suffix(wide))),
            )
        name, alias = self._text(target.target_name, wide), self._text(target.alias, wide)
        return self._status(
            "AddIScsiStaticTarget" + _suffix(wide),
            name,
            alias,
            target.flags,
            int(target.persist),
            None,
            None,
            group,
        )

    def remove_static(self, wide: bool, name: str) -> int:
        return self._status("RemoveIScsiStaticTarget" + _suffix(wide), self._text(name, wide))

    def login(self, wide: bool, login: Login) -> tuple[int, str | None]:
        """(status, the new session's id when one was opened)."""
        target, instance = self._text(login.target_name, wide), self._text(login.instance, wide)
        key = None if login.key is None else _structs.c_string(login.key, False, self.code_page)
        portal = (
            None
            if login.portal is None
            else ctypes.byref(portal_struct(login.portal, wide, self.code_page))
        )
        session = _structs.struct("ISCSI_UNIQUE_SESSION_ID")()
        connection = _structs.struct("ISCSI_UNIQUE_SESSION_ID")()
        status = self._status(
            "LoginIScsiTarget" + _suffix(wide),
            target,
            int(login.informational),
            instance,
            login.port,
            portal,
            login.security_flags,
            None,
            None,
            0 if key is None else len(key) - 1,
            None if key is None else ctypes.cast(key, ctypes.c_void_p),
            int(login.persistent),
            ctypes.byref(session),
            ctypes.byref(connection),
        )
        opened = status == ERROR_SUCCESS and (session.AdapterUnique or session.AdapterSpecific)
        return status, session_id_text(session) if opened else None

    def remove_persistent(
        self, wide: bool, instance: str, port: int, name: str, portal: Portal | None
    ) -> int:
        value = (
            None if portal is None else ctypes.byref(portal_struct(portal, wide, self.code_page))
        )
        return self._status(
            "RemoveIScsiPersistentTarget" + _suffix(wide),
            self._text(instance, wide),
            port,
            self._text(name, wide),
            value,
        )

    def logout(self, session_id: str) -> int:
        return self._status(LOGOUT, ctypes.byref(session_id_struct(session_id_key(session_id))))


# --------------------------------------------------------------------------- the family


def could_remove(
    login: PersistentLogin,
    instance: str,
    port: int,
    name: str,
    portal: Portal | None,
    variants: Callable[[str], set[str]],
) -> bool:
    """Whether RemoveIScsiPersistentTarget with these arguments might remove `login`.

    Deliberately generous (no case, both the text and its ANSI round trip), because it guards
    the host: a login this says no to is one the call cannot touch.
    """

    def among(value: str, text: str) -> bool:
        return value.casefold() in {v.casefold() for v in variants(text)}

    if not among(login.initiator, instance) or not among(login.target_name, name):
        return False
    if port != ISCSI_ALL_INITIATOR_PORTS and login.port != port:
        return False
    if portal is None or portal.is_blank():
        return True
    return among(login.portal.address, portal.address) and login.portal.socket == portal.socket


_FAULT_REASONS = {
    "session_device_in_use": "a device of a real session cannot be held in use on demand",
    "persistent_login_store_fails": "making an HBA's persistent login store fail needs the "
    "miniport vendor's own test hooks",
}


@dataclass
class _Static:
    """A static target this provider made (by a step or by a call)."""

    target_name: str
    hidden: bool


class IscsiFamily:
    """The iscsi-discovery family on a real initiator."""

    steps = ("initiator", "port", "persistent_target", "static_target", "iscsi_session")
    faults = tuple(_FAULT_REASONS)
    collections = ("initiators", "ports", "persistent_targets", "static_targets", "iscsi_sessions")
    methods = (
        ADD_STATIC_W,
        ADD_STATIC_A,
        REMOVE_STATIC_W,
        REMOVE_STATIC_A,
        REPORT_W,
        REPORT_A,
        REMOVE_W,
        REMOVE_A,
        LOGIN_W,
        LOGIN_A,
        LOGOUT,
    )

    def __init__(self, config: Config, api: Lazy[IscsiApi]) -> None:
        self.config = config
        self.api = api
        self.ledger = Ledger()
        self._makers: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
            "initiator": self._borrow_initiator,
            "port": self._borrow_port,
            "persistent_target": self._create_persistent_login,
            "static_target": self._create_static,
            "iscsi_session": self._create_session,
        }
        self._handlers: dict[str, Callable[[bool, Mapping[str, Any]], Outcome]] = {
            "AddIScsiStaticTarget": self._add_static,
            "RemoveIScsiStaticTarget": self._remove_static,
            "ReportIScsiPersistentLogins": self._report,
            "RemoveIScsiPersistentTarget": self._remove_persistent,
            "LoginIScsiTarget": self._login,
        }
        self._observers: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "initiators": lambda: [{"id": i} for i in self._initiators.values()],
            "ports": lambda: [{"id": str(n), "initiator": o} for o, n in self._ports.values()],
            "persistent_targets": self._observe_logins,
            "static_targets": self._observe_static,
            "iscsi_sessions": self._observe_sessions,
        }
        self.reset_names()

    def reset_names(self) -> None:
        self._initiators: dict[str, str] = {}  # scenario name -> instance
        self._ports: dict[str, tuple[str, int]] = {}  # scenario name -> (instance, number)
        self._created: dict[str, PersistentLogin] = {}  # provider id -> login
        self._static: dict[str, _Static] = {}  # provider id -> static target made here
        self._helpers: set[str] = set()  # static targets added only so a login can be made
        self._sessions: dict[str, bool] = {}  # named session id -> informational
        self._unnamed: set[str] = set()  # sessions a LoginIScsiTarget call opened
        self._serial = itertools.count(1)

    def reset(self) -> None:
        """Undo what this case created, then forget every name."""
        try:
            self.ledger.undo_all()
        finally:
            self.reset_names()

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, name: str, fields: Mapping[str, Any]) -> str:
        maker = self._makers.get(kind)
        if maker is None:
            raise Unsupported(f"iscsi-discovery step {kind!r}")
        return maker(name, fields)

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind in _FAULT_REASONS:
            raise Unsupported(f"fault {kind!r}: {_FAULT_REASONS[kind]}")
        raise Unsupported(f"iscsi-discovery has no fault {kind!r}")

    def _borrow_initiator(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "initiator", ())
        entry = self.config.require(
            "initiators", name, "an iSCSI initiator (an HBA instance) cannot be created"
        )
        instance = entry["instance"]
        known = self.api.get().initiators()
        if instance.casefold() not in {i.casefold() for i in known}:
            raise Unsupported(
                f"initiators.{name}: {instance!r} is not an initiator on this "
                f"host (ReportIScsiInitiatorList: {known})"
            )
        self._initiators[name] = instance
        return instance

    def _borrow_port(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "port", ("initiator",))
        entry = self.config.require("ports", name, "an HBA port cannot be created")
        owner = self._initiators.get(entry["initiator"])
        if owner is None or owner != fields["initiator"]:
            raise Unsupported(
                f"ports.{name} is a port of {entry['initiator']}, but the step "
                f"asks for it on {fields['initiator']!r}"
            )
        self._ports[name] = (owner, entry["number"])
        return str(entry["number"])

    def _create_persistent_login(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "persistent_target", ("initiator", "port", "target_name", "portal"))
        login = self._login_of(fields)
        api = self.api.get()
        if any(login.same(existing) for existing in api.persistent_logins()):
            raise Unsupported(
                f"the host already has a persistent login like {login}; the "
                "provider neither adopts nor removes the host's own"
            )
        self._ensure_target(login.target_name, login.portal)
        status, _ = _marshal(
            lambda: api.login(
                True,
                Login(
                    login.target_name,
                    False,
                    login.initiator,
                    login.port,
                    login.portal,
                    0,
                    None,
                    True,
                ),
            )
        )
        if status != ERROR_SUCCESS:
            raise Unsupported(
                f"LoginIScsiTargetW (persistent) refused {login.target_name!r} "
                f"with {hex32(status)}; the step cannot be built here"
            )
        login_id = f"persistent-login-{next(self._serial)}"
        self._record_login(login_id, login)
        if login_id not in self._created:
            raise Unsupported(
                "LoginIScsiTargetW reported success but no such persistent login appeared"
            )
        return login_id

    def _record_login(self, login_id: str, login: PersistentLogin) -> None:
        """A persistent login made here: in the ledger, and known once the host reports it."""
        if login_id in self.ledger:
            return  # the same login again (a call repeated): one entry undoes it
        self.ledger.add(login_id, f"persistent login {login}", lambda: self._remove_own(login))
        if any(login.same(found) for found in self.api.get().persistent_logins()):
            self._created[login_id] = login
        else:
            self.ledger.undo(login_id)

    def _login_of(self, fields: Mapping[str, Any]) -> PersistentLogin:
        instance, port, name = fields["initiator"], fields["port"], fields["target_name"]
        if instance not in self._initiators.values():
            raise Unsupported(
                f"initiator ref {instance!r} is not an id this provider returned in "
                "this test case (its step was not supported?)"
            )
        number = self._port_number(instance, port)
        if number is None:
            raise ValueError(
                f"port ref {port!r} is not a port this provider returned for {instance!r}"
            )
        if not isinstance(name, str):
            raise ValueError(f"persistent_target: target_name must be a string, got {name!r}")
        return PersistentLogin(
            instance, number, name, Portal.parse(fields["portal"], "persistent_target.portal")
        )

    def _port_number(self, instance: str, port: Any) -> int | None:
        return next(
            (n for owner, n in self._ports.values() if owner == instance and str(n) == str(port)),
            None,
        )

    def _ensure_target(self, name: str, portal: Portal | None) -> None:
        """LoginIScsiTarget needs a discovered target: add a static one if it is not known."""
        api = self.api.get()
        if name.casefold() in {t.casefold() for t in api.targets()}:
            return
        portals = None if portal is None or portal.is_blank() else (portal,)
        status = _marshal(lambda: api.add_static(True, StaticTarget(name, None, 0, False, portals)))
        if status != ERROR_SUCCESS:
            raise Unsupported(
                f"AddIScsiStaticTargetW refused {name!r} with {hex32(status)}; "
                "the target cannot be made known to the initiator"
            )
        self._helpers.add(name.casefold())
        self.ledger.add(
            f"static-target:{name.casefold()}",
            f"static target {name!r}",
            lambda: self._remove_static_own(name),
        )

    def _create_static(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "static_target", ("target_name",), ("hidden",))
        target_name, hidden = fields["target_name"], fields.get("hidden", False)
        if not isinstance(target_name, str) or not isinstance(hidden, bool):
            raise ValueError(
                f"static_target: target_name is a string and hidden a bool, got "
                f"{target_name!r}, {hidden!r}"
            )
        if any(s.target_name.casefold() == target_name.casefold() for s in self._static.values()):
            raise Unsupported(
                "the initiator keeps one static target per name; the step asks "
                f"for a second {target_name!r}"
            )
        self._refuse_foreign_static(target_name, lambda t: {t})
        api = self.api.get()
        flags = HIDE_STATIC_TARGET if hidden else 0
        status = _marshal(
            lambda: api.add_static(True, StaticTarget(target_name, None, flags, False, None))
        )
        if status != ERROR_SUCCESS:
            raise Unsupported(
                f"AddIScsiStaticTargetW refused {target_name!r} with "
                f"{hex32(status)}; the step cannot be built here"
            )
        static_id = f"static-target-{next(self._serial)}"
        self._keep_static(static_id, target_name, hidden)
        return static_id

    def _keep_static(self, static_id: str, name: str, hidden: bool) -> None:
        self._static[static_id] = _Static(name, hidden)
        key = f"static-target:{name.casefold()}"
        self._helpers.discard(name.casefold())
        if key not in self.ledger:
            self.ledger.add(key, f"static target {name!r}", lambda: self._remove_static_own(name))

    def _create_session(self, name: str, fields: Mapping[str, Any]) -> str:
        exact_fields(fields, "iscsi_session", (), ("informational",))
        informational = fields.get("informational", False)
        if not isinstance(informational, bool):
            raise ValueError(f"iscsi_session: informational must be a bool, got {informational!r}")
        entry = self.config.require("iscsi_sessions", name, "a session needs a reachable target")
        portal = Portal("", entry["address"], entry["port"])
        self._ensure_target(entry["iqn"], portal)
        api = self.api.get()
        status, session = _marshal(
            lambda: api.login(
                True,
                Login(
                    entry["iqn"],
                    informational,
                    None,
                    ISCSI_ANY_INITIATOR_PORT,
                    portal,
                    0,
                    None,
                    False,
                ),
            )
        )
        if status != ERROR_SUCCESS or session is None:
            raise Unsupported(
                f"LoginIScsiTargetW to {entry['iqn']!r} gave {hex32(status)}; the "
                "session cannot be built here"
            )
        self._keep_session(session)
        self._sessions[session] = informational
        return session

    def _keep_session(self, session: str) -> None:
        self.ledger.add(
            f"session:{session}", f"iSCSI session {session}", lambda: self._logout_own(session)
        )

    def _remove_own(self, login: PersistentLogin) -> None:
        """Undo one created login: exactly its initiator, port, target and portal."""
        api = self.api.get()
        if not any(login.same(found) for found in api.persistent_logins()):
            return  # the call under test already removed it
        status = api.remove_persistent(
            True, login.initiator, login.port, login.target_name, login.portal
        )
        if status != ERROR_SUCCESS:
            raise OSError(f"RemoveIScsiPersistentTargetW gave {hex32(status)}")

    def _remove_static_own(self, name: str) -> None:
        """Remove a static target made here; one already gone (or hidden and gone) is fine."""
        status = self.api.get().remove_static(True, name)
        if status not in (ERROR_SUCCESS, _TARGET_NOT_FOUND):
            raise OSError(f"RemoveIScsiStaticTargetW gave {hex32(status)}")

    def _logout_own(self, session: str) -> None:
        api = self.api.get()
        if session not in {s.id for s in api.sessions()}:
            return
        status = api.logout(session)
        if status != ERROR_SUCCESS:
            raise OSError(f"LogoutIScsiTarget gave {hex32(status)}")

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id == LOGOUT:
            return self._logout(args)
        handler = self._handlers.get(method_id[:-1]) if method_id in self.methods else None
        if handler is None:
            raise Unsupported(f"method {method_id!r}")
        return handler(method_id.endswith("W"), args)

    def _variants(self, wide: bool) -> Callable[[str], set[str]]:
        """What a text may stand for inside the W implementation (generous, for the guards)."""
        code_page = self.api.get().code_page

        def variants(text: str) -> set[str]:
            if wide:
                return {text}
            return {
                text,
                text.encode(code_page, errors="replace").decode(code_page, errors="replace"),
            }

        return variants

    def _as_stored(self, wide: bool, text: str) -> str:
        """The text as the W implementation keeps it: an A caller's text after its code page."""
        if wide:
            return text
        code_page = self.api.get().code_page
        return text.encode(code_page, errors="replace").decode(code_page, errors="replace")

    def _refuse_foreign_static(self, name: str, variants: Callable[[str], set[str]]) -> None:
        """Unsupported if the host already reports a target by this name that is not ours:
        adding would update it, removing would remove it."""
        mine = {s.target_name.casefold() for s in self._static.values()} | self._helpers
        wanted = {v.casefold() for v in variants(name)}
        foreign = [
            t
            for t in self.api.get().targets()
            if t.casefold() in wanted and t.casefold() not in mine
        ]
        if foreign:
            raise Unsupported(
                f"the host already has a target named {foreign[0]!r} that this "
                "provider did not add; the host's own are never changed"
            )

    def _add_static(self, wide: bool, args: Mapping[str, Any]) -> Outcome:
        method = "AddIScsiStaticTarget" + _suffix(wide)
        exact_fields(
            args,
            method,
            ("TargetName", "TargetFlags", "Persist"),
            ("TargetAlias", "Mappings", "LoginOptions", "PortalGroup"),
        )
        _only_null(args, method, ("Mappings", "LoginOptions"))
        name, alias = _text_arg(args, "TargetName"), _text_arg(args, "TargetAlias", True)
        flags, persist = _ulong_arg(args, "TargetFlags"), _bool_arg(args, "Persist")
        portals = _portal_group_arg(args.get("PortalGroup"))
        self._refuse_foreign_static(name, self._variants(wide))
        api = self.api.get()
        status = _marshal(
            lambda: api.add_static(wide, StaticTarget(name, alias, flags, persist, portals))
        )
        if status == ERROR_SUCCESS:
            self._added_static(self._as_stored(wide, name), bool(flags & HIDE_STATIC_TARGET))
        return Outcome(hresult=u32(status))

    def _added_static(self, name: str, hidden: bool) -> None:
        """A call added (or updated) a static target: update ours of that name, or keep the
        new one under its name (the only identity the API gives it)."""
        same = [i for i, s in self._static.items() if s.target_name == name]
        for static_id in same:
            self._static[static_id].hidden = hidden
        if not same:
            self._keep_static(name, name, hidden)

    def _remove_static(self, wide: bool, args: Mapping[str, Any]) -> Outcome:
        method = "RemoveIScsiStaticTarget" + _suffix(wide)
        exact_fields(args, method, ("TargetName",))
        name = _text_arg(args, "TargetName")
        self._refuse_foreign_static(name, self._variants(wide))
        status = _marshal(lambda: self.api.get().remove_static(wide, name))
        if status == ERROR_SUCCESS:
            stored = self._as_stored(wide, name)
            for static_id in [i for i, s in self._static.items() if s.target_name == stored]:
                del self._static[static_id]
        return Outcome(hresult=u32(status))

    def _report(self, wide: bool, args: Mapping[str, Any]) -> Outcome:
        method = "ReportIScsiPersistentLogins" + _suffix(wide)
        exact_fields(args, method, (), ("Count", "PersistentLoginInfo", "BufferSizeInBytes"))
        _never_null(args, method, ("Count", "BufferSizeInBytes"))
        api = self.api.get()
        foreign = self._foreign_logins(api.persistent_logins())
        if foreign:
            raise Unsupported(
                f"the report would hold {len(foreign)} persistent login(s) of the "
                f"host's own (first: {foreign[0]}), which no case can name"
            )
        buffer = args.get("PersistentLoginInfo", True) is not None
        status, count, logins = api.report_persistent(wide, buffer)
        if status != ERROR_SUCCESS:
            return Outcome(hresult=u32(status))
        outputs: dict[str, Any] = {"Count": count}
        if logins is not None:
            outputs["PersistentLoginInfo"] = [self._login_info(g) for g in logins]
        return Outcome(hresult=u32(status), outputs=outputs)

    def _foreign_logins(self, present: list[PersistentLogin]) -> list[PersistentLogin]:
        mine = list(self._created.values())
        return [g for g in present if not any(g.same(own) for own in mine)]

    def _login_info(self, login: PersistentLogin) -> dict[str, Any]:
        """PERSISTENT_ISCSI_LOGIN_INFO as the specs model it; a port by the id setup gave."""
        port: int | str = login.port if login.port == ISCSI_ANY_INITIATOR_PORT else str(login.port)
        return {
            "TargetName": login.target_name,
            "InitiatorInstance": login.initiator,
            "InitiatorPortNumber": port,
            "TargetPortal": login.portal.as_dict(),
        }

    def _remove_persistent(self, wide: bool, args: Mapping[str, Any]) -> Outcome:
        method_id = "RemoveIScsiPersistentTarget" + _suffix(wide)
        instance, port, name, portal = _remove_args(method_id, args)
        api = self.api.get()
        self._refuse_foreign(api, wide, instance, port, name, portal)
        status = _marshal(lambda: api.remove_persistent(wide, instance, port, name, portal))
        self._forget_removed(api)
        return Outcome(hresult=u32(status))

    def _refuse_foreign(
        self, api: IscsiApi, wide: bool, instance: str, port: int, name: str, portal: Portal | None
    ) -> None:
        """Unsupported if the call might remove a persistent login this provider did not make."""
        variants = self._variants(wide)
        foreign = [
            login
            for login in self._foreign_logins(api.persistent_logins())
            if could_remove(login, instance, port, name, portal, variants)
        ]
        if foreign:
            raise Unsupported(
                f"this call could also remove {len(foreign)} persistent login(s) "
                f"the provider did not create (first: {foreign[0]}); the host's "
                "own logins are never touched"
            )

    def _forget_removed(self, api: IscsiApi) -> None:
        present = api.persistent_logins()
        for login_id, login in list(self._created.items()):
            if not any(login.same(found) for found in present):
                del self._created[login_id]
                self.ledger.discard(login_id)

    def _login(self, wide: bool, args: Mapping[str, Any]) -> Outcome:
        """LoginIScsiTarget: a persistent login is saved (no session is opened until the
        initiator restarts, and the ledger removes it before that); a session is opened only to
        a target the config lends for sessions."""
        login = self._login_args(wide, args)
        api = self.api.get()
        if login.persistent:
            candidate = self._persistent_of(wide, login)
            if any(candidate.same(g) for g in self._foreign_logins(api.persistent_logins())):
                raise Unsupported(
                    f"the host already has a persistent login like {candidate}; "
                    "saving it again would change the host's own"
                )
        elif not self._lent_for_sessions(login.target_name):
            raise Unsupported(
                f"a session to {login.target_name!r} would be a network login to a "
                "target the config does not lend (iscsi_sessions: iqn)"
            )
        status, session = _marshal(lambda: api.login(wide, login))
        if session is not None:
            self._keep_session(session)
            self._unnamed.add(session)
        if status == ERROR_SUCCESS and login.persistent:
            candidate = self._persistent_of(wide, login)
            self._record_login(candidate.target_name, candidate)
        return Outcome(hresult=u32(status))

    def _login_args(self, wide: bool, args: Mapping[str, Any]) -> Login:
        method = "LoginIScsiTarget" + _suffix(wide)
        required = (
            "TargetName",
            "IsInformationalSession",
            "InitiatorInstance",
            "InitiatorPortNumber",
            "IsPersistent",
        )
        optional = (
            "TargetPortal",
            "SecurityFlags",
            "Mappings",
            "LoginOptions",
            "KeySize",
            "Key",
            "UniqueSessionId",
            "UniqueConnectionId",
        )
        exact_fields(args, method, required, optional)
        _only_null(args, method, ("Mappings", "LoginOptions"))
        _never_null(args, method, ("UniqueSessionId", "UniqueConnectionId"))
        if args["InitiatorInstance"] is None:
            raise Unsupported(
                "LoginIScsiTarget with a NULL InitiatorInstance lets the service "
                "pick an initiator, which no case can name"
            )
        instance = _text_arg(args, "InitiatorInstance")
        port = self._port_arg(instance, args["InitiatorPortNumber"])
        raw = args.get("TargetPortal")
        portal = None if raw is None else Portal.parse(raw, f"{method}.TargetPortal")
        key = _text_arg(args, "Key", True) if "Key" in args else None
        if key is not None and args.get("KeySize") not in (None, len(key)):
            raise Unsupported(f"{method}: a KeySize other than the key's length is not passed")
        return Login(
            _text_arg(args, "TargetName"),
            _bool_arg(args, "IsInformationalSession"),
            instance,
            port,
            portal,
            _ulong_arg(args, "SecurityFlags", 64),
            key,
            _bool_arg(args, "IsPersistent"),
        )

    def _port_arg(self, instance: str, value: Any) -> int:
        """A port argument: a port id this case lent, or a number (ISCSI_ANY_INITIATOR_PORT)."""
        number = self._port_number(instance, value) if isinstance(value, str) else None
        if number is not None:
            return number
        if isinstance(value, str):
            lent = {str(n) for _, n in self._ports.values()}
            if value in lent:
                return int(value)
            raise Unsupported(f"port {value!r} is not a port this case lent")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"InitiatorPortNumber must be a port id or a ULONG, got {value!r}")
        return u32(value)

    def _persistent_of(self, wide: bool, login: Login) -> PersistentLogin:
        def stored(text: str) -> str:
            return self._as_stored(wide, text)

        portal = login.portal or BLANK_PORTAL
        return PersistentLogin(
            stored(login.instance or ""),
            login.port,
            stored(login.target_name),
            Portal(stored(portal.symbolic_name), stored(portal.address), portal.socket),
        )

    def _lent_for_sessions(self, name: str) -> bool:
        lent = self.config.sections.get("iscsi_sessions", {}).values()
        return name.casefold() in {e["iqn"].casefold() for e in lent}

    def _logout(self, args: Mapping[str, Any]) -> Outcome:
        exact_fields(args, LOGOUT, ("UniqueSessionId",))
        value = args["UniqueSessionId"]
        if not isinstance(value, str):
            raise Unsupported(f"{LOGOUT}: a NULL or non-text session id is not passed")
        session = session_id_key(value)
        api = self.api.get()
        ours = set(self._sessions) | self._unnamed
        if session not in ours and session in {s.id for s in api.sessions()}:
            raise Unsupported(f"{session} is a session of the host's own; it is never ended")
        status = api.logout(session)
        present = {s.id for s in api.sessions()}
        for gone in [s for s in ours if s not in present]:
            self._sessions.pop(gone, None)
            self._unnamed.discard(gone)
            self.ledger.discard(f"session:{gone}")
        return Outcome(hresult=u32(status))

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        observer = self._observers.get(collection)
        if observer is None:
            raise Unsupported(f"collection {collection!r}")
        return observer()

    def _observe_logins(self) -> list[dict[str, Any]]:
        """The created logins ReportIScsiPersistentLoginsW still shows, as it shows them."""
        present = self.api.get().persistent_logins()
        rows = []
        for login_id, login in self._created.items():
            found = next((p for p in present if login.same(p)), None)
            if found is not None:
                port = None if found.port == ISCSI_ANY_INITIATOR_PORT else str(found.port)
                rows.append(
                    {
                        "id": login_id,
                        "initiator": login.initiator,
                        "port": port,
                        "target_name": found.target_name,
                        "portal": found.portal.as_dict(),
                    }
                )
        return rows

    def _observe_static(self) -> list[dict[str, Any]]:
        """Static targets made here, as ReportIScsiTargets shows them; a hidden one is not
        reported, so the collection cannot be shown while one exists."""
        if any(s.hidden for s in self._static.values()):
            raise Unsupported(
                "a hidden static target is not reported by ReportIScsiTargets, "
                "so the static target list cannot be read back"
            )
        present = {t.casefold() for t in self.api.get().targets()}
        return [
            {"id": i, "target_name": s.target_name, "hidden": s.hidden}
            for i, s in self._static.items()
            if s.target_name.casefold() in present
        ]

    def _observe_sessions(self) -> list[dict[str, Any]]:
        present = {s.id for s in self.api.get().sessions()}
        return [
            {"id": s, "informational": info} for s, info in self._sessions.items() if s in present
        ]


_TARGET_NOT_FOUND = 0xEFFF0029  # iscsierr.h ISDSC_TARGET_NOT_FOUND (not in the metadata)


def _remove_args(method_id: str, args: Mapping[str, Any]) -> tuple[str, int, str, Portal | None]:
    required = ("InitiatorInstance", "InitiatorPortNumber", "TargetName")
    missing = [n for n in required if n not in args]
    if missing:
        raise ValueError(f"{method_id}: missing argument(s) {', '.join(missing)}")
    extra = sorted(set(args) - {*required, "Portal"})
    if extra:
        raise Unsupported(f"{method_id}: unexpected argument(s) {', '.join(extra)}")
    instance, port, name = (args[n] for n in required)
    if not isinstance(instance, str) or not isinstance(name, str):
        raise ValueError(f"{method_id}: InitiatorInstance and TargetName must be strings")
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValueError(f"{method_id}: InitiatorPortNumber must be an int, got {port!r}")
    raw = args.get("Portal")
    portal = None if raw is None else Portal.parse(raw, f"{method_id}.Portal")
    return instance, u32(port), name, portal


def _text_arg(args: Mapping[str, Any], name: str, nullable: bool = False) -> Any:
    value = args.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _ulong_arg(args: Mapping[str, Any], name: str, bits: int = 32) -> int:
    value = args.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value & ((1 << bits) - 1)


def _bool_arg(args: Mapping[str, Any], name: str) -> bool:
    value = args[name]
    if not isinstance(value, bool | int):
        raise ValueError(f"{name} must be a BOOLEAN, got {value!r}")
    return bool(value)


def _portal_group_arg(value: Any) -> tuple[Portal, ...] | None:
    """PortalGroup: NULL, or a list of portals (the backend sizes the flexible array)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise Unsupported(f"PortalGroup {value!r}: only NULL or a list of portals is passed")
    return tuple(Portal.parse(p, "PortalGroup.Portals") for p in value)


def _only_null(args: Mapping[str, Any], method: str, names: tuple[str, ...]) -> None:
    """Structures the backend passes only as NULL (the specs model nothing inside them)."""
    given = [n for n in names if args.get(n) is not None]
    if given:
        raise Unsupported(
            f"{method}: {', '.join(given)} passed only as NULL (the model holds "
            "nothing that could fill them)"
        )


def _never_null(args: Mapping[str, Any], method: str, names: tuple[str, ...]) -> None:
    """Out-pointers the backend always passes: NULL would let the DLL write through it."""
    nulls = [n for n in names if n in args and args[n] is None]
    if nulls:
        raise Unsupported(
            f"{method}: a NULL {', '.join(nulls)} is not passed to the real DLL, "
            "which may write through it"
        )


def _marshal(call: Callable[[], Any]) -> Any:
    """Run a call whose arguments are marshalled inside; text C cannot carry is Unsupported."""
    try:
        return call()
    except TextError as exc:
        raise Unsupported(f"cannot pass this text to the API unchanged: {exc}") from exc


__all__ = [
    "IscsiDsc",
    "IscsiFamily",
    "Login",
    "PersistentLogin",
    "Portal",
    "Session",
    "StaticTarget",
]
