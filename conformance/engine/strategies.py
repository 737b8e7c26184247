"""Hypothesis strategies derived from a domain and a spec's params.

A drawn case is a list of `given` steps (objects of every collection, each field drawn by its
type, references to objects drawn earlier, faults) and the call's arguments (existing objects,
unknown ids, NULL, special values, field values of existing objects, fresh strings: ASCII,
non-ASCII, and the documented maximum length). Nothing here knows a method by name.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from conformance.engine.world import OUT, Unknown
from conformance.spec.domain import ANY, FAULT_STEP, Collection, Domain, FieldType

if TYPE_CHECKING:
    from conformance.engine.repro import CallRepro
    from conformance.spec.model import Param, Spec

MAX_PER_COLLECTION = 3
MAX_PER_FAULT = 2

_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_UNICODE = st.characters(blacklist_categories=("Cs", "Cc"), min_codepoint=0x20)
_LATIN1 = st.characters(min_codepoint=0xA0, max_codepoint=0xFF) | _ASCII
_ADDRESSES = ("192.0.2.10", "192.0.2.11", "198.51.100.7", "2001:db8::1", "target.example")


@dataclass(frozen=True)
class Case:
    """One drawn test case: the steps that build the state, and the call's arguments."""

    given: list[dict[str, Any]]
    args: dict[str, Any]

    def scenario(self, expect: tuple[str, ...]) -> CallRepro:
        """The case in the spec's scenario shape, ready to paste under `scenarios`."""
        return {
            "given": [dict(s) for s in self.given],
            "call": call_args(self.args),
            "expect": expect[0] if len(expect) == 1 else list(expect),
        }


def call_args(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as a scenario writes them: `{unknown: step}`, NULL out-pointers only."""
    return {
        k: ({"unknown": v.step} if isinstance(v, Unknown) else v)
        for k, v in args.items()
        if v != OUT
    }


def text(ftype: FieldType | None, max_size: int = 24) -> st.SearchStrategy[str]:
    """ASCII, non-ASCII, and (when the domain says) exactly the maximum length."""
    if ftype is not None and ftype.alphabet == "address":
        return st.sampled_from(_ADDRESSES) | st.text(_ASCII, max_size=16)
    limit = ftype.max_length if ftype and ftype.max_length else None
    small = min(max_size, limit) if limit else max_size
    options = [
        st.text(_ASCII, min_size=1, max_size=small),
        st.text(_LATIN1, min_size=1, max_size=small),
        st.text(_UNICODE, min_size=1, max_size=small),
    ]
    if limit:
        options.append(st.text(_ASCII, min_size=limit, max_size=limit))
        options.append(st.text(_UNICODE, min_size=limit, max_size=limit))
    return st.one_of(options)


_SCALARS: dict[Any, st.SearchStrategy[Any]] = {}


@functools.lru_cache(maxsize=8192)
def _sampled(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def sampled(values: Any) -> st.SearchStrategy[Any]:
    """`sampled_from`, the same strategy object for the same values: hypothesis validates and
    analyses each new strategy object, which costs more than the draw itself."""
    values = tuple(values)
    try:
        return _sampled(values)
    except TypeError:  # unhashable values (dicts): built each time
        return st.sampled_from(values)


@functools.lru_cache(maxsize=1024)
def integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.lru_cache(maxsize=4096)
def _subsets(ids: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(ids), unique=True, max_size=len(ids))


def scalar(domain: Domain, ftype: FieldType) -> st.SearchStrategy[Any]:
    """The strategy for a scalar field, built once per type: hypothesis spends less time on a
    strategy it has seen (and building one-of text strategies on every draw is not free)."""
    key: Any = ftype
    if ftype.kind == "struct":
        key = (ftype, tuple(domain.types[ftype.struct or ""].items()))
    try:
        found = _SCALARS.get(key)
    except TypeError:  # an enum of structured values: built each time
        return _scalar(domain, ftype)
    if found is None:
        found = _SCALARS[key] = _scalar(domain, ftype)
    return found


def _scalar(domain: Domain, ftype: FieldType) -> st.SearchStrategy[Any]:
    if ftype.kind == "string":
        return text(ftype)
    if ftype.kind == "bool":
        return st.booleans()
    if ftype.kind == "enum":
        return st.sampled_from(ftype.choices)
    if ftype.kind == "uint16":
        return st.integers(0, 0xFFFF)
    if ftype.kind == "uint32":
        return st.integers(0, 0xFFFFFFFF)
    if ftype.kind == "struct":
        fields = domain.types[ftype.struct or ""]
        return st.fixed_dictionaries({k: scalar(domain, t) for k, t in fields.items()})
    raise ValueError(f"no strategy for field kind {ftype.kind!r}")


_ORDER: dict[int, tuple[Domain, list[Collection]]] = {}


def _ordered(domain: Domain) -> list[Collection]:
    """Collections so that every referenced collection comes before its referrers."""
    known = _ORDER.get(id(domain))
    if known is None or known[0] is not domain:
        known = _ORDER[id(domain)] = (domain, _order(domain))
    return known[1]


def _order(domain: Domain) -> list[Collection]:
    done: list[Collection] = []
    pending = list(domain.collections.values())
    while pending:
        for coll in pending:
            deps = {t.ref for t in _refs(coll.fields)}
            if all(d in (ANY, coll.name) or any(c.name == d for c in done) for d in deps):
                done.append(coll)
                pending.remove(coll)
                break
        else:
            done.extend(pending)
            break
    return done


def _refs(fields: dict[str, FieldType]) -> list[FieldType]:
    out = []
    for t in fields.values():
        if t.kind == "ref":
            out.append(t)
        elif t.kind == "list" and t.item is not None and t.item.kind == "ref":
            out.append(t.item)
    return out


@dataclass(frozen=True)
class Allowed:
    """The steps and faults a provider can build (from its capabilities); None: all of them.
    Drawing what it cannot build would only make cases it rejects."""

    steps: frozenset[str] | None = None
    faults: frozenset[str] | None = None
    methods: frozenset[str] | None = None  # what it can call (a scenario's `calls` may name any)

    def step(self, name: str) -> bool:
        return self.steps is None or name in self.steps

    def fault(self, name: str) -> bool:
        return self.faults is None or name in self.faults

    def refused(self, steps: Iterable[dict[str, Any]], methods: Iterable[str] = ()) -> str | None:
        """The first of `steps` (then of `methods` called) the provider's capabilities leave
        out, said as the reason a check is not applicable (known before any provider
        operation), or None."""
        for step in steps:
            kind, name = next(iter(step.items()))
            if kind == FAULT_STEP and not self.fault(name):
                return f"fault {name!r} is not in its capabilities()['faults']"
            if kind != FAULT_STEP and not self.step(kind):
                return f"step {kind!r} is not in its capabilities()['steps']"
        for method in methods:
            if self.methods is not None and method not in self.methods:
                return f"method {method} is not in its capabilities()['methods']"
        return None


def draw_given(
    draw: Any, domain: Domain, require: dict[str, int] | None = None, allowed: Allowed | None = None
) -> list[dict[str, Any]]:
    """Draw the steps of a state: objects in dependency order, then faults."""
    require = require or {}
    allowed = allowed or Allowed()
    steps: list[dict[str, Any]] = []
    made: dict[str, list[dict[str, Any]]] = {}
    for coll in _ordered(domain):
        made[coll.name] = []
        if not allowed.step(coll.step):
            continue
        if any(
            t.ref not in (ANY, coll.name) and not made.get(t.ref or "")
            for t in coll.fields.values()
            if t.kind == "ref"
        ):
            continue
        low = require.get(coll.name, 0)
        count = draw(integers(low, max(low, MAX_PER_COLLECTION)))
        for i in range(1, count + 1):
            step: dict[str, Any] = {coll.step: f"{coll.prefix}{i}"}
            for fname, ftype in coll.fields.items():
                step[fname] = _draw_field(draw, domain, ftype, step, made, fname)
            if any(step[f] is None for f, t in coll.fields.items() if t.kind == "ref"):
                continue  # no object it could refer to (e.g. no port of its initiator)
            steps.append(step)
            made[coll.name].append({"id": step[coll.step], **step})
    for kind, fields in domain.faults.items():
        if not allowed.fault(kind):
            continue
        count = draw(integers(0, MAX_PER_FAULT))
        for _ in range(count):
            step = {FAULT_STEP: kind}
            ok = True
            for fname, ftype in fields.items():
                pool = _pool(ftype, made)
                if ftype.kind == "ref" and not pool:
                    ok = False
                    break
                step[fname] = _draw_field(draw, domain, ftype, step, made, fname)
            if ok and step not in steps:
                steps.append(step)
    return steps


def _pool(ftype: FieldType, made: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    if ftype.ref == ANY:
        return [obj for objs in made.values() for obj in objs]
    return made.get(ftype.ref or "", [])


def _draw_field(
    draw: Any,
    domain: Domain,
    ftype: FieldType,
    step: dict[str, Any],
    made: dict[str, list[dict[str, Any]]],
    fname: str,
) -> Any:
    if ftype.kind == "ref":
        pool = _pool(ftype, made)
        if ftype.same:
            pool = [o for o in pool if o.get(ftype.same) == step.get(ftype.same)]
        if not pool:
            return None
        return draw(sampled(o["id"] for o in pool))
    if ftype.kind == "list" and ftype.item is not None and ftype.item.kind == "ref":
        ids = [o["id"] for o in _pool(ftype.item, made)]
        if not ids:
            return []
        return draw(_subsets(tuple(ids)))
    return draw(scalar(domain, ftype))


@dataclass(frozen=True)
class Pool:
    """What arguments can be drawn from: objects present, objects removed, field values, and
    the objects the last calls used (a bug across calls is most often about one object)."""

    names: dict[str, list[str]]
    removed: dict[str, list[str]]
    values: dict[str, list[Any]]
    recent: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        domain: Domain,
        state: dict[str, list[dict[str, Any]]],
        removed: dict[str, list[str]] | None = None,
        recent: dict[str, list[str]] | None = None,
    ) -> Pool:
        names: dict[str, list[str]] = {}
        values: dict[str, list[Any]] = {}
        for coll in domain.collections.values():
            objects = state.get(coll.name, [])
            names[coll.step] = [o["id"] for o in objects]
            for fname in coll.fields:
                values[f"{coll.step}.{fname}"] = [o[fname] for o in objects if fname in o]
        return cls(names, dict(removed or {}), values, dict(recent or {}))

    def objects(self, step: str) -> st.SearchStrategy[str] | None:
        """An object of `step` to use: often one the last calls used, else any present."""
        present = self.names.get(step) or []
        if not present:
            return None
        recent = [n for n in self.recent.get(step, []) if n in present]
        return sampled(recent) | sampled(present) if recent else sampled(present)


def draw_new_step(
    draw: Any, domain: Domain, state: dict[str, list[dict[str, Any]]], counters: dict[str, int]
) -> dict[str, Any] | None:
    """One more object (or fault) for a running state, with a name not used before."""
    made = {c.name: list(state.get(c.name, [])) for c in domain.collections.values()}
    kinds = [
        c
        for c in _ordered(domain)
        if all(
            t.ref in (ANY, c.name) or made.get(t.ref or "")
            for t in c.fields.values()
            if t.kind == "ref"
        )
    ]
    faults = list(domain.faults)
    pick = draw(sampled([("c", c.name) for c in kinds] + [("f", f) for f in faults]))
    if pick[0] == "f":
        step: dict[str, Any] = {FAULT_STEP: pick[1]}
        for fname, ftype in domain.faults[pick[1]].items():
            step[fname] = _draw_field(draw, domain, ftype, step, made, fname)
            if ftype.kind == "ref" and step[fname] is None:
                return None
        return None if step in state.get("faults", []) else step
    coll = domain.collections[pick[1]]
    counters[coll.name] = counters.get(coll.name, len(made[coll.name])) + 1
    step = {coll.step: f"{coll.prefix}{counters[coll.name]}"}
    for fname, ftype in coll.fields.items():
        step[fname] = _draw_field(draw, domain, ftype, step, made, fname)
        if ftype.kind == "ref" and step[fname] is None:
            return None
    return step


def draw_args(draw: Any, spec: Spec, domain: Domain, pool: Pool) -> dict[str, Any]:
    """Draw the call's arguments against the objects the pool offers."""
    args: dict[str, Any] = {}
    if spec.this_object is not None:
        objects = pool.objects(spec.this_object)
        args["this"] = draw(st.nothing() if objects is None else objects)
    for param in spec.params:
        args[param.name] = draw(param_strategy(spec, domain, param, pool))
    return args


def param_strategy(spec: Spec, domain: Domain, param: Param, pool: Pool) -> st.SearchStrategy[Any]:
    if param.is_out:
        return st.sampled_from([OUT, None]) if param.nullable else st.just(OUT)
    options: list[st.SearchStrategy[Any]] = []
    if param.refers:
        present = pool.objects(param.refers)
        if present is not None:
            options.append(present)
        if pool.removed.get(param.refers):
            options.append(sampled(pool.removed[param.refers]))
        options.append(st.integers(1, 2).map(functools.partial(Unknown, param.refers)))
    elif param.values:
        step, _, fname = param.values.partition(".")
        coll = domain.by_step(step)
        ftype = coll.fields.get(fname) if coll else None
        if pool.values.get(param.values):
            options.append(sampled(pool.values[param.values]))
        if ftype is not None:
            options.append(scalar(domain, ftype))
    else:
        options.append(_by_c_type(param.type))
    if param.special:
        options.append(st.sampled_from([spec.constants[s] for s in param.special]))
    if param.examples:
        options.append(st.sampled_from(list(param.examples)))
    if param.nullable:
        options.append(st.none())
    return st.one_of(options)


def _by_c_type(ctype: str) -> st.SearchStrategy[Any]:
    upper = ctype.upper()
    if "STR" in upper or "WCHAR" in upper or "BSTR" in upper:
        return text(None)
    if upper in ("BOOL", "BOOLEAN", "VARIANT_BOOL"):
        return st.booleans()
    if upper in ("USHORT", "WORD"):
        return st.integers(0, 0xFFFF)
    if upper in ("LONG", "INT", "HRESULT"):
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(0, 0xFFFFFFFF)


def state_of(domain: Domain, given: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The oracle state a list of `given` steps builds."""
    state = domain.empty_state()
    for step in given:
        domain.apply(state, domain.complete(step))
    return state


def require_objects(domain: Domain, coll: Collection, require: dict[str, int]) -> None:
    """At least one object of `coll`, and so of every collection it must refer to."""
    if require.get(coll.name):
        return
    require[coll.name] = 1
    for ref in (t for t in coll.fields.values() if t.kind == "ref"):
        if ref.ref in domain.collections and ref.ref != coll.name:
            require_objects(domain, domain.collections[ref.ref], require)


def cases(spec: Spec, domain: Domain, allowed: Allowed | None = None) -> st.SearchStrategy[Case]:
    """Whole cases for a spec: a state with the called object present, then arguments."""
    require: dict[str, int] = {}
    if spec.this_object is not None:
        coll = domain.by_step(spec.this_object)
        if coll is not None:
            require_objects(domain, coll, require)

    @st.composite
    def _case(draw: Any) -> Case:
        given = draw_given(draw, domain, require, allowed)
        return Case(given, draw_args(draw, spec, domain, Pool.of(domain, state_of(domain, given))))

    return _case()
