"""The space of small cases the planner chooses from: states of a few objects whose fields the
rules read, and every class of argument, enumerated in a fixed order (smallest first) or
sampled from the same space by a generator seeded by the spec.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

from conformance.engine.strategies import (
    _ADDRESSES,
    Allowed,
    Case,
    Pool,
    _ordered,
    _pool,
    require_objects,
    state_of,
)
from conformance.engine.world import OUT, Unknown
from conformance.spec.domain import FAULT_STEP, Collection, Domain, FieldType

if TYPE_CHECKING:
    from conformance.spec.model import Param, Spec

# -- the exhaustive phase: small states and every argument class, in a fixed order -----------

# ASCII; non-ASCII the usual ANSI code pages carry; non-ASCII they do not.
_STRING_CLASSES = ("x1", "é1", "жé")
_MAX_ARGS_PER_STATE = 48


def _rule_text(spec: Spec) -> str:
    return " ".join(
        [r.when for r in spec.rules]
        + [e for r in spec.rules for e in (*r.effects.values(), *r.outputs.values())]
    )


def read_fields(spec: Spec, domain: Domain) -> frozenset[str]:
    """The object fields a spec's rules mention (as `.field`), plus those its params draw from.

    A name is counted wherever it appears, whichever collection it belongs to: over-counting
    only costs enumeration time, missing one would hide a rule.
    """
    text = _rule_text(spec)
    names = {f for c in domain.collections.values() for f in c.fields}
    read = {f for f in names if re.search(rf"\.{re.escape(f)}\b", text)}
    read |= {p.values.partition(".")[2] for p in spec.params if p.values}
    return frozenset(read)


def relevant(spec: Spec, domain: Domain) -> tuple[list[Collection], list[str]]:
    """The collections and fault kinds a spec's rules can see (and what those depend on)."""
    text = _rule_text(spec)
    wanted = {c for c in domain.collections if f"state.{c}" in text}
    for p in spec.params:
        for step in filter(None, (p.refers, (p.values or "").partition(".")[0])):
            coll = domain.by_step(step)
            if coll:
                wanted.add(coll.name)
    if spec.this_object and (this := domain.by_step(spec.this_object)):
        wanted.add(this.name)
    grew = True
    while grew:
        grew = False
        for name in list(wanted):
            for t in domain.collections[name].fields.values():
                t = t.item if t.kind == "list" and t.item is not None else t
                if t.kind == "ref" and t.ref in domain.collections and t.ref not in wanted:
                    wanted.add(t.ref)
                    grew = True
    faults = [k for k in domain.faults if f"'{k}'" in text or f'"{k}"' in text]
    return [c for c in _ordered(domain) if c.name in wanted], faults


def representatives(domain: Domain, ftype: FieldType) -> list[Any]:
    if ftype.kind == "bool":
        return [False, True]
    if ftype.kind == "enum":
        return list(ftype.choices)
    if ftype.kind == "string":
        return [_ADDRESSES[0]] if ftype.alphabet == "address" else list(_STRING_CLASSES)
    if ftype.kind in ("uint16", "uint32"):
        return [3260] if ftype.kind == "uint16" else [0]
    if ftype.kind == "struct":
        fields = domain.types[ftype.struct or ""]
        return [{k: representatives(domain, t)[0] for k, t in fields.items()}]
    return [None]


def _objects(
    domain: Domain,
    coll: Collection,
    count: int,
    made: dict[str, list[dict[str, Any]]],
    read: frozenset[str] | None = None,
):
    """Every way to build `count` objects of `coll` against the objects made so far.

    Fields outside `read` (those the spec's rules never look at) take one value only: varying
    them multiplies the states without reaching another rule.
    """
    if count == 0:
        yield []
        return
    for rest in _objects(domain, coll, count - 1, made, read):
        step = {coll.step: f"{coll.prefix}{count}"}
        yield from _fill(domain, coll, step, list(coll.fields.items()), made, rest, read)


def field_choices(
    domain: Domain,
    fname: str,
    ftype: FieldType,
    step: dict[str, Any],
    made: dict[str, list[dict[str, Any]]],
    read: frozenset[str] | None = None,
) -> list[Any]:
    """The values a small state gives one field of a new object (or fault): each object it
    may refer to, each representative of its type; one value only for a field the spec's
    rules never read."""
    if ftype.kind == "ref":
        pool = _pool(ftype, made)
        if ftype.same:
            pool = [o for o in pool if o.get(ftype.same) == step.get(ftype.same)]
        choices: list[Any] = [o["id"] for o in pool]
    elif ftype.kind == "list" and ftype.item is not None:
        ids = [o["id"] for o in _pool(ftype.item, made)]
        choices = [[], ids] if ids else [[]]
    else:
        choices = representatives(domain, ftype)
    if read is not None and fname not in read:
        choices = choices[:1]
    return choices


def _fill(domain, coll, step, fields, made, rest, read: frozenset[str] | None = None):
    if not fields:
        yield [*rest, step]
        return
    (fname, ftype), tail = fields[0], fields[1:]
    for choice in field_choices(domain, fname, ftype, step, made, read):
        yield from _fill(domain, coll, {**step, fname: choice}, tail, made, rest, read)


def _states(
    domain: Domain,
    colls: list[Collection],
    faults: list[str],
    require: dict[str, int],
    read: frozenset[str] | None = None,
):
    def build(i: int, made: dict[str, list[dict[str, Any]]], steps: list[dict[str, Any]]):
        if i == len(colls):
            yield from _with_faults(domain, faults, made, steps)
            return
        coll = colls[i]
        for count in range(require.get(coll.name, 0), 3):
            for objs in _objects(domain, coll, count, made, read):
                made2 = {**made, coll.name: [{"id": o[coll.step], **o} for o in objs]}
                yield from build(i + 1, made2, steps + objs)

    yield from build(0, {}, [])


def _with_faults(domain: Domain, faults: list[str], made, steps):
    options: list[list[dict[str, Any] | None]] = []
    for kind in faults:
        instances: list[dict[str, Any] | None] = [None]
        for filled in _fill(
            domain, None, {FAULT_STEP: kind}, list(domain.faults[kind].items()), made, []
        ):
            instances.append(filled[0])
        options.append(instances)
    for combo in itertools.product(*options):
        yield steps + [f for f in combo if f is not None]


def _arg_options(
    spec: Spec, domain: Domain, param: Param, pool: Pool, boundaries: bool = False
) -> list[Any]:
    """The values one argument takes in small cases; with `boundaries`, also the edge
    strings of its type (empty, one character, the longest allowed and one past it)."""
    if param.is_out:
        return [OUT, None] if param.nullable else [OUT]
    out: list[Any] = []
    ftype = param_field(domain, param)
    if param.refers:
        out += [
            *pool.names.get(param.refers, []),
            *pool.removed.get(param.refers, []),
            Unknown(param.refers),
        ]
    elif param.values:
        out += list(pool.values.get(param.values, []))
        if ftype is not None:
            out += representatives(domain, ftype)
    elif is_text(param):
        out += list(_STRING_CLASSES)
    elif is_flag(param):
        out += [False, True]
    else:
        out.append(0)
    if (
        boundaries
        and (is_text(param) or (ftype is not None and ftype.kind == "string"))
        and not param.refers
    ):
        out += [*boundary_strings(ftype), *_STRING_CLASSES]
    out += [spec.constants[s] for s in param.special] + list(param.examples)
    if param.nullable:
        out.append(None)
    unique: list[Any] = []
    for v in out:
        if v not in unique:
            unique.append(v)
    return unique


def param_field(domain: Domain, param: Param) -> FieldType | None:
    """The domain field a parameter's values come from (`values: step.field`), if any."""
    if not param.values:
        return None
    step, _, fname = param.values.partition(".")
    coll = domain.by_step(step)
    return coll.fields.get(fname) if coll else None


def is_text(param: Param) -> bool:
    """Whether a parameter is a string by its C type (PSTR, LPCWSTR, BSTR, ...)."""
    upper = param.type.upper()
    return "STR" in upper or "WCHAR" in upper or "BSTR" in upper


def is_flag(param: Param) -> bool:
    """Whether a parameter is a boolean by its C type."""
    return param.type.upper() in ("BOOL", "BOOLEAN", "VARIANT_BOOL")


def boundary_strings(ftype: FieldType | None) -> list[str]:
    """Empty, one character, and (when the type gives a maximum) the longest and one past."""
    out = ["", "x"]
    if ftype is not None and ftype.max_length:
        out += ["n" * ftype.max_length, "n" * (ftype.max_length + 1)]
    return out


def case_space(
    spec: Spec, domain: Domain, allowed: Allowed | None = None
) -> tuple[list[Collection], list[str], dict[str, int], frozenset[str]]:
    """What the small cases of a spec are built from: the collections and faults its rules
    can see (those the provider can build), the objects the call needs, the fields read."""
    allowed = allowed or Allowed()
    colls, faults = relevant(spec, domain)
    colls = [c for c in colls if allowed.step(c.step)]
    faults = [f for f in faults if allowed.fault(f)]
    require: dict[str, int] = {}
    if spec.this_object and (this := domain.by_step(spec.this_object)):
        require_objects(domain, this, require)
    return colls, faults, require, read_fields(spec, domain)


def arguments_of(
    spec: Spec, domain: Domain, pool: Pool, boundaries: bool = False
) -> list[tuple[str, list[Any]]]:
    """Each argument's name and the values small cases give it."""
    dims: list[tuple[str, list[Any]]] = []
    if spec.this_object is not None:
        dims.append(("this", pool.names.get(spec.this_object, [])))
    dims += [(p.name, _arg_options(spec, domain, p, pool, boundaries)) for p in spec.params]
    return dims


def sample_case(
    spec: Spec,
    domain: Domain,
    rng: Any,
    space: tuple[list[Collection], list[str], dict[str, int], frozenset[str]],
    boundaries: bool = True,
) -> tuple[Case, dict[str, Any]] | None:
    """One small case drawn with `rng` (a `random.Random`) from the same space as
    `enumerate_cases`, and the state its steps build: the planner's way to reach
    combinations far down that order."""
    colls, faults, require, read = space
    made: dict[str, list[dict[str, Any]]] = {}
    steps: list[dict[str, Any]] = []
    for coll in colls:
        objects: list[dict[str, Any]] = []
        for i in range(1, rng.randint(require.get(coll.name, 0), 2) + 1):
            step: dict[str, Any] = {coll.step: f"{coll.prefix}{i}"}
            for fname, ftype in coll.fields.items():
                choices = field_choices(domain, fname, ftype, step, made, read)
                if not choices:
                    break
                step[fname] = rng.choice(choices)
            else:
                objects.append(step)
                continue
            break
        if len(objects) < require.get(coll.name, 0):
            return None
        made[coll.name] = [{"id": o[coll.step], **o} for o in objects]
        steps += objects
    for kind in faults:
        if rng.random() < 0.5:
            continue
        instances = [
            f[0]
            for f in _fill(
                domain, None, {FAULT_STEP: kind}, list(domain.faults[kind].items()), made, []
            )
        ]
        if instances:
            steps.append(rng.choice(instances))
    state = state_of(domain, steps)
    dims = arguments_of(spec, domain, Pool.of(domain, state), boundaries)
    if any(not values for _, values in dims):
        return None
    return Case(steps, {name: rng.choice(values) for name, values in dims}), state


def enumerate_cases(
    spec: Spec, domain: Domain, limit: int, allowed: Allowed | None = None, boundaries: bool = False
):
    """Small states crossed with every argument class, smallest first, at most `limit`."""
    colls, faults, require, read = case_space(spec, domain, allowed)
    produced = 0
    for given in _states(domain, colls, faults, require, read):
        dims = arguments_of(spec, domain, Pool.of(domain, state_of(domain, given)), boundaries)
        combos = itertools.islice(itertools.product(*(d[1] for d in dims)), _MAX_ARGS_PER_STATE)
        for combo in combos:
            yield Case(given, dict(zip((d[0] for d in dims), combo, strict=True)))
            produced += 1
            if produced >= limit:
                return
