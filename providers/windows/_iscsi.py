"""iSCSI discovery (iscsidsc.dll): persistent logins, the initiators and ports they live on.

`IscsiDsc` is the only Windows-only part: ctypes calls bound from the metadata's declarations.
Everything else is plain Python: the marshalling of ISCSI_TARGET_PORTAL and the report buffers,
and `IscsiFamily`, which builds the abstract steps from real objects, calls
RemoveIScsiPersistentTargetA/W, observes through ReportIScsiPersistentLogins, and refuses any call
that could remove a persistent login it did not create.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from conformance.provider import Outcome, Unsupported

from . import _layouts, _structs
from ._com import bind, hex32, u32
from ._config import Config, Lazy, Ledger
from ._structs import TextError

REMOVE_W = "RemoveIScsiPersistentTargetW"
REMOVE_A = "RemoveIScsiPersistentTargetA"
C = _layouts.CONSTANTS
ERROR_SUCCESS = C["ERROR_SUCCESS"]
ERROR_INSUFFICIENT_BUFFER = C["ERROR_INSUFFICIENT_BUFFER"]
# iscsidsc.h: #define ISCSI_ALL_INITIATOR_PORTS ((ULONG)-1). The metadata does not carry it
# (see _layouts.MISSING_CONSTANTS); the specs state the same value.
ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF
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
            raise ValueError(f"{what}: a portal is a mapping of exactly {_PORTAL_FIELDS}, "
                             f"got {value!r}")
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
        return dict(zip(_PORTAL_FIELDS, (self.symbolic_name, self.address, self.socket),
                        strict=True))


@dataclass(frozen=True)
class PersistentLogin:
    """One PERSISTENT_ISCSI_LOGIN_INFO, as far as the abstract state reads it."""

    initiator: str
    port: int
    target_name: str
    portal: Portal

    def same(self, other: PersistentLogin) -> bool:
        """The same login; iSCSI names and host names compare without case."""
        return (self.initiator.casefold() == other.initiator.casefold()
                and self.port == other.port
                and self.target_name.casefold() == other.target_name.casefold()
                and self.portal.address.casefold() == other.portal.address.casefold()
                and self.portal.socket == other.portal.socket)


@dataclass(frozen=True)
class Session:
    """An iSCSI session as GetIScsiSessionList reports it."""

    id: str
    target: str


# --------------------------------------------------------------------------- marshalling


def portal_struct(portal: Portal, wide: bool, code_page: str) -> Any:
    """ISCSI_TARGET_PORTALA/W for a portal; TextError if a member cannot be carried."""
    value = _structs.struct("ISCSI_TARGET_PORTALW" if wide else "ISCSI_TARGET_PORTALA")()
    _structs.put_text(value, "SymbolicName", portal.symbolic_name, wide, code_page,
                      "Portal.SymbolicName")
    _structs.put_text(value, "Address", portal.address, wide, code_page, "Portal.Address")
    value.Socket = portal.socket
    return value


def portal_from_struct(value: Any, wide: bool, code_page: str) -> Portal:
    return Portal(_structs.get_text(value, "SymbolicName", wide, code_page),
                  _structs.get_text(value, "Address", wide, code_page), int(value.Socket))


def portal_group_struct(portals: list[Portal]) -> Any:
    """ISCSI_TARGET_PORTAL_GROUPW with its flexible array sized to `portals`."""
    layout = _structs.struct("ISCSI_TARGET_PORTAL_GROUPW")
    element = _structs.struct("ISCSI_TARGET_PORTALW")
    sized = type("ISCSI_TARGET_PORTAL_GROUPW_N", (ctypes.Structure,), {
        "_fields_": (("Count", ctypes.c_uint32), ("Portals", element * len(portals)))})
    assert sized.Portals.offset == layout.Portals.offset, "flexible array moved"
    group = sized()
    group.Count = len(portals)
    for i, portal in enumerate(portals):
        group.Portals[i] = portal_struct(portal, wide=True, code_page="ascii")
    return group


def parse_persistent_logins(buffer: Any, count: int) -> list[PersistentLogin]:
    """The PERSISTENT_ISCSI_LOGIN_INFOW array ReportIScsiPersistentLoginsW filled in."""
    info = _structs.struct("PERSISTENT_ISCSI_LOGIN_INFOW")
    if count * ctypes.sizeof(info) > ctypes.sizeof(buffer):
        raise ValueError(f"{count} logins do not fit in a {ctypes.sizeof(buffer)}-byte buffer")
    array = ctypes.cast(buffer, ctypes.POINTER(info))
    return [PersistentLogin(_structs.get_text(array[i], "InitiatorInstance", True, "ascii"),
                            int(array[i].InitiatorPortNumber),
                            _structs.get_text(array[i], "TargetName", True, "ascii"),
                            portal_from_struct(array[i].TargetPortal, True, "ascii"))
            for i in range(count)]


def session_id_text(value: Any) -> str:
    """ISCSI_UNIQUE_SESSION_ID as iscsicli writes it: two 16-digit hex halves."""
    return f"{value.AdapterUnique:016x}-{value.AdapterSpecific:016x}"


def session_id_struct(text: str) -> Any:
    unique, _, specific = text.partition("-")
    try:
        value = _structs.struct("ISCSI_UNIQUE_SESSION_ID")(int(unique, 16), int(specific, 16))
    except ValueError:
        raise ValueError(f"{text!r} is not an iSCSI session id") from None
    return value


def parse_sessions(buffer: Any, count: int) -> list[Session]:
    """GetIScsiSessionListW's ISCSI_SESSION_INFOW array; its strings point into the buffer."""
    info = _structs.struct("ISCSI_SESSION_INFOW")
    array = ctypes.cast(buffer, ctypes.POINTER(info))
    sessions = []
    for i in range(count):
        target = _structs.read_wide(array[i].TargetNodeName) or \
            _structs.read_wide(array[i].TargetName) or ""
        sessions.append(Session(session_id_text(array[i].SessionId), target))
    return sessions


def fetch_sized(call: Callable[[int], tuple[int, int]], first: int = 4096,
                tries: int = 4) -> tuple[int, int]:
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
    def add_static_target(self, name: str, portal: Portal) -> int: ...
    def remove_static_target(self, name: str) -> int: ...
    def login_persistent(self, name: str, instance: str, port: int, portal: Portal) -> int: ...
    def remove_persistent(self, wide: bool, instance: str, port: int, name: str,
                          portal: Portal | None) -> int: ...
    def logout(self, session_id: str) -> int: ...


class IscsiDsc:
    """iscsidsc.dll through ctypes; constructing it needs Windows."""

    _EXPORTS = ("RemoveIScsiPersistentTargetA", "RemoveIScsiPersistentTargetW",
                "ReportIScsiPersistentLoginsW", "LoginIScsiTargetW", "AddIScsiStaticTargetW",
                "RemoveIScsiStaticTargetW", "ReportIScsiTargetsW", "ReportIScsiInitiatorListW",
                "GetIScsiSessionListW", "LogoutIScsiTarget")

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

    def _wide_list(self, name: str, *leading: Any) -> list[str]:
        buffers: list[Any] = []

        def call(chars: int) -> tuple[int, int]:
            buffers[:] = [(ctypes.c_uint16 * chars)()]
            size = ctypes.c_uint32(chars)
            return self._status(name, *leading, ctypes.byref(size),
                                ctypes.cast(buffers[0], ctypes.c_void_p)), size.value

        status, _ = fetch_sized(call)
        if status != ERROR_SUCCESS:
            raise OSError(f"{name} failed with {hex32(status)}")
        return _structs.multi_sz(bytes(buffers[0]))

    def initiators(self) -> list[str]:
        return self._wide_list("ReportIScsiInitiatorListW")

    def targets(self) -> list[str]:
        return self._wide_list("ReportIScsiTargetsW", 0)

    def persistent_logins(self) -> list[PersistentLogin]:
        buffers: list[Any] = []
        count = ctypes.c_uint32()

        def call(size_bytes: int) -> tuple[int, int]:
            buffers[:] = [ctypes.create_string_buffer(size_bytes)]
            size = ctypes.c_uint32(size_bytes)
            info = ctypes.cast(buffers[0], ctypes.POINTER(
                _structs.struct("PERSISTENT_ISCSI_LOGIN_INFOW")))
            return self._status("ReportIScsiPersistentLoginsW", ctypes.byref(count), info,
                                ctypes.byref(size)), size.value

        status, _ = fetch_sized(call, first=64 * 1024)
        if status != ERROR_SUCCESS:
            raise OSError(f"ReportIScsiPersistentLoginsW failed with {hex32(status)}")
        return parse_persistent_logins(buffers[0], count.value)

    def sessions(self) -> list[Session]:
        buffers: list[Any] = []
        count = ctypes.c_uint32()

        def call(size_bytes: int) -> tuple[int, int]:
            buffers[:] = [ctypes.create_string_buffer(size_bytes)]
            size = ctypes.c_uint32(size_bytes)
            info = ctypes.cast(buffers[0], ctypes.POINTER(_structs.struct("ISCSI_SESSION_INFOW")))
            return self._status("GetIScsiSessionListW", ctypes.byref(size), ctypes.byref(count),
                                info), size.value

        status, _ = fetch_sized(call, first=64 * 1024)
        if status != ERROR_SUCCESS:
            raise OSError(f"GetIScsiSessionListW failed with {hex32(status)}")
        return parse_sessions(buffers[0], count.value)

    def add_static_target(self, name: str, portal: Portal) -> int:
        text = _structs.c_string(name, True, "ascii")
        group = portal_group_struct([portal])
        return self._status("AddIScsiStaticTargetW", ctypes.cast(text, ctypes.c_void_p), None,
                            0, 0, None, None, ctypes.cast(ctypes.pointer(group), ctypes.POINTER(
                                _structs.struct("ISCSI_TARGET_PORTAL_GROUPW"))))

    def remove_static_target(self, name: str) -> int:
        text = _structs.c_string(name, True, "ascii")
        return self._status("RemoveIScsiStaticTargetW", ctypes.cast(text, ctypes.c_void_p))

    def login_persistent(self, name: str, instance: str, port: int, portal: Portal) -> int:
        target = _structs.c_string(name, True, "ascii")
        initiator = _structs.c_string(instance, True, "ascii")
        session = _structs.struct("ISCSI_UNIQUE_SESSION_ID")()
        connection = _structs.struct("ISCSI_UNIQUE_SESSION_ID")()
        return self._status(
            "LoginIScsiTargetW", ctypes.cast(target, ctypes.c_void_p), 0,
            ctypes.cast(initiator, ctypes.c_void_p), port,
            ctypes.byref(portal_struct(portal, True, "ascii")), 0, None, None, 0, None,
            1,  # IsPersistent: record the login; iscsidsc logs in at the next start, not now
            ctypes.byref(session), ctypes.byref(connection))

    def remove_persistent(self, wide: bool, instance: str, port: int, name: str,
                          portal: Portal | None) -> int:
        initiator = _structs.c_string(instance, wide, self.code_page)
        target = _structs.c_string(name, wide, self.code_page)
        value = None if portal is None else ctypes.byref(portal_struct(portal, wide,
                                                                       self.code_page))
        return self._status(REMOVE_W if wide else REMOVE_A,
                            ctypes.cast(initiator, ctypes.c_void_p), port,
                            ctypes.cast(target, ctypes.c_void_p), value)

    def logout(self, session_id: str) -> int:
        return self._status("LogoutIScsiTarget", ctypes.byref(session_id_struct(session_id)))


# --------------------------------------------------------------------------- the family


def could_remove(login: PersistentLogin, instance: str, port: int, name: str,
                 portal: Portal | None, variants: Callable[[str], set[str]]) -> bool:
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


class IscsiFamily:
    """The iscsi-discovery family on a real initiator."""

    steps = ("initiator", "port", "persistent_target")
    faults: tuple[str, ...] = ()
    collections = ("initiators", "ports", "persistent_targets")
    methods = (REMOVE_W, REMOVE_A)

    def __init__(self, config: Config, api: Lazy[IscsiApi]) -> None:
        self.config = config
        self.api = api
        self.ledger = Ledger()
        self.reset_names()

    def reset_names(self) -> None:
        self._initiators: dict[str, str] = {}  # scenario name -> instance
        self._ports: dict[str, tuple[str, int]] = {}  # scenario name -> (instance, number)
        self._created: dict[str, PersistentLogin] = {}  # provider id -> login
        self._serial = itertools.count(1)

    def reset(self) -> None:
        """Undo what this case created, then forget every name."""
        try:
            self.ledger.undo_all()
        finally:
            self.reset_names()

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, name: str, fields: Mapping[str, Any]) -> str:
        if kind == "initiator":
            return self._borrow_initiator(name, fields)
        if kind == "port":
            return self._borrow_port(name, fields)
        if kind == "persistent_target":
            return self._create_persistent_login(fields)
        raise Unsupported(f"iscsi-discovery step {kind!r}")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> str:
        raise Unsupported(f"iscsi-discovery has no fault {kind!r}")

    def _borrow_initiator(self, name: str, fields: Mapping[str, Any]) -> str:
        _no_fields(fields, "initiator")
        entry = self.config.require("initiators", name,
                                    "an iSCSI initiator (an HBA instance) cannot be created")
        instance = entry["instance"]
        known = self.api.get().initiators()
        if instance.casefold() not in {i.casefold() for i in known}:
            raise Unsupported(f"initiators.{name}: {instance!r} is not an initiator on this "
                              f"host (ReportIScsiInitiatorList: {known})")
        self._initiators[name] = instance
        return instance

    def _borrow_port(self, name: str, fields: Mapping[str, Any]) -> str:
        _exact_fields(fields, "port", ("initiator",))
        entry = self.config.require("ports", name, "an HBA port cannot be created")
        owner = self._initiators.get(entry["initiator"])
        if owner is None or owner != fields["initiator"]:
            raise Unsupported(f"ports.{name} is a port of {entry['initiator']}, but the step "
                              f"asks for it on {fields['initiator']!r}")
        self._ports[name] = (owner, entry["number"])
        return str(entry["number"])

    def _create_persistent_login(self, fields: Mapping[str, Any]) -> str:
        _exact_fields(fields, "persistent_target", ("initiator", "port", "target_name", "portal"))
        login = self._login_of(fields)
        api = self.api.get()
        if any(login.same(existing) for existing in api.persistent_logins()):
            raise Unsupported(f"the host already has a persistent login like {login}; the "
                              "provider neither adopts nor removes the host's own")
        self._ensure_target(login)
        status = _marshal(lambda: api.login_persistent(login.target_name, login.initiator,
                                                       login.port, login.portal))
        if status != ERROR_SUCCESS:
            raise Unsupported(f"LoginIScsiTargetW (persistent) refused {login.target_name!r} "
                              f"with {hex32(status)}; the step cannot be built here")
        login_id = f"persistent-login-{next(self._serial)}"
        self.ledger.add(login_id, f"persistent login {login}", lambda: self._remove_own(login))
        if not any(login.same(found) for found in api.persistent_logins()):
            self.ledger.undo(login_id)
            raise Unsupported("LoginIScsiTargetW reported success but no such persistent "
                              "login appeared")
        self._created[login_id] = login
        return login_id

    def _login_of(self, fields: Mapping[str, Any]) -> PersistentLogin:
        instance, port, name = fields["initiator"], fields["port"], fields["target_name"]
        if instance not in self._initiators.values():
            raise Unsupported(f"initiator ref {instance!r} is not an id this provider returned in "
                              "this test case (its step was not supported?)")
        number = next((n for owner, n in self._ports.values()
                       if owner == instance and str(n) == str(port)), None)
        if number is None:
            raise ValueError(f"port ref {port!r} is not a port this provider returned for "
                             f"{instance!r}")
        if not isinstance(name, str):
            raise ValueError(f"persistent_target: target_name must be a string, got {name!r}")
        return PersistentLogin(instance, number, name,
                               Portal.parse(fields["portal"], "persistent_target.portal"))

    def _ensure_target(self, login: PersistentLogin) -> None:
        """LoginIScsiTarget needs a discovered target: add a static one if it is not known."""
        api = self.api.get()
        name = login.target_name
        if name.casefold() in {t.casefold() for t in api.targets()}:
            return
        key = f"static-target:{name.casefold()}"
        status = _marshal(lambda: api.add_static_target(name, login.portal))
        if status != ERROR_SUCCESS:
            raise Unsupported(f"AddIScsiStaticTargetW refused {name!r} with {hex32(status)}; "
                              "the target cannot be made known to the initiator")
        self.ledger.add(key, f"static target {name!r}", lambda: self._remove_static(name))

    def _remove_own(self, login: PersistentLogin) -> None:
        """Undo one created login: exactly its initiator, port, target and portal."""
        api = self.api.get()
        if not any(login.same(found) for found in api.persistent_logins()):
            return  # the call under test already removed it
        status = api.remove_persistent(True, login.initiator, login.port, login.target_name,
                                       login.portal)
        if status != ERROR_SUCCESS:
            raise OSError(f"RemoveIScsiPersistentTargetW gave {hex32(status)}")

    def _remove_static(self, name: str) -> None:
        api = self.api.get()
        if name.casefold() not in {t.casefold() for t in api.targets()}:
            return
        status = api.remove_static_target(name)
        if status != ERROR_SUCCESS:
            raise OSError(f"RemoveIScsiStaticTargetW gave {hex32(status)}")

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id not in self.methods:
            raise Unsupported(f"method {method_id!r}")
        instance, port, name, portal = _remove_args(method_id, args)
        wide = method_id == REMOVE_W
        api = self.api.get()
        self._refuse_foreign(api, wide, instance, port, name, portal)
        status = _marshal(lambda: api.remove_persistent(wide, instance, port, name, portal))
        self._forget_removed(api)
        return Outcome(hresult=u32(status))

    def _refuse_foreign(self, api: IscsiApi, wide: bool, instance: str, port: int, name: str,
                        portal: Portal | None) -> None:
        """Unsupported if the call might remove a persistent login this provider did not make."""
        def variants(text: str) -> set[str]:
            if wide:
                return {text}
            narrowed = text.encode(api.code_page, errors="replace")
            return {text, narrowed.decode(api.code_page, errors="replace")}

        mine = list(self._created.values())
        foreign = [login for login in api.persistent_logins()
                   if could_remove(login, instance, port, name, portal, variants)
                   and not any(login.same(own) for own in mine)]
        if foreign:
            raise Unsupported(f"this call could also remove {len(foreign)} persistent login(s) "
                              f"the provider did not create (first: {foreign[0]}); the host's "
                              "own logins are never touched")

    def _forget_removed(self, api: IscsiApi) -> None:
        present = api.persistent_logins()
        for login_id, login in list(self._created.items()):
            if not any(login.same(found) for found in present):
                del self._created[login_id]
                self.ledger.discard(login_id)

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiators":
            return [{"id": instance} for instance in self._initiators.values()]
        if collection == "ports":
            return [{"id": str(number), "initiator": owner}
                    for owner, number in self._ports.values()]
        if collection == "persistent_targets":
            return self._observe_logins()
        raise Unsupported(f"collection {collection!r}")

    def _observe_logins(self) -> list[dict[str, Any]]:
        """The created logins ReportIScsiPersistentLoginsW still shows, as it shows them."""
        present = self.api.get().persistent_logins()
        rows = []
        for login_id, login in self._created.items():
            found = next((p for p in present if login.same(p)), None)
            if found is not None:
                rows.append({"id": login_id, "initiator": login.initiator,
                             "port": str(found.port), "target_name": found.target_name,
                             "portal": found.portal.as_dict()})
        return rows


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


def _marshal(call: Callable[[], int]) -> int:
    """Run a call whose arguments are marshalled inside; text C cannot carry is Unsupported."""
    try:
        return call()
    except TextError as exc:
        raise Unsupported(f"cannot pass this text to the API unchanged: {exc}") from exc


def _no_fields(fields: Mapping[str, Any], step: str) -> None:
    _exact_fields(fields, step, ())


def _exact_fields(fields: Mapping[str, Any], step: str, names: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in fields]
    extra = sorted(set(fields) - set(names))
    if missing or extra:
        raise ValueError(f"{step}: expected fields {list(names)}, missing {missing}, "
                         f"unexpected {extra}")
