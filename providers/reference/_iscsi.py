"""iSCSI discovery family: initiators (HBA instances), their ports and persistent logins."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance.provider import Outcome, Unsupported

from ._ansi import AnsiCodePage
from ._world import World, check_args, check_step, direct, u32

REMOVE_PERSISTENT_TARGET_W = "RemoveIScsiPersistentTargetW"
REMOVE_PERSISTENT_TARGET_A = "RemoveIScsiPersistentTargetA"

ERROR_SUCCESS = 0
ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF
# iscsierr.h, as listed on the ISCSI_STATUS_QUALIFIERS page.
ISDSC_INITIATOR_INSTANCE_NOT_FOUND = 0xEFFF0017
ISDSC_TARGET_NOT_FOUND = 0xEFFF0029
ISDSC_INVALID_PORT_NUMBER = 0xEFFF002D

_PORTAL_FIELDS = ("SymbolicName", "Address", "Socket")


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

    def as_dict(self) -> dict[str, Any]:
        return dict(
            zip(_PORTAL_FIELDS, (self.symbolic_name, self.address, self.socket), strict=True)
        )


@dataclass(frozen=True)
class _PersistentLogin:
    initiator: str
    port: int
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


class IscsiWorld(World):
    """The discovery service's view: initiator instances, ports, persistent logins."""

    steps = ("initiator", "port", "persistent_target")
    faults = ()
    collections = ("initiators", "ports", "persistent_targets")
    methods = (REMOVE_PERSISTENT_TARGET_W, REMOVE_PERSISTENT_TARGET_A)

    def __init__(self, code_page: str = "cp1252") -> None:
        self._ansi = AnsiCodePage(code_page)
        self.reset()

    def reset(self) -> None:
        self._initiators: dict[str, None] = {}
        self._ports: dict[int, str] = {}  # port number -> initiator
        self._logins: dict[str, _PersistentLogin] = {}
        self._initiator_serial = itertools.count(0)
        self._port_serial = itertools.count(0)
        self._login_serial = itertools.count(1)

    # -- setup ---------------------------------------------------------------------------

    def create(self, kind: str, fields: Mapping[str, Any]) -> str:
        if kind == "initiator":
            check_step(fields, kind)
            instance = f"ROOT\\ISCSIPRT\\{next(self._initiator_serial):04d}_0"
            self._initiators[instance] = None
            return instance
        if kind == "port":
            check_step(fields, kind, required=("initiator",))
            initiator = self._initiator_ref(fields["initiator"])
            number = next(self._port_serial)
            self._ports[number] = initiator
            return str(number)
        if kind == "persistent_target":
            check_step(fields, kind, required=("initiator", "port", "target_name", "portal"))
            initiator = self._initiator_ref(fields["initiator"])
            port = self._port_ref(fields["port"])
            if self._ports[port] != initiator:
                raise ValueError(
                    f"persistent_target: port {port} belongs to {self._ports[port]!r}, "
                    f"not to {initiator!r}"
                )
            name = fields["target_name"]
            if not isinstance(name, str):
                raise ValueError(f"persistent_target: target_name must be a string, got {name!r}")
            portal = Portal.parse(fields["portal"], "persistent_target.portal")
            login_id = f"persistent-{next(self._login_serial)}"
            self._logins[login_id] = _PersistentLogin(initiator, port, name, portal)
            return login_id
        raise Unsupported(f"iscsi-discovery step {kind!r}")

    def inject(self, kind: str, fields: Mapping[str, Any]) -> None:
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

    # -- methods -------------------------------------------------------------------------

    def call(self, method_id: str, args: Mapping[str, Any]) -> Outcome:
        if method_id not in self.methods:
            raise Unsupported(f"method {method_id!r}")
        check_args(
            args,
            method_id,
            required=("InitiatorInstance", "InitiatorPortNumber", "TargetName"),
            optional=("Portal",),
        )
        instance, port, target_name = (
            args["InitiatorInstance"],
            args["InitiatorPortNumber"],
            args["TargetName"],
        )
        for name, value in (("InitiatorInstance", instance), ("TargetName", target_name)):
            if not isinstance(value, str):
                raise ValueError(f"{method_id}: {name} must be a string, got {value!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise ValueError(f"{method_id}: InitiatorPortNumber must be an int, got {port!r}")
        raw_portal = args.get("Portal")
        portal = None if raw_portal is None else Portal.parse(raw_portal, f"{method_id}.Portal")
        if method_id == REMOVE_PERSISTENT_TARGET_A:
            instance, target_name = (
                self._ansi.round_trip(instance),
                self._ansi.round_trip(target_name),
            )
            if portal is not None:
                portal = Portal(
                    self._ansi.round_trip(portal.symbolic_name),
                    self._ansi.round_trip(portal.address),
                    portal.socket,
                )
        # InitiatorPortNumber is a ULONG: a negative Python int stands for its bit pattern.
        return direct(self._remove(instance, u32(port), target_name, portal))

    def _remove(self, instance: str, port: int, target_name: str, portal: Portal | None) -> int:
        """RemoveIScsiPersistentTargetW: check the initiator, then the port, then match."""
        if instance not in self._initiators:
            return ISDSC_INITIATOR_INSTANCE_NOT_FOUND
        if port != ISCSI_ALL_INITIATOR_PORTS and self._ports.get(port) != instance:
            return ISDSC_INVALID_PORT_NUMBER
        doomed = [
            login_id
            for login_id, login in self._logins.items()
            if login.matches(instance, port, target_name, portal)
        ]
        if not doomed:
            return ISDSC_TARGET_NOT_FOUND
        for login_id in doomed:
            del self._logins[login_id]
        return ERROR_SUCCESS

    # -- observe -------------------------------------------------------------------------

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if collection == "initiators":
            return [{"id": i} for i in self._initiators]
        if collection == "ports":
            return [{"id": str(n), "initiator": i} for n, i in self._ports.items()]
        if collection == "persistent_targets":
            return [
                {
                    "id": login_id,
                    "initiator": login.initiator,
                    "port": str(login.port),
                    "target_name": login.target_name,
                    "portal": login.portal.as_dict(),
                }
                for login_id, login in self._logins.items()
            ]
        raise Unsupported(f"collection {collection!r}")
