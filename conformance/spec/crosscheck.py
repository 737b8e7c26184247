"""Cross-checks of one spec's meaning, which its schema cannot see.

A spec is written by a person and read by the oracle, the engine and the reports; a typo in a
symbol, a collection or a parameter would otherwise surface as a baffling test failure in the
middle of a run. `spec_problems` checks a schema-valid spec against its domain and the code
table: symbols, CEL names, steps, fields and reachability; a multi-call scenario's `calls`
entries are judged like single calls, each against the spec of the method it calls. Every
problem is located at the YAML line it concerns, so `conformance validate` can list them all
as `file:line: path: message`. The checks across specs are `catalog_checks`; the shape is `schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conformance.spec.cel_checks import ARGS, STATE, cel_facts
from conformance.spec.codes import CodeTable
from conformance.spec.domain import ANY, FAULT_STEP, FAULTS, Domain, FieldType
from conformance.spec.messages import did_you_mean, is_scalar, short, unknown
from conformance.spec.model import DIRECT, Param, Spec
from conformance.spec.paths import specs_root_of
from conformance.spec.source import Path_, Problem, dotted

THIS = "this"
CATCH_ALL = "true"
UNKNOWN = "unknown"


@dataclass
class _Check:
    """What every per-spec check needs: the spec, its domain, the code table, the findings,
    the loaded specs by id; `home`, when a `calls` entry is judged against another method's
    spec, is the spec that holds the scenario, where its problems are reported."""

    spec: Spec
    domain: Domain | None
    codes: CodeTable
    problems: list[Problem] = field(default_factory=list)
    specs: dict[str, Spec] = field(default_factory=dict)
    home: Spec | None = None

    def add(self, path: Path_, message: str) -> None:
        spec = self.home or self.spec
        if spec.document is not None:
            self.problems.append(spec.document.problem(path, message))
        else:
            self.problems.append(Problem(spec.file, 1, dotted(path), message))

    @property
    def whose(self) -> str:
        """` of <method>` when judging a call to another method, for the names' label."""
        return f" of {self.spec.id}" if self.home is not None else ""

    @property
    def is_com(self) -> bool:
        return self.spec.kind == "com-method"

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.spec.params] + ([THIS] if self.is_com else [])

    @property
    def expectable(self) -> list[str]:
        """Symbols a rule or scenario may expect: the table's rows and `also` symbols."""
        extra = [s for s in self.spec.also if s not in self.codes.families]
        return [c.symbol for c in self.spec.codes] + extra


def spec_problems(
    spec: Spec,
    domain: Domain | None,
    codes: CodeTable,
    families: dict[Path, list[str]] | None = None,
    specs: dict[str, Spec] | None = None,
) -> list[Problem]:
    """Everything the schema cannot see: symbols, CEL, domain names, reachability.
    `families` memoizes the families found beside each folder, across one catalog's specs;
    `specs`, the loaded specs by id, are those a `calls` entry may call."""
    check = _Check(spec, domain, codes, specs=specs or {})
    known = _known_families(spec.file, {} if families is None else families)
    if domain is None and spec.family not in known:  # else its domain file failed, and said so
        check.add(("family",), unknown("family", spec.family, known, "families with a domain"))
    _code_problems(check)
    _param_problems(check)
    _interface_problems(check)
    _rule_problems(check)
    _scenario_problems(check)
    _finding_problems(check)
    _observed_problems(check)
    return check.problems


def _known_families(file: str, memo: dict[Path, list[str]]) -> list[str]:
    """The families with a domain beside a spec, read once per folder."""
    folder = Path(file).resolve().parent
    if folder not in memo:
        memo[folder] = sorted(p.stem for p in (specs_root_of(file) / "domains").glob("*.yaml"))
    return memo[folder]


def _code_problems(check: _Check) -> None:
    """The code table: each symbol once, a completion only where completion exists, a
    row's `source` among the sources, `also` naming symbols or families of codes.yaml."""
    spec = check.spec
    docs = {s.get("doc") for s in spec.sources}
    seen: set[str] = set()
    for i, code in enumerate(spec.codes):
        path = ("returns", "codes", i)
        if code.symbol in seen:
            check.add((*path, "symbol"), f"{code.symbol} is listed twice")
        seen.add(code.symbol)
        if code.via == "completion" and spec.delivery == DIRECT:
            check.add((*path, "via"), "a code cannot arrive by completion when delivery is direct")
        rows = (spec.raw.get("returns") or {}).get("codes") or []
        source = rows[i].get("source") if i < len(rows) else None
        if source is not None and source not in docs:
            check.add((*path, "source"), f"{source!r} is not the doc of any entry in sources")
    table_loaded = bool(check.codes.symbols or check.codes.families)
    for i, entry in enumerate(spec.also if table_loaded else ()):
        if entry not in check.codes.symbols and entry not in check.codes.families:
            names = [*check.codes.symbols, *check.codes.families]
            check.add(
                ("returns", "also", i),
                f"{entry!r} is neither a symbol nor a family of "
                f"codes.yaml{did_you_mean(entry, names)}",
            )


def _param_problems(check: _Check) -> None:
    """Parameters: unique names, `this` left to the called object, `special` values that
    are constants, and `refers`/`values` naming the domain's steps and fields."""
    seen: set[str] = set()
    for i, param in enumerate(check.spec.params):
        path = ("params", i)
        if param.name in seen:
            check.add((*path, "name"), f"parameter {param.name!r} is listed twice")
        if param.name == THIS:
            check.add((*path, "name"), "'this' is reserved for the called object")
        seen.add(param.name)
        for j, name in enumerate(param.special):
            if name not in check.spec.constants:
                check.add(
                    (*path, "special", j),
                    unknown("constant", name, check.spec.constants, "constants"),
                )
        if check.domain is not None:
            _param_domain_problems(check, path, param, check.domain)


def _param_domain_problems(check: _Check, path: Path_, param: Param, domain: Domain) -> None:
    """`refers` and `values` name a step of the domain (and a field of its objects),
    so the strategies can draw real objects for the parameter."""
    if param.refers is not None and domain.by_step(param.refers) is None:
        check.add((*path, "refers"), _unknown_step(param.refers, domain))
    if param.values is not None:
        step, _, name = param.values.partition(".")
        coll = domain.by_step(step)
        if coll is None:
            check.add((*path, "values"), _unknown_step(step, domain))
        elif name != "id" and name not in coll.fields:
            check.add(
                (*path, "values"), unknown("field", name, ["id", *coll.fields], f"fields of {step}")
            )


def _unknown_step(step: str, domain: Domain, *extra: str) -> str:
    """The message for a step the domain does not have, listing those it has."""
    return unknown("step", step, [*domain.steps(), *extra], f"steps of {domain.family}")


def _interface_problems(check: _Check) -> None:
    """A COM method's object is a step of the domain: the engine creates one to call."""
    obj = check.spec.this_object
    if check.domain is not None and obj is not None and check.domain.by_step(obj) is None:
        check.add(("interface", "object"), _unknown_step(obj, check.domain))


# --------------------------------------------------------------------------- rules


def _rule_problems(check: _Check) -> None:
    """Rules: known codes, CEL over known names, effects on known collections, outputs to
    out-parameters; one catch-all, last, and every listed code expected by some rule, since
    the oracle could otherwise never predict it."""
    rules = check.spec.rules
    catch_all = next((r.index for r in rules if r.when.strip() == CATCH_ALL), None)
    for rule in rules:
        path = ("rules", rule.index)
        _expect_problems(check, (*path, "expect"), _raw(check.spec, "rules", rule.index))
        _cel_problems(check, (*path, "when"), rule.when)
        for name, src in rule.effects.items():
            if check.domain is not None and name not in check.domain.collections:
                check.add((*path, "effects", name), _unknown_collection(name, check.domain))
            _cel_problems(check, (*path, "effects", name), src)
        outs = {p.name for p in check.spec.params if p.is_out}
        for name, src in rule.outputs.items():
            if name not in outs:
                check.add(
                    (*path, "outputs", name),
                    f"{name!r} is not an out-parameter of {check.spec.id} "
                    f"(out-parameters: {', '.join(sorted(outs)) or 'none'})",
                )
            _cel_problems(check, (*path, "outputs", name), src)
        if catch_all is not None and rule.index > catch_all:
            check.add(path, f'never reached: rules[{catch_all}] matches always (when: "true")')
    if catch_all is None:
        check.add(("rules",), 'no catch-all: the last rule should be when: "true"')
    expected = {symbol for rule in rules for symbol in rule.expect}
    for i, code in enumerate(check.spec.codes):
        if code.symbol not in expected:
            check.add(("returns", "codes", i), f"unreachable: no rule expects {code.symbol}")


def _raw(spec: Spec, section: str, index: int) -> Any:
    """A rule's or scenario's `expect` as written: a string, or a list whose items have lines."""
    entries = spec.raw.get(section) or []
    written = entries[index].get("expect") if index < len(entries) else None
    if written is not None:
        return written
    items = (spec.rules if section == "rules" else spec.scenarios)[index].expect
    return items[0] if len(items) == 1 else list(items)


def _expect_problems(check: _Check, path: Path_, expect: str | list[str]) -> None:
    """Each expected symbol is one the spec lists; a family of codes is not one code."""
    items = (
        [(path, expect)]
        if isinstance(expect, str)
        else [((*path, j), s) for j, s in enumerate(expect)]
    )
    allowed = check.expectable
    for where, symbol in items:
        if symbol in allowed:
            continue
        if symbol in check.spec.also:
            check.add(
                where, f"{symbol!r} is a family of codes in returns.also{check.whose}, not one code"
            )
            continue
        check.add(
            where, unknown("code", symbol, allowed, f"returns.codes and returns.also{check.whose}")
        )


def _unknown_collection(name: str, domain: Domain) -> str:
    """The message for a collection the domain does not have, listing those it has."""
    return unknown("collection", name, domain.collections, f"collections of {domain.family}")


# --------------------------------------------------------------------------- CEL


def _cel_problems(check: _Check, path: Path_, src: str) -> None:
    """Check one expression, and every name it uses against the spec and domain."""
    facts = cel_facts(src)
    if facts.error is not None:
        check.add(path, facts.error)
        return
    for name in facts.unknown:
        check.add(
            path,
            f"unknown variable {name!r}: expressions see only state, args, "
            "constants and their own comprehension variables",
        )
    for root, member in facts.selections:
        message = _selection_problem(check, root, member)
        if message:
            check.add(path, message)


def _selection_problem(check: _Check, root: str, member: str | None) -> str | None:
    """Why `root.member` names nothing this spec's expressions can see, or None."""
    if member is None:
        return f"{root} is used only as {root}.<name>"
    if root == STATE:
        if check.domain is None or member in check.domain.collections or member == FAULTS:
            return None
        return f"state.{member}: {_unknown_collection(member, check.domain)}"
    if root == ARGS:
        if member == THIS and not check.is_com:
            return "args.this: a function has no 'this' (only com-methods do)"
        if member in check.param_names:
            return None
        return f"args.{member}: {unknown('parameter', member, check.param_names, 'parameters')}"
    if member in check.spec.constants:
        return None
    return f"constants.{member}: {unknown('constant', member, check.spec.constants, 'constants')}"


# --------------------------------------------------------------------------- scenarios


def _scenario_problems(check: _Check) -> None:
    """Scenarios: unique names, known codes, `given` steps that build a world the domain
    allows, a call with known arguments, `then` over known collections; each `calls` entry
    likewise, in order."""
    names: dict[str, int] = {}
    for scenario in check.spec.scenarios:
        path = ("scenarios", scenario.index)
        if scenario.name in names:
            check.add(
                (*path, "name"), f"scenario name also used by scenarios[{names[scenario.name]}]"
            )
        names.setdefault(scenario.name, scenario.index)
        _expect_problems(check, (*path, "expect"), _raw(check.spec, "scenarios", scenario.index))
        created: dict[str, str] = {}
        if check.domain is not None:
            for j, step in enumerate(scenario.given):
                _step_problems(check, check.domain, (*path, "given", j), step, created)
        _call_problems(check, (*path, "call"), scenario.call, created)
        _then_problems(check, (*path, "then"), scenario.then)
        for j, entry in enumerate(scenario.calls):
            _entry_problems(check, (*path, "calls", j), entry, created)


def _then_problems(check: _Check, path: Path_, then: dict[str, Any]) -> None:
    """`then` names collections of the domain."""
    for name in then:
        if check.domain is not None and name not in check.domain.collections:
            check.add((*path, name), _unknown_collection(name, check.domain))


def _entry_problems(
    check: _Check, path: Path_, entry: dict[str, Any], created: dict[str, str]
) -> None:
    """A `calls` entry: its `given` steps, whose names the later entries see, or a call
    judged like a scenario's against the method it calls (its parameters, `this` and codes),
    reported where the entry is written."""
    if check.domain is not None:
        for k, step in enumerate(entry.get("given") or []):
            _step_problems(check, check.domain, (*path, "given", k), step, created)
    called = _called(check, entry.get("method"))
    if "call" not in entry or called is None:
        return
    _call_problems(called, (*path, "call"), entry.get("call") or {}, created)
    if "expect" in entry:
        _expect_problems(called, (*path, "expect"), entry["expect"])
    _then_problems(check, (*path, "then"), entry.get("then") or {})


def _called(check: _Check, method: str | None) -> _Check | None:
    """The check a call to `method` (default the scenario's own) is judged by; None for a
    method not loaded or of another family, which catalog_checks reports."""
    if method is None or method == check.spec.id:
        return check
    other = check.specs.get(method)
    if other is None or other.family != check.spec.family:
        return None
    return replace(check, spec=other, home=check.spec)


def _step_problems(
    check: _Check, domain: Domain, path: Path_, step: dict[str, Any], created: dict[str, str]
) -> None:
    """A given step: a known kind, a fresh name, declared fields with plausible values."""
    kind, name = next(iter(step.items()))
    if not isinstance(name, str):
        check.add((*path, kind), f"{kind} {short(name)}: name it with a string")
        return
    if kind == FAULT_STEP:
        if name not in domain.faults:
            check.add(
                (*path, kind), unknown("fault", name, domain.faults, f"faults of {domain.family}")
            )
            return
        fields = domain.faults[name]
    else:
        coll = domain.by_step(kind)
        if coll is None:
            check.add((*path, kind), _unknown_step(kind, domain, FAULT_STEP))
            return
        fields = coll.fields
        if name in created:
            check.add((*path, kind), f"{name!r} is created twice")
        else:
            created[name] = kind
    for key, value in list(step.items())[1:]:
        if key not in fields:
            check.add((*path, key), unknown("field", key, fields, f"fields of {kind}"))
            continue
        message = _value_problem(domain, fields[key], value, created)
        if message:
            check.add((*path, key), message)


def _value_problem(
    domain: Domain, ftype: FieldType, value: Any, created: dict[str, str]
) -> str | None:
    """Why a given value does not fit its declared field type, or None."""
    kind = ftype.kind
    if kind == "ref":
        return _ref_problem(domain, ftype, value, created)
    if kind == "list":
        if not isinstance(value, list):
            return f"{short(value)} is not a list"
        item = ftype.item or FieldType("string")
        return next((m for v in value if (m := _value_problem(domain, item, v, created))), None)
    if kind == "enum":
        if value in ftype.choices:
            return None
        quote = " (quote YAML words like off, on, yes, no)" if is_scalar(value) else ""
        return f"{short(value)} is not one of {', '.join(map(str, ftype.choices))}{quote}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{short(value)} is not true or false"
    if kind == "string":
        if not isinstance(value, str):
            return f"{short(value)} is not a string"
        too_long = ftype.max_length is not None and len(value) > ftype.max_length
        return f"longer than {ftype.max_length} characters" if too_long else None
    if kind in ("uint16", "uint32"):
        top = 0xFFFF if kind == "uint16" else 0xFFFFFFFF
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top
        return None if ok else f"{short(value)} is not a {kind}"
    if kind == "struct":
        return _struct_problem(domain, ftype, value, created)
    return None


def _ref_problem(
    domain: Domain, ftype: FieldType, value: Any, created: dict[str, str]
) -> str | None:
    """A reference field names an object an earlier step created, of the right kind."""
    if isinstance(value, dict) and set(value) == {UNKNOWN}:
        return None
    if not isinstance(value, str):
        return f"{short(value)} is not the name of an object"
    if value not in created:
        return f"{value!r} is not created by an earlier step"
    coll = domain.collections.get(ftype.ref or "")
    if ftype.ref != ANY and coll is not None and created[value] != coll.step:
        return f"{value!r} is a {created[value]}, not a {coll.step}"
    return None


def _struct_problem(
    domain: Domain, ftype: FieldType, value: Any, created: dict[str, str]
) -> str | None:
    """A struct value has only the struct type's fields, each of its type."""
    fields = domain.types.get(ftype.struct or "", {})
    if not isinstance(value, dict):
        return f"{short(value)} is not a {ftype.struct}"
    for key, item in value.items():
        if key not in fields:
            return f"{ftype.struct} has no field {key!r} (fields: {', '.join(fields)})"
        message = _value_problem(domain, fields[key], item, created)
        if message:
            return f"{key}: {message}"
    return None


def _call_problems(
    check: _Check, path: Path_, call: dict[str, Any], created: dict[str, str]
) -> None:
    """A scenario's call: known parameters, objects the scenario created or
    {unknown: step}."""
    params = {p.name: p for p in check.spec.params}
    for key, value in call.items():
        if key == THIS and check.is_com:
            message = _arg_ref_problem(check, value, check.spec.this_object, (), created)
        elif key in params:
            param = params[key]
            message = (
                None
                if param.refers is None
                else _arg_ref_problem(
                    check,
                    value,
                    param.refers,
                    param.special,
                    created,
                    nullable=param.nullable or param.optional,
                )
            )
        else:
            message = unknown("parameter", key, check.param_names, f"parameters{check.whose}")
        if message:
            check.add((*path, key), message)


def _arg_ref_problem(
    check: _Check,
    value: Any,
    step: str | None,
    special: tuple[str, ...],
    created: dict[str, str],
    nullable: bool = False,
) -> str | None:
    """An object argument: a name the scenario created, {unknown: step}, or a constant."""
    if check.domain is None or step is None:
        return None
    if isinstance(value, dict) and set(value) == {UNKNOWN}:
        target = value[UNKNOWN]
        ok = isinstance(target, str) and check.domain.by_step(target) is not None
        return None if ok else _unknown_step(str(target), check.domain)
    if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool)):
        return None  # NULL where allowed, or a literal id (e.g. a port number) on purpose
    if isinstance(value, str) and (value in created or value in special):
        return None
    known = [*created, *special]
    return (
        f"{short(value)} is not an object this scenario creates; use {{unknown: {step}}} "
        f"for an id that exists nowhere{did_you_mean(str(value), known)}"
    )


def _finding_problems(check: _Check) -> None:
    """Findings name codes of the spec and sources it lists, so a report can point to them."""
    docs = {s.get("doc") for s in check.spec.sources}
    symbols = [c.symbol for c in check.spec.codes] + list(check.spec.also)
    for i, finding in enumerate(check.spec.findings):
        code, source = finding.get("code"), finding.get("source")
        if code is not None and code not in symbols:
            check.add(
                ("findings", i, "code"),
                unknown("code", code, symbols, "returns.codes and returns.also"),
            )
        if source is not None and source not in docs:
            check.add(
                ("findings", i, "source"), f"{source!r} is not the doc of any entry in sources"
            )


def _observed_problems(check: _Check) -> None:
    """`observed` entries: a code Windows can give, a documented code it replaces, CEL like a
    rule's `when` (the version string itself is the schema's)."""
    known = list(dict.fromkeys([*check.expectable, *check.codes.symbols]))
    for entry in check.spec.observed:
        path = ("observed", entry.index)
        if entry.code not in known:
            check.add(
                (*path, "code"), unknown("code", entry.code, known, "returns.codes and codes.yaml")
            )
        if entry.instead_of is not None:
            if entry.instead_of not in check.expectable:
                check.add(
                    (*path, "instead_of"),
                    unknown(
                        "code", entry.instead_of, check.expectable, "returns.codes and returns.also"
                    ),
                )
            elif entry.instead_of == entry.code:
                check.add(
                    (*path, "instead_of"),
                    f"{entry.code} replaces itself: an observed "
                    "code must differ from the documented one",
                )
        if entry.when is not None:
            _cel_problems(check, (*path, "when"), entry.when)
