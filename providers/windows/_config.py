"""What the Windows backend may touch: objects the operator lends, and objects it made itself.

A real machine cannot conjure an iSCSI target or an HBA, so the operator's config file maps the
scenarios' names to existing objects (`targets: {T1: {iqn: ...}}`). Those are *borrowed*: used,
never created or removed. Whatever the backend creates (a persistent login, a session, a portal
group) goes in the *ledger* with the one call that undoes it, and cleanup runs only the
ledger: nothing that is not in it is ever removed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from conformance.provider import Unsupported

ENV_VAR = "CONFORMANCE_WINDOWS_CONFIG"

# section -> (required fields, optional fields), each with its type
_SECTIONS: dict[str, tuple[dict[str, type], dict[str, type]]] = {
    "initiators": ({"instance": str}, {}),
    "ports": ({"initiator": str, "number": int}, {}),
    "iscsi_sessions": ({"iqn": str, "address": str}, {"port": int}),
    "initiator_adapters": ({}, {"name": str, "id": str}),
    "initiator_portals": ({"adapter": str, "address": str}, {}),
    "targets": ({"iqn": str}, {}),
    "portals": ({"address": str}, {"port": int}),
    # The facts a virtual-pc step states about a machine, as the operator knows them; a step
    # field the entry leaves out cannot be checked, so such a step is not applicable.
    "virtual_machines": (
        {"name": str, "power": str, "additions": bool, "execute_access": bool},
        {
            "guest": dict,
            "heartbeat": int,
            "remote_desktop": str,
            "dvd_drive": str,
            "time_sync": bool,
            "screen_locked": bool,
            "never_started": bool,
            "guest_actions": bool,
        },
    ),
}
_HINTS = {
    "initiators": "instance: the HBA instance name ReportIScsiInitiatorList shows "
    "(e.g. ROOT\\ISCSIPRT\\0000_0)",
    "ports": "initiator: its initiator's name in this file, number: the HBA port number",
    "iscsi_sessions": "iqn, address (and port) of a reachable target a session may be opened "
    "to (LoginIScsiTarget)",
    "initiator_adapters": "name: the adapter's VDS name, or id: its VDS_OBJECT_ID",
    "initiator_portals": "adapter: its adapter's name in this file, address: the initiator "
    "portal's IP address",
    "targets": "iqn: the iSCSI name of a target a VDS hardware provider already exposes",
    "portals": "address: a portal's IP address on the storage array, port: its TCP port",
    "virtual_machines": "name: the Virtual PC machine's name, and the power, additions and "
    "execute_access it has (and any other fact of the virtual-pc domain "
    "its steps state; guest_actions: true lets Shutdown, Restart and "
    "InstallIntegrationComponents act on it)",
}
POWER_STATES = ("running", "off", "saved")
DEFAULT_PORTAL_PORT = 3260


class ConfigError(Exception):
    """The config file is unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Config:
    """Scenario names -> the real objects the operator lends, section by section."""

    sections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    path: str = "<no config file>"

    def lent(self, section: str, name: str) -> dict[str, Any] | None:
        return self.sections.get(section, {}).get(name)

    def require(self, section: str, name: str, why: str) -> dict[str, Any]:
        """The lent object, or Unsupported saying what to add to which file."""
        entry = self.lent(section, name)
        if entry is None:
            raise Unsupported(
                f"{why}: name an existing one as {section}.{name} in the "
                f"config file ({self.path}; {ENV_VAR}); {_HINTS[section]}"
            )
        return entry


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> Config:
    """The config from `source` (a path or a mapping), else from $CONFORMANCE_WINDOWS_CONFIG.

    No config at all is allowed: every step that needs a lent object then says what to add.
    """
    if source is None:
        source = os.environ.get(ENV_VAR) or None
    if source is None:
        return Config()
    if not isinstance(source, str | os.PathLike):
        return parse_config(source, "<config mapping>")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config({} if data is None else data, str(path))


def parse_config(data: Any, where: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: the config must be a mapping of sections, got {type(data).__name__}"
        )
    unknown = sorted(set(map(str, data)) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}"
        )
    sections = {name: _section(data[name], name, where) for name in _SECTIONS if name in data}
    _check_references(sections, where)
    _check_distinct(sections, where)
    return Config(sections, where)


def _section(entries: Any, section: str, where: str) -> dict[str, dict[str, Any]]:
    if entries is None:
        return {}
    if not isinstance(entries, Mapping):
        raise ConfigError(
            f"{where}: {section} must map scenario names to objects ({_HINTS[section]})"
        )
    return {str(name): _entry(value, section, str(name), where) for name, value in entries.items()}


def _entry(value: Any, section: str, name: str, where: str) -> dict[str, Any]:
    at = f"{where}: {section}.{name}"
    required, optional = _SECTIONS[section]
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at}: expected a mapping ({_HINTS[section]}), got {value!r}")
    missing = [key for key in required if key not in value]
    if missing:
        raise ConfigError(f"{at}: missing {', '.join(missing)} ({_HINTS[section]})")
    extra = sorted(set(map(str, value)) - set(required) - set(optional))
    if extra:
        raise ConfigError(
            f"{at}: unknown field(s) {', '.join(extra)}; known: {', '.join([*required, *optional])}"
        )
    for key, kind in {**required, **optional}.items():
        if key in value and (
            not isinstance(value[key], kind) or (kind is int and isinstance(value[key], bool))
        ):
            raise ConfigError(f"{at}.{key}: expected {_kind_name(kind)}, got {value[key]!r}")
    entry = dict(value)
    _check_entry(entry, section, at)
    return entry


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false", dict: "a mapping"}.get(
        kind, str(kind)
    )


def _check_entry(entry: dict[str, Any], section: str, at: str) -> None:
    if section == "initiator_adapters" and not ({"name", "id"} & set(entry)):
        raise ConfigError(f"{at}: give name or id ({_HINTS[section]})")
    if section == "initiator_adapters" and "id" in entry:
        from ._com import guid_key  # local: _com pulls in ctypes layouts, config need not

        if guid_key(entry["id"]) is None:
            raise ConfigError(f"{at}.id: {entry['id']!r} is not a GUID")
        entry["id"] = guid_key(entry["id"])
    if section == "ports" and not 0 <= entry["number"] <= 0xFFFFFFFE:
        raise ConfigError(
            f"{at}.number: {entry['number']} is not a port number (0..0xFFFFFFFE; "
            "0xFFFFFFFF is ISCSI_ALL_INITIATOR_PORTS)"
        )
    if section in ("portals", "iscsi_sessions"):
        entry.setdefault("port", DEFAULT_PORTAL_PORT)
        if not 0 < entry["port"] <= 0xFFFF:
            raise ConfigError(f"{at}.port: {entry['port']} is not a TCP port")
    if section in ("portals", "iscsi_sessions", "initiator_portals"):
        try:
            entry["address"] = str(ipaddress.ip_address(entry["address"]))
        except ValueError:
            raise ConfigError(f"{at}.address: {entry['address']!r} is not an IP address") from None
    if section == "virtual_machines" and entry["power"] not in POWER_STATES:
        raise ConfigError(f"{at}.power: {entry['power']!r} is not one of {POWER_STATES}")
    for key in ("instance", "iqn", "name"):
        if key in entry and not entry[key].strip():
            raise ConfigError(f"{at}.{key}: empty")


# section -> (field, the section its value names)
_REFERENCES = {
    "ports": ("initiator", "initiators"),
    "initiator_portals": ("adapter", "initiator_adapters"),
}


def _check_references(sections: dict[str, dict[str, dict[str, Any]]], where: str) -> None:
    for section, (key, target) in _REFERENCES.items():
        for name, entry in sections.get(section, {}).items():
            if entry[key] not in sections.get(target, {}):
                raise ConfigError(
                    f"{where}: {section}.{name}.{key}: {entry[key]!r} is not a name under {target}"
                )


def _check_distinct(sections: dict[str, dict[str, dict[str, Any]]], where: str) -> None:
    """Two names for one real object would make the harness's world disagree with itself."""
    keys = {
        "initiators": lambda e: e["instance"].casefold(),
        "ports": lambda e: (e["initiator"], e["number"]),
        "iscsi_sessions": lambda e: id(e),  # several sessions to one target are fine
        "initiator_portals": lambda e: (e["adapter"], e["address"]),
        "initiator_adapters": lambda e: e.get("id") or e["name"].casefold(),
        "targets": lambda e: e["iqn"].casefold(),
        "portals": lambda e: (e["address"], e["port"]),
        "virtual_machines": lambda e: e["name"].casefold(),
    }
    for section, entries in sections.items():
        seen: dict[Any, str] = {}
        for name, entry in entries.items():
            key = keys[section](entry)
            if key in seen:
                raise ConfigError(
                    f"{where}: {section}.{name} and {section}.{seen[key]} name "
                    "the same object; each real object may stand for one name"
                )
            seen[key] = name


# --------------------------------------------------------------------------- the ledger


class CleanupError(Exception):
    """Some undo steps failed; each is listed, and the rest still ran."""


@dataclass
class _Entry:
    key: str
    what: str
    undo: Callable[[], None]


@dataclass
class Ledger:
    """What this provider created, each with the call that removes it; nothing else is removed.

    `undo_all` runs newest first (a persistent login goes before the static target it needs),
    keeps going past failures and reports them together.
    """

    entries: list[_Entry] = field(default_factory=list)

    def add(self, key: str, what: str, undo: Callable[[], None]) -> None:
        if key in self:
            raise ValueError(f"{key!r} is already in the ledger")
        self.entries.append(_Entry(key, what, undo))

    def __contains__(self, key: object) -> bool:
        return any(e.key == key for e in self.entries)

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    def discard(self, key: str) -> None:
        """Forget an object that is already gone (the call under test removed it)."""
        self.entries = [e for e in self.entries if e.key != key]

    def undo(self, key: str) -> None:
        """Undo one entry now (e.g. a step that failed half-way)."""
        entry = next((e for e in self.entries if e.key == key), None)
        if entry is not None:
            self.discard(key)
            entry.undo()

    def undo_all(self) -> None:
        problems = []
        while self.entries:
            entry = self.entries.pop()
            try:
                entry.undo()
            except Exception as exc:
                problems.append(f"{entry.what}: {type(exc).__name__}: {exc}")
        if problems:
            raise CleanupError("cleanup could not undo: " + "; ".join(problems))


# --------------------------------------------------------------------------- lazy APIs

T = TypeVar("T")


class Lazy(Generic[T]):
    """An API opened on first use; if it cannot open, every use says why (Unsupported).

    So the provider starts even where VDS is stopped or Virtual PC is gone, and only the
    checks that need the missing part become not applicable.
    """

    def __init__(self, what: str, factory: Callable[[], T]) -> None:
        self.what = what
        self._factory = factory
        self._value: T | None = None
        self._error: str | None = None

    def get(self) -> T:
        if self._value is None:
            if self._error is not None:
                raise Unsupported(self._error)
            try:
                self._value = self._factory()
            except Unsupported as exc:
                self._error = str(exc)
                raise
            except Exception as exc:
                self._error = f"{self.what} unavailable: {type(exc).__name__}: {exc}"
                raise Unsupported(self._error) from exc
        return self._value

    @property
    def opened(self) -> T | None:
        return self._value


def exact_fields(
    fields: Mapping[str, Any], what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """A step's (or call's) fields as the backend knows them: a missing one is the caller's
    error, an unknown one a shape this backend was not written for (Unsupported, so the
    check says so instead of the backend guessing)."""
    missing = [n for n in required if n not in fields]
    if missing:
        raise ValueError(f"{what}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(fields) - set(required) - set(optional))
    if extra:
        raise Unsupported(f"{what}: unexpected field(s) {', '.join(extra)}")
