"""The spec model: one method's documented return-code contract, read from YAML.

`load_spec` turns a `spec: 1` file into a `Spec`; everything downstream (oracle, engine,
reports, extraction) reads these objects, never the YAML. Structural validity is the JSON
Schema's job (`conformance.spec.schema`), meaning the cross-checks' (`conformance.spec.crosscheck`
for one spec, `conformance.spec.catalog_checks` across specs); this module assumes a
schema-valid document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.spec.source import Document, load_file

DIRECT, IVDSASYNC, IVMTASK = "direct", "ivdsasync", "ivmtask"

# The model classes use __slots__: a catalog of 10,000 specs holds about 250,000 of them, each
# otherwise carrying an attribute dict.


@dataclass(frozen=True, slots=True)
class Code:
    symbol: str
    value: int
    doc: str = ""
    via: str = "either"  # call | completion | either: where the code may arrive


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    direction: str
    type: str
    refers: str | None = None
    values: str | None = None
    special: tuple[str, ...] = ()
    examples: tuple[Any, ...] = ()
    nullable: bool = False
    optional: bool = False
    is_async: bool = False
    doc: str = ""

    @property
    def is_out(self) -> bool:
        return self.direction in ("out", "inout")


@dataclass(frozen=True, slots=True)
class Rule:
    when: str
    expect: tuple[str, ...]
    effects: dict[str, str] = field(default_factory=dict)
    index: int = 0
    outputs: dict[str, str] = field(default_factory=dict)  # out-param -> expected value (CEL)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    given: tuple[dict[str, Any], ...]
    call: dict[str, Any]
    expect: tuple[str, ...]
    then: dict[str, Any] = field(default_factory=dict)
    index: int = 0
    calls: tuple[dict[str, Any], ...] = ()  # a sequence instead of one call


@dataclass(frozen=True, slots=True)
class Observed:
    """How a Windows version was seen to behave where it departs from the page: on `windows`
    (a version prefix), when `when` holds, the call gives `code` instead of `instead_of` (or
    of whatever the rules predict). Whether that passes is the run's `--observed` policy."""

    windows: str
    code: str
    when: str | None = None
    instead_of: str | None = None
    source: str = ""
    note: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Spec:
    id: str
    family: str
    kind: str
    file: str
    params: tuple[Param, ...]
    convention: str
    delivery: str
    codes: tuple[Code, ...]
    also: tuple[str, ...]
    rules: tuple[Rule, ...]
    scenarios: tuple[Scenario, ...]
    constants: dict[str, int] = field(default_factory=dict)
    interface: dict[str, Any] = field(default_factory=dict)
    charset: str | None = None
    twin: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    findings: tuple[dict[str, Any], ...] = ()
    observed: tuple[Observed, ...] = ()
    document: Document | None = field(default=None, compare=False, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def this_object(self) -> str | None:
        """The step name of the object whose method is called (com-methods only)."""
        return self.interface.get("object") if self.kind == "com-method" else None

    @property
    def in_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.is_out)

    @property
    def async_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_out and p.is_async)

    def code(self, symbol: str) -> Code | None:
        for c in self.codes:
            if c.symbol == symbol:
                return c
        return None

    def line(self, *path: str | int) -> int:
        return self.document.line(tuple(path)) if self.document else 1


def _tuple(value: Any) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def load_spec(path: str | Path) -> Spec:
    return spec_from(load_file(path))


def spec_from(doc: Document) -> Spec:
    data: dict[str, Any] = doc.data
    returns = data.get("returns") or {}
    params = tuple(
        Param(
            name=p["name"],
            direction=p.get("direction", "in"),
            type=p.get("type", ""),
            refers=p.get("refers"),
            values=p.get("values"),
            special=_tuple(p.get("special")),
            examples=_tuple(p.get("examples")),
            nullable=bool(p.get("nullable")),
            optional=bool(p.get("optional")),
            is_async=bool(p.get("async")),
            doc=p.get("doc", ""),
        )
        for p in data.get("params") or []
    )
    codes = tuple(
        Code(c["symbol"], int(c["value"]), c.get("doc", ""), c.get("via", "either"))
        for c in returns.get("codes") or []
    )
    rules = tuple(
        Rule(
            str(r["when"]),
            _tuple(r["expect"]),
            dict(r.get("effects") or {}),
            i,
            dict(r.get("outputs") or {}),
        )
        for i, r in enumerate(data.get("rules") or [])
    )
    scenarios = tuple(
        Scenario(
            s["name"],
            tuple(s.get("given") or []),
            dict(s.get("call") or {}),
            _tuple(s.get("expect")),
            dict(s.get("then") or {}),
            i,
            tuple(s.get("calls") or []),
        )
        for i, s in enumerate(data.get("scenarios") or [])
    )
    return Spec(
        id=data["id"],
        family=data["family"],
        kind=data["kind"],
        file=doc.file,
        params=params,
        convention=returns.get("convention", "hresult"),
        delivery=returns.get("delivery", DIRECT),
        codes=codes,
        also=_tuple(returns.get("also")),
        rules=rules,
        scenarios=scenarios,
        constants={k: int(v) for k, v in (data.get("constants") or {}).items()},
        interface=dict(data.get("interface") or {}),
        charset=data.get("charset"),
        twin=data.get("twin"),
        sources=tuple(data.get("sources") or []),
        findings=tuple(data.get("findings") or []),
        observed=tuple(
            Observed(
                str(o["windows"]),
                o["code"],
                o.get("when"),
                o.get("instead_of"),
                o.get("source", ""),
                o.get("note", ""),
                i,
            )
            for i, o in enumerate(data.get("observed") or [])
        ),
        document=doc,
        raw=data,
    )
