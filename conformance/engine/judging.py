"""Judging one call: the code, the out-parameters and the next state against what the rules
predict, and the words and reproductions a failure is reported with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conformance.engine.executions import Call
from conformance.engine.strategies import Case, call_args
from conformance.engine.world import World
from conformance.provider import Outcome, Unsupported
from conformance.spec.codes import (
    failed,
    hex32,
    is_microsoft_hresult_failure,
    is_plain_win32,
)
from conformance.spec.model import DIRECT, Spec

if TYPE_CHECKING:
    from conformance.engine.repro import CallEntry, CallRepro
    from conformance.engine.subject import Subject
    from conformance.engine.trial import Trial
    from conformance.spec.domain import Domain


def effective(spec: Spec, outcome: Outcome) -> tuple[int, str]:
    """The operation's result and where it arrived: the call, or the async completion."""
    if spec.delivery != DIRECT and not failed(outcome.hresult) and outcome.completion is not None:
        return outcome.completion, "completion"
    return outcome.hresult, "call"


def code_mismatch(
    subject: Subject,
    expect: tuple[str, ...],
    outcome: Outcome,
    state: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
) -> str | None:
    """Why the provider's code is not what the rules predict, or None when it is (or when the
    run's `--observed lenient` policy excuses it by an `observed` entry of the spec: `state`
    and `args` are those the rules saw, needed for an entry with a `when`; by default those of
    the oracle's last prediction)."""
    oracle, spec = subject.oracle, subject.spec
    value, where = effective(spec, outcome)
    wanted = [oracle.value(s) for s in expect]
    if value not in wanted:
        if observed_excuse(subject, expect, value, state, args) is not None:
            return None
        want = " or ".join(oracle.describe(v) for v in wanted)
        return f"expected {want}, got {oracle.describe(value)} (from the {where})"
    code = next((c for c in spec.codes if c.value == value), None)
    if code is not None and code.via not in ("either", where):
        return (
            f"{oracle.describe(value)} must arrive through the {code.via}, "
            f"but arrived through the {where}"
        )
    return None


def observed_excuse(
    subject: Subject,
    expect: tuple[str, ...],
    value: int,
    state: dict[str, Any] | None,
    args: dict[str, Any] | None,
) -> Any:
    """The `observed` entry that excuses `value` where the rules predict `expect`, or None.

    The one place a departure recorded in a spec is judged: only under `--observed lenient`,
    only for a provider that declares a Windows version the entry's `windows` prefixes, only
    for the entry's code, only in place of its `instead_of`, only where its `when` holds."""
    policy = subject.settings.observed
    if policy is None or not policy.lenient:
        return None
    if (state is None or args is None) and subject.oracle.last is not None:
        state, args = subject.oracle.last  # the call the rules were last asked about
    for entry in subject.spec.observed:
        if not policy.applies(entry) or subject.oracle.values.get(entry.code) != value:
            continue
        if entry.instead_of is not None and entry.instead_of not in expect:
            continue
        if entry.when and (
            state is None or args is None or not subject.oracle.observed_holds(entry, state, args)
        ):
            continue
        policy.note(subject.spec.id, entry, expect)
        return entry
    return None


def outputs_mismatch(world: World, expected: dict[str, Any], outcome: Outcome) -> str | None:
    """Out-parameters the rule predicts (enumerations, property structs) against the provider's,
    in scenario names; lists compare as sets, as enumeration order is not documented."""
    for name, want in expected.items():
        got = world.output_names(outcome.outputs.get(name))
        if canonical([{"v": got}]) != canonical([{"v": want}]):
            return (
                f"{name}: expected {json.dumps(want, ensure_ascii=False, default=str)}, "
                f"provider gave {json.dumps(got, ensure_ascii=False, default=str)}"
            )
    return None


def details(
    subject: Subject,
    trial: Trial | None,
    expect: tuple[str, ...],
    state_after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a person needs beside the message: expected and actual codes, outputs, states."""
    out: dict[str, Any] = {
        "expected": [
            subject.oracle.describe(subject.oracle.value(s))
            for s in expect
            if s in subject.oracle.values
        ]
    }
    if trial is not None:
        o = trial.outcome
        out["actual"] = {
            "hresult": subject.oracle.describe(o.hresult),
            "completion": None if o.completion is None else subject.oracle.describe(o.completion),
            "outputs": {
                k: (v if isinstance(v, str | int | float | bool | type(None)) else repr(v))
                for k, v in o.outputs.items()
            },
        }
        out["state_before"] = trial.state
    if state_after is not None:
        out["state_expected_after"] = state_after
    return out


def canonical(objects: list[dict[str, Any]]) -> list[str]:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return sorted(
                (norm(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True, default=str)
            )
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    return sorted(
        json.dumps(norm(o), sort_keys=True, ensure_ascii=False, default=str) for o in objects
    )


def state_mismatch(
    world: World, expected: dict[str, list[dict[str, Any]]], collections: tuple[str, ...]
) -> str | None:
    """The first observable collection where the provider differs from the oracle's state."""
    for coll in collections:
        try:
            seen = world.observe(coll)
        except Unsupported:
            continue
        want = [
            {k: o.get(k) for k in ("id", *world.domain.collections[coll].fields)}
            for o in expected.get(coll, [])
        ]
        if canonical(seen) != canonical(want):
            return (
                f"{coll} after the call: expected {_objects(want)}, provider has {_objects(seen)}"
            )
    return None


def then_mismatch(
    then: dict[str, Any],
    rows_of: Callable[[str], list[dict[str, Any]]],
    holder: str = "provider has",
) -> str | None:
    """How the collections a scenario's `then` names (read with `rows_of`, from the provider
    or the oracle's next state: `holder` says which) differ from it: a list of names is the
    whole collection; a list of objects must each match one object on the keys written, with
    no other objects."""
    for coll, want in then.items():
        seen = rows_of(coll)
        if all(isinstance(w, str) for w in want):
            got = sorted(o["id"] for o in seen)
            if got != sorted(want):
                return f"{coll} after the call: expected {sorted(want)}, {holder} {got}"
            continue
        for w in want:
            match = [o for o in seen if all(_same(o.get(k), v) for k, v in w.items())]
            if not match:
                return f"{coll} after the call: no object like {w} in {_objects(seen)}"
        if len(seen) != len(want):
            return f"{coll} after the call: expected {len(want)} objects, {holder} {_objects(seen)}"
    return None


def _same(a: Any, b: Any) -> bool:
    return canonical([{"v": a}]) == canonical([{"v": b}])


def _objects(objs: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(json.dumps(o, ensure_ascii=False, sort_keys=True) for o in objs) + "]"


def _expect(expect: tuple[str, ...]) -> str | list[str]:
    return expect[0] if len(expect) == 1 else list(expect)


def repro(steps: list[dict[str, Any]], args: dict[str, Any], expect: tuple[str, ...]) -> CallRepro:
    """A failing case in the spec's scenario shape, ready to paste under `scenarios`."""
    return Case(steps, args).scenario(expect)


def call_repro(method: str, args: dict[str, Any], expect: tuple[str, ...]) -> CallEntry:
    """One call of a multi-call reproduction (`calls:`), naming its method."""
    return {"method": method, "call": call_args(args), "expect": _expect(expect)}


def context_line(steps: list[dict[str, Any]], args: dict[str, Any]) -> str:
    given_text = json.dumps(steps, ensure_ascii=False)
    call_text = json.dumps(call_args(args), ensure_ascii=False, default=str)
    return f"after given {given_text}, call {call_text}"


# -- judging one call -------------------------------------------------------------------------

Judge = Callable[["Subject", Call, World], "str | None"]


def rows_mismatch(
    domain: Domain, seen: dict[str, Any], expected: dict[str, list[dict[str, Any]]]
) -> str | None:
    """The first collection read after a call where the provider differs from the oracle's
    next state (a collection the provider cannot show is skipped; one it failed to show is the
    problem)."""
    for coll, rows in seen.items():
        if isinstance(rows, Unsupported):
            continue
        if isinstance(rows, Exception):
            return str(rows)
        want = [
            {k: o.get(k) for k in ("id", *domain.collections[coll].fields)}
            for o in expected.get(coll, [])
        ]
        if canonical(rows) != canonical(want):
            return (
                f"{coll} after the call: expected {_objects(want)}, provider has {_objects(rows)}"
            )
    return None


def judge_rules(subject: Subject, call: Call, world: World) -> str | None:
    """`oracle`: the code (and where it arrived), the out-parameters and the next state."""
    assert call.outcome is not None
    predicted = call.prediction
    return (
        code_mismatch(subject, predicted.codes, call.outcome, call.state, call.args)
        or outputs_mismatch(world, predicted.outputs, call.outcome)
        or rows_mismatch(subject.domain, call.seen, predicted.state)
    )


def judge_code(subject: Subject, call: Call, world: World) -> str | None:
    """The code alone (a variants reproduction: the W form decides the state)."""
    assert call.outcome is not None
    return code_mismatch(subject, call.prediction.codes, call.outcome, call.state, call.args)


def judge_documented(subject: Subject, call: Call, world: World) -> str | None:
    """`closed-world`: the code is documented, or in the spec's `also` families."""
    assert call.outcome is not None
    for label, value in (
        ("returned", call.outcome.hresult),
        ("completed with", call.outcome.completion),
    ):
        if value is None or admitted(subject, value):
            continue
        if (
            observed_excuse(subject, call.prediction.codes, value, call.state, call.args)
            is not None
        ):
            continue
        return (
            f"{label} {subject.oracle.describe(value)}, which is neither a documented code "
            f"of {subject.spec.id} nor in its `also` list "
            f"({', '.join(subject.spec.also) or 'empty'})"
        )
    return None


def judge_out_params(subject: Subject, call: Call, world: World) -> str | None:
    """`out-params`: out and async pointers agree with the code; no HRESULT for a status."""
    assert call.outcome is not None
    if any(p.is_out and call.args.get(p.name) is None for p in subject.spec.params):
        return None  # a NULL out-pointer: nothing can be written through it
    return out_param_problem(subject, call.outcome)


def blame_predicted(subject: Subject, call: Call) -> tuple[str, ...]:
    return call.prediction.codes


def blame_given(subject: Subject, call: Call) -> tuple[str, ...]:
    """The documented code the provider gave (out-params: that code's contract was broken)."""
    if call.outcome is None:
        return call.prediction.codes
    given_code = effective(subject.spec, call.outcome)[0]
    return (
        tuple(c.symbol for c in subject.spec.codes if c.value == given_code)
        or call.prediction.codes
    )


def admitted(subject: Subject, value: int) -> bool:
    if any(c.value == value for c in subject.spec.codes):
        return True
    return any(subject.table.admits(entry, value) for entry in subject.spec.also)


def out_param_problem(subject: Subject, outcome: Outcome) -> str | None:
    spec, describe = subject.spec, subject.oracle.describe
    hr = outcome.hresult
    documented = {c.value for c in spec.codes}
    if spec.convention == "win32" and is_microsoft_hresult_failure(hr) and hr not in documented:
        return (
            f"returned {describe(hr)}, an HRESULT, where a Win32 or ISDSC status is "
            "documented (HRESULT_FROM_WIN32 used by mistake?)"
        )
    if (
        spec.convention == "hresult"
        and is_plain_win32(hr)
        and hr not in documented
        and not any(subject.table.admits(a, hr) for a in spec.also)
    ):
        return (
            f"returned {hex32(hr)}, a bare Win32 code, where an HRESULT is documented "
            "(missing HRESULT_FROM_WIN32?)"
        )
    outs = [p for p in spec.params if p.is_out and p.name in outcome.outputs]
    if hr != 0 if spec.convention == "win32" else failed(hr):
        leaked = [p.name for p in outs if outcome.outputs.get(p.name) is not None]
        if leaked:
            return (
                f"failed with {describe(hr)} but set {', '.join(leaked)}: out-parameters "
                "must be NULL on failure"
            )
        if outcome.completion is not None:
            return f"failed with {describe(hr)} but reported a completion"
        return None
    for p in spec.async_params:
        if subject.spec.delivery == DIRECT:
            continue
        obj = outcome.outputs.get(p.name)
        if obj is None:
            return f"succeeded with {describe(hr)} but returned no async object in {p.name}"
        if outcome.completion is None:
            return f"succeeded with {describe(hr)} but the async object {p.name} has no result"
        if not admitted(subject, outcome.completion):
            return (
                f"the async object {p.name} completed with "
                f"{describe(outcome.completion)}, not a documented code"
            )
    if not spec.async_params and outcome.completion is not None:
        return "reported a completion though the method has no async object"
    return None


# -- relations between forms and providers ----------------------------------------------------


def snapshot(world: World, collections: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for coll in collections:
        try:
            out[coll] = canonical(world.observe(coll))
        except Unsupported:
            continue
    return out


def _seen_snapshot(call: Call) -> dict[str, list[str]]:
    """The collections read after a call, as comparable text (those shown, not the errors)."""
    return {
        coll: canonical(rows) for coll, rows in call.seen.items() if not isinstance(rows, Exception)
    }


def _outcome_text(subject: Subject, outcome: Outcome) -> str:
    value, where = effective(subject.spec, outcome)
    return f"{subject.oracle.describe(value)} (from the {where})"


def ansi_args(subject: Subject, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the W form receives them after the A form's code-page conversion."""
    convert = subject.oracle.functions["ansi"]

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return convert(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return {k: (v if k == "this" else walk(v)) for k, v in args.items()}
