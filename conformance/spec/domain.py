"""Domains: the abstract state of one family of methods, as data.

A domain names its collections (sessions, portal groups, persistent targets, ...), the
fields of each, the `given` step that creates one, and the faults a provider may be asked to
inject. The oracle's state is a dict of collections, each a list of objects whose `id` is the
scenario's name for it; faults live in the `faults` collection as `{fault: kind, ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from conformance.spec.expression import Scope, compiled
from conformance.spec.source import Document, SourceError
from conformance.spec.translate import CostExceeded

FAULTS = "faults"
FAULT_STEP = "fault"
ANY = "*"


@dataclass(frozen=True)
class FieldType:
    """The type of one field: a scalar, a reference, a list of something, or a struct."""

    kind: str
    ref: str | None = None
    same: str | None = None
    item: FieldType | None = None
    choices: tuple[Any, ...] = ()
    max_length: int | None = None
    alphabet: str | None = None
    struct: str | None = None

    def default(self, domain: Domain) -> Any:
        if self.kind == "list":
            return []
        if self.kind == "bool":
            return False
        if self.kind == "string":
            return ""
        if self.kind in ("uint16", "uint32"):
            return 0
        if self.kind == "enum":
            return self.choices[0]
        if self.kind == "struct":
            fields = domain.types[self.struct or ""]
            return {k: t.default(domain) for k, t in fields.items()}
        return None


@dataclass(frozen=True)
class Collection:
    name: str
    step: str
    prefix: str
    id: str
    fields: dict[str, FieldType]


@dataclass(frozen=True)
class Domain:
    family: str
    file: str
    collections: dict[str, Collection]
    faults: dict[str, dict[str, FieldType]]
    types: dict[str, dict[str, FieldType]] = field(default_factory=dict)
    invariants: tuple[tuple[str, str], ...] = ()

    @cached_property
    def _steps(self) -> dict[str, Collection]:
        return {coll.step: coll for coll in self.collections.values()}

    def by_step(self, step: str) -> Collection | None:
        return self._steps.get(step)

    def steps(self) -> list[str]:
        return [c.step for c in self.collections.values()]

    def broken_invariant(
        self, shown: dict[str, Any], on: str = "what the provider shows"
    ) -> str | None:
        """Why the first invariant that fails on `shown` (`on` says what it is: by default what
        the provider shows) fails; None if all hold. An invariant too costly to evaluate on it
        says so, naming the bound."""
        for name, rule in self.invariants:
            try:
                holds = compiled(rule).evaluate(Scope({"state": shown}, {}))
            except CostExceeded as exc:
                sizes = ", ".join(
                    f"{len(rows)} {coll}"
                    for coll, rows in shown.items()
                    if isinstance(rows, list) and rows
                )
                return (
                    f"invariant {name!r} ({self.file}) could not be judged on {on} ({sizes}): {exc}"
                )
            except Exception:
                holds = False
            if holds is not True:
                return f"invariant {name!r} ({self.file}) does not hold on {on}"
        return None

    def empty_state(self) -> dict[str, list[dict[str, Any]]]:
        state: dict[str, list[dict[str, Any]]] = {name: [] for name in self.collections}
        state[FAULTS] = []
        return state

    def fields_of_step(self, step: dict[str, Any]) -> dict[str, FieldType]:
        kind, value = next(iter(step.items()))
        if kind == FAULT_STEP:
            if value not in self.faults:
                raise KeyError(f"unknown fault {value!r} in family {self.family}")
            return self.faults[value]
        coll = self.by_step(kind)
        if coll is None:
            raise KeyError(f"unknown step {kind!r} in family {self.family}")
        return coll.fields

    def complete(self, step: dict[str, Any]) -> dict[str, Any]:
        """The step with every field the domain declares, defaults filled in."""
        fields = self.fields_of_step(step)
        unknown = set(step) - set(fields) - {next(iter(step))}
        if unknown:
            raise KeyError(
                f"step {step!r} has fields the domain does not declare: "
                f"{', '.join(sorted(unknown))}"
            )
        out = dict(step)
        for name, ftype in fields.items():
            if name not in out:
                out[name] = ftype.default(self)
        return out

    def minimal(self, step: dict[str, Any]) -> dict[str, Any]:
        """The step with every field left at its default taken out: what a person reads in a
        reproduction (`complete` puts them back)."""
        try:
            fields = self.fields_of_step(step)
        except KeyError:
            return dict(step)
        kind = next(iter(step))
        return {
            k: v
            for k, v in step.items()
            if k == kind
            or k not in fields
            or v != fields[k].default(self)
            or type(v) is not type(fields[k].default(self))
        }

    def apply(self, state: dict[str, list[dict[str, Any]]], step: dict[str, Any]) -> None:
        """Add the object a (completed) step creates to the oracle state, in place."""
        kind, name = next(iter(step.items()))
        rest = {k: clone(v) for k, v in step.items() if k != kind}
        if kind == FAULT_STEP:
            state[FAULTS].append({"fault": name, **rest})
            return
        coll = self.by_step(kind)
        assert coll is not None
        state[coll.name].append({"id": name, **rest})


def clone(value: Any) -> Any:
    """A copy of plain data (dicts, lists, scalars): what deepcopy does, at a fraction of
    its cost on the oracle's hot path."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def domain_from(doc: Document) -> Domain:
    """Build a Domain from a schema-valid document; raise SourceError on what it cannot use."""
    data = doc.data if isinstance(doc.data, dict) else {}
    problems = []
    types = {
        tname: {f: _field(doc, ("types", tname, f), spec) for f, spec in (fields or {}).items()}
        for tname, fields in (data.get("types") or {}).items()
    }
    collections = {}
    for cname, cdata in (data.get("collections") or {}).items():
        fields = {
            f: _field(doc, ("collections", cname, "fields", f), spec)
            for f, spec in (cdata.get("fields") or {}).items()
        }
        prefix = cdata.get("prefix", cname[:1].upper())
        collections[cname] = Collection(
            cname, cdata["step"], prefix, cdata.get("id", "string"), fields
        )
    faults = {
        kind: {
            f: _field(doc, ("faults", kind, "fields", f), spec)
            for f, spec in ((fdata or {}).get("fields") or {}).items()
        }
        for kind, fdata in (data.get("faults") or {}).items()
    }
    domain = Domain(
        data.get("family", ""),
        doc.file,
        collections,
        faults,
        types,
        tuple((i["name"], i["rule"]) for i in data.get("invariants") or []),
    )
    for path, ftype in _all_fields(domain):
        target = ftype.item if ftype.kind == "list" and ftype.item else ftype
        if target.kind == "ref" and target.ref != ANY and target.ref not in collections:
            problems.append(doc.problem(path, f"refers to unknown collection {target.ref!r}"))
        if target.kind == "struct" and target.struct not in types:
            problems.append(doc.problem(path, f"unknown struct type {target.struct!r}"))
    if problems:
        raise SourceError(problems)
    return domain


def _all_fields(domain: Domain):
    for cname, coll in domain.collections.items():
        for f, t in coll.fields.items():
            yield ("collections", cname, "fields", f), t
    for kind, fields in domain.faults.items():
        for f, t in fields.items():
            yield ("faults", kind, "fields", f), t


def _field(doc: Document, path: tuple, spec: Any) -> FieldType:
    if not isinstance(spec, dict) or (len(spec) != 1 and "ref" not in spec):
        raise SourceError(
            [
                doc.problem(
                    path,
                    "a field is one of {ref: C}, {list: T}, "
                    "{string: {...}}, {bool: {}}, {enum: [...]}, "
                    "{uint16: {}}, {uint32: {}}, {struct: NAME}",
                )
            ]
        )
    if "ref" in spec:
        return FieldType("ref", ref=spec["ref"], same=spec.get("same"))
    ((kind, arg),) = spec.items()
    if kind == "list":
        return FieldType("list", item=_field(doc, path, arg))
    if kind == "enum":
        return FieldType("enum", choices=tuple(arg))
    if kind == "struct":
        return FieldType("struct", struct=arg)
    if kind in ("string", "bool", "uint16", "uint32"):
        arg = arg or {}
        return FieldType(kind, max_length=arg.get("max_length"), alphabet=arg.get("alphabet"))
    raise SourceError([doc.problem(path, f"unknown field type {kind!r}")])
