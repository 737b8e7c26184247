"""Replaying a reproduction: the YAML a failing check wrote, run again against a provider.

A reproduction is a scenario in the spec's own shape: `given` steps, then one `call` with its
`expect` (and optional `then`), or a list of `calls` in which an entry is either a call
(`method`, `call`, `expect`, optional `then`) or more `given` steps. Every call is checked as
the check that wrote it would: its code against `expect`, the observable state against the
rules' effects, and, for out-params and closed-world reproductions, those properties; then the
collections its `then` names against what it says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import yaml

from conformance.engine.executions import Call
from conformance.engine.judging import judge_rules, then_mismatch
from conformance.engine.kinds import KINDS
from conformance.engine.repro import CallEntry, Entry, Repro, SequenceRepro, is_sequence
from conformance.engine.scenarios import scenario_args, walk_calls
from conformance.engine.strategies import state_of
from conformance.engine.subject import Subject
from conformance.engine.verdict import Settings
from conformance.engine.world import ProviderError, World
from conformance.errors import ExitStatus, Status, UsageError
from conformance.provider import Provider, Unsupported
from conformance.spec.catalog import Catalog
from conformance.spec.model import Scenario


class ReproError(UsageError):
    """The reproduction file cannot be used (not the provider's fault)."""


class ReplayUnsupported(ReproError):
    """The provider does not support a step or call the reproduction needs."""

    status = Status.NOT_APPLICABLE
    exit_status = ExitStatus.FAILS


@dataclass
class ReplayResult:
    passed: bool
    message: str
    calls: int
    expected: tuple[str, ...] = ()  # what the failing call should have given


def load_repro(path: str | Path) -> Repro:
    """A reproduction file; checked only for `call` or `calls` (a hand-written one may leave
    out `given` or `expect`)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReproError(f"{path}: cannot read the reproduction: {exc}") from None
    if not isinstance(data, dict) or not ("call" in data or "calls" in data):
        raise ReproError(f"{path}: not a reproduction (needs `call` or `calls`)")
    return cast(Repro, data)  # (every reader takes a key left out, or null, as none)


def _calls(repro: Repro) -> list[Entry]:
    if is_sequence(repro):
        return list(repro["calls"] or [])
    entry: CallEntry = {"call": repro["call"]}  # (a key left out is none, as its readers take it)
    if repro.get("method") is not None:
        entry["method"] = repro["method"]
    if repro.get("expect") is not None:
        entry["expect"] = repro["expect"]
    if repro.get("then") is not None:
        entry["then"] = repro["then"]
    return [entry]


def _kind(repro: Repro) -> str:
    parts = str(repro.get("check", "")).split("::")
    if len(parts) >= 3:
        return parts[-2]
    return next(k.name for k in KINDS.values() if k.scope == "scenario")  # a hand-written one


def replay(
    repro: Repro, catalog: Catalog, provider: Provider, settings: Settings | None = None
) -> ReplayResult:
    """Run a reproduction; passed is True when the provider now behaves as documented."""
    calls = _calls(repro)
    named = [c.get("method") or repro.get("method") for c in calls if "given" not in c]
    unknown = [m for m in named if m not in catalog.specs]
    if unknown:
        raise ReproError(
            f"unknown method {unknown[0]!r} in the reproduction (is it in the "
            "specs given with --specs?)"
        )
    methods = [m for m in named if m is not None]  # (every one: each is a known method)
    if not methods:  # a family check that failed on a step, before any call
        return _steps_only(repro, calls, catalog, provider)
    domain = catalog.domain_of(catalog.specs[methods[0]])
    observable = tuple(c for c in _observable(provider) if c in domain.collections)
    subjects = {
        m: Subject(
            catalog.specs[m], domain, catalog.codes, provider, observable, settings or Settings()
        )
        for m in set(methods)
    }
    world = World(provider, domain)
    state = domain.empty_state()
    kind = _kind(repro)
    try:
        world.reset()
        state = _given(world, domain, repro.get("given") or [], state)
        done = 0
        for entry in calls:
            if "given" in entry:
                state = _given(world, domain, entry["given"] or [], state)
                continue
            done += 1
            subject = subjects[entry.get("method") or repro["method"]]
            problem, state = _one_call(subject, world, state, entry, kind)
            if problem:
                expect = entry.get("expect")
                return ReplayResult(
                    False,
                    f"call {done} ({subject.spec.id}): {problem}",
                    done,
                    tuple(expect) if isinstance(expect, list) else ((expect,) if expect else ()),
                )
    except ProviderError as exc:
        return ReplayResult(False, str(exc), 0)
    except Unsupported as exc:
        raise ReplayUnsupported(f"unsupported by the provider: {exc}") from None
    return ReplayResult(True, f"{done} call(s) behave as documented", done)


def _steps_only(
    repro: Repro, calls: list[Entry], catalog: Catalog, provider: Provider
) -> ReplayResult:
    """A reproduction of steps alone (the provider failed a setup): the steps run again."""
    family = str(repro.get("check", "")).split("::")[0]
    if family not in catalog.domains:
        raise ReproError(
            "the reproduction names no method, and its `check` no family of the "
            "specs loaded (is it in the specs given with --specs?)"
        )
    domain = catalog.domains[family]
    world = World(provider, domain)
    state = domain.empty_state()
    try:
        world.reset()
        state = _given(world, domain, repro.get("given") or [], state)
        for entry in calls:  # (each a `given` entry: no call names a method)
            if "given" in entry:
                state = _given(world, domain, entry["given"] or [], state)
    except ProviderError as exc:
        return ReplayResult(False, str(exc), 0)
    except Unsupported as exc:
        raise ReplayUnsupported(f"unsupported by the provider: {exc}") from None
    return ReplayResult(True, "every step was set up as documented", 0)


def _observable(provider: Provider) -> list[str]:
    try:
        return list(provider.capabilities().get("observe", []))
    except Exception:
        return []


def _given(world: World, domain, steps: list[dict[str, Any]], state):
    for raw in steps:
        step = domain.complete(raw)
        world.setup(step)
        domain.apply(state, step)
    return state


def _one_call(subject: Subject, world: World, state, entry: CallEntry, kind: str):
    """Make one call of the reproduction and judge it as its check kind judges a call."""
    spec = subject.spec
    expect = entry.get("expect")
    expect_t = tuple(expect) if isinstance(expect, list) else ((expect,) if expect else ())
    scenario = Scenario("replay", (), dict(entry.get("call") or {}), expect_t)
    args = scenario_args(spec, scenario)
    predicted = subject.oracle.predict(state, args)
    if expect_t:  # the reproduction says what the call must give
        predicted = replace(
            predicted, codes=expect_t, values=tuple(subject.oracle.value(c) for c in expect_t)
        )
    outcome = world.call(spec, args, subject.observable)
    call = Call(state, args, predicted, outcome)
    for coll in subject.observable:
        try:
            call.seen[coll] = world.observe(coll)
        except (Unsupported, ProviderError) as exc:
            call.seen[coll] = exc
    judge = KINDS[kind].replay_judge() if kind in KINDS else judge_rules
    problem = judge(subject, call, world) or then_mismatch(
        entry.get("then") or {}, lambda coll: _rows(call, world, coll)
    )
    return problem, predicted.state


def _rows(call: Call, world: World, coll: str) -> list[dict[str, Any]]:
    """A collection after the call: as the judge read it, else read now."""
    seen = call.seen.get(coll)
    return seen if isinstance(seen, list) else world.observe(coll)


def _failing_method(repro: Repro, result: ReplayResult) -> str | None:
    """The method of the call a failed replay stopped at; None when it failed before a call."""
    if result.passed or result.calls < 1:
        return None
    calls = [c for c in _calls(repro) if "given" not in c]
    return calls[result.calls - 1].get("method") or repro.get("method")


def _names(entries: list[Entry]) -> set[str]:
    """The scenario names the `given` entries create (a step's first key holds the name)."""
    return {
        str(next(iter(step.values())))
        for e in entries
        if "given" in e
        for step in e["given"] or []
        if step and next(iter(step)) != "fault"
    }


def _mentions(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {n for v in value.values() for n in _mentions(v)}
    if isinstance(value, list):
        return {n for v in value for n in _mentions(v)}
    return set()


def _dangling(entries: list[Entry], named: set[str]) -> bool:
    """Whether an entry mentions an object of the original sequence that no entry now makes."""
    made = _names(entries)
    for e in entries:
        if "given" in e:
            used = {n for step in e["given"] or [] for n in _mentions(list(step.values())[1:])}
        else:
            used = _mentions(e.get("call") or {})
        if (used & named) - made:
            return True
    return False


def _without_expects(entries: list[Entry]) -> list[Entry]:
    return [e if "given" in e else _without_expect(e) for e in entries]


def _without_expect(entry: CallEntry) -> CallEntry:
    out = entry.copy()
    out.pop("expect", None)
    return out


def predicted_expects(
    repro: SequenceRepro, catalog: Catalog, settings: Settings | None = None
) -> SequenceRepro:
    """The reproduction with each call's `expect` what the rules give after the steps before
    it: what a shortened sequence must be checked against."""
    calls = _calls(repro)
    first = next(c.get("method") or repro["method"] for c in calls if "given" not in c)
    domain = catalog.domain_of(catalog.specs[first])
    state = state_of(domain, repro.get("given") or [])
    code_page = (settings or Settings()).code_page
    out: list[Entry] = []
    for _, entry, _, predicted in walk_calls(
        calls, state, domain, catalog, repro.get("method") or "", code_page
    ):
        if "given" in entry or predicted is None:  # (None exactly for a `given` entry)
            out.append(entry)
            continue
        codes = list(predicted.codes)
        out.append({**entry, "expect": codes[0] if len(codes) == 1 else codes})
    return {**repro, "calls": out}


def minimize(
    repro: Repro,
    catalog: Catalog,
    provider: Provider,
    settings: Settings | None = None,
    max_replays: int = 200,
) -> Repro:
    """Drop calls and given steps one at a time while the reproduction still fails at the same
    method, so that every entry left is needed (hypothesis's shrinker can stop short of that on
    a state machine). Each try re-predicts the codes, as the shorter sequence changes them."""
    if not is_sequence(repro):
        return repro
    try:
        target = _failing_method(repro, replay(repro, catalog, provider, settings))
    except ReproError:
        return repro
    if target is None:
        return repro
    entries = _without_expects(list(repro["calls"]))
    named = _names(entries) | _names([{"given": repro.get("given") or []}])
    replays, shrunk = 1, True
    while shrunk and replays < max_replays:
        shrunk = False
        for i in reversed(range(len(entries))):
            candidate: SequenceRepro = {**repro, "calls": entries[:i] + entries[i + 1 :]}
            if not any("given" not in e for e in candidate["calls"]) or _dangling(
                candidate["calls"], named
            ):
                continue
            replays += 1
            try:
                result = replay(candidate, catalog, provider, settings)
            except (ReproError, ProviderError, KeyError, ValueError, TypeError):
                continue
            if _failing_method(candidate, result) == target:
                entries, shrunk = candidate["calls"], True
            if replays >= max_replays:
                break
    if len(entries) == len(repro["calls"]):
        return repro
    try:
        return predicted_expects({**repro, "calls": entries}, catalog, settings)
    except Exception:  # the rules cannot say: keep what was recorded
        return repro
