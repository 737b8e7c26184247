"""`conformance doctor`: what a provider can do, tried on an empty world before any run.

It compares the provider's capabilities with what the specs need (methods, steps, faults,
observable collections), then builds one object of every collection and injects every fault
through `setup`, and observes every collection, printing what works, what is unsupported and
what raised — the questions a provider author has before the first `conformance run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.engine.case_space import representatives
from conformance.engine.world import ProviderError, World
from conformance.provider import Provider, Unsupported
from conformance.spec.catalog import Catalog
from conformance.spec.domain import FAULT_STEP, Domain

OK, UNSUPPORTED, RAISED, MISSING = "ok", "unsupported", "raised", "not in capabilities"


@dataclass
class Row:
    family: str
    what: str
    name: str
    status: str
    detail: str = ""


def diagnose(provider: Provider, catalog: Catalog) -> list[Row]:
    rows: list[Row] = []
    try:
        caps = provider.capabilities()
    except Exception as exc:
        return [Row("-", "capabilities", "capabilities()", RAISED, f"{type(exc).__name__}: {exc}")]
    if not isinstance(caps, dict):
        return [
            Row(
                "-",
                "capabilities",
                "capabilities()",
                RAISED,
                f"returned {caps!r}; it must return a dict of lists",
            )
        ]
    for family, domain in sorted(catalog.domains.items()):
        specs = [s for s in catalog.specs.values() if s.family == family]
        rows += [
            Row(family, "method", s.id, OK if s.id in caps.get("methods", []) else MISSING)
            for s in specs
        ]
        rows += _try_steps(provider, domain, caps)
        rows += _try_observe(provider, domain, caps)
    return rows


def _try_steps(provider: Provider, domain: Domain, caps: dict[str, Any]) -> list[Row]:
    rows = []
    world = World(provider, domain)
    try:
        world.reset()
    except Exception as exc:
        return [Row(domain.family, "reset", "reset()", RAISED, str(exc))]
    made: dict[str, list[dict[str, Any]]] = {}
    for coll in domain.collections.values():
        step = {coll.step: f"{coll.prefix}1"}
        for fname, ftype in coll.fields.items():
            step[fname] = _value(domain, ftype, made, step)
        row = _setup(world, domain, step, "step", coll.step, caps.get("steps", []))
        if row.status == OK:
            made.setdefault(coll.name, []).append({"id": step[coll.step], **step})
        rows.append(row)
    for kind, fields in domain.faults.items():
        step = {FAULT_STEP: kind, **{f: _value(domain, t, made, {}) for f, t in fields.items()}}
        rows.append(_setup(world, domain, step, "fault", kind, caps.get("faults", [])))
    return rows


def _value(domain: Domain, ftype, made, step) -> Any:
    if ftype.kind == "ref":
        pool = (
            [o for objs in made.values() for o in objs]
            if ftype.ref == "*"
            else made.get(ftype.ref or "", [])
        )
        if ftype.same:
            pool = [o for o in pool if o.get(ftype.same) == step.get(ftype.same)]
        return pool[0]["id"] if pool else None
    if ftype.kind == "list":
        return []
    return representatives(domain, ftype)[0]


def _setup(
    world: World, domain: Domain, step: dict[str, Any], what: str, name: str, declared: list[str]
) -> Row:
    if any(v is None for v in step.values()):
        return Row(
            domain.family, what, name, UNSUPPORTED, "an object it refers to could not be built"
        )
    try:
        world.setup(domain.complete(step))
    except Unsupported as exc:
        return Row(domain.family, what, name, UNSUPPORTED, str(exc))
    except ProviderError as exc:
        return Row(domain.family, what, name, RAISED, str(exc))
    note = (
        ""
        if name in declared or (what == "fault" and name in declared)
        else "works, but is not listed in capabilities()"
    )
    return Row(domain.family, what, name, OK, note)


def _try_observe(provider: Provider, domain: Domain, caps: dict[str, Any]) -> list[Row]:
    rows = []
    world = World(provider, domain)
    for coll in domain.collections:
        try:
            seen = world.observe(coll)
            rows.append(Row(domain.family, "observe", coll, OK, f"{len(seen)} object(s)"))
        except Unsupported as exc:
            rows.append(
                Row(
                    domain.family,
                    "observe",
                    coll,
                    UNSUPPORTED if coll not in caps.get("observe", []) else RAISED,
                    str(exc),
                )
            )
        except ProviderError as exc:
            rows.append(Row(domain.family, "observe", coll, RAISED, str(exc)))
    return rows


def render(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("family", "what", "name", "status")]
    lines = []
    for r in rows:
        cells = [r.family, r.what, r.name, r.status]
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            + (f"  {r.detail}" if r.detail else "")
        )
    counts = {s: sum(r.status == s for r in rows) for s in (OK, UNSUPPORTED, RAISED, MISSING)}
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
