"""The pytest plugin: spec files become collections of checks with stable names.

Thin by design (as pytest's own plugins are): collection turns each spec into one item per
scenario and per property check, named `<method id>::<kind>::<case>`; running an item hands off
to `conformance.checks`; each finished check goes to the results stream. The plugin is inert
unless `--conformance-provider` is given (or `conformance run` registers it), so installing the
package does not change anyone else's pytest runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance import checks
from conformance.budget import DEFAULT_CHECK_TIMEOUT, Budgeted, CheckTimedOut
from conformance.catalog import Catalog, gc_paused, load_catalog
from conformance.checks import (
    ERROR,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    CheckFailed,
    NotApplicable,
    Settings,
    Subject,
    Verdict,
)
from conformance.exampledb import FailuresDatabase
from conformance.observed import (
    POLICIES,
    STRICT,
    ObservedPolicy,
    declared_version,
    describe_hits,
)
from conformance.operations import Tally
from conformance.oracle import OracleError
from conformance.profiles import PROFILES
from conformance.progress import Progress
from conformance.provider import Provider, ProviderUnavailable, Unsupported, load
from conformance.remote import RecordingProvider, cassette_of, cassette_part, isolated
from conformance.replay import ReplayUnsupported, replay
from conformance.reporting.model import run_versions
from conformance.results import CheckResult, MethodInfo, ResultStream, merge_streams
from conformance.source import SourceError
from conformance.spec import Scenario, Spec
from conformance.stateful import check_stateful
from conformance.strategies import Allowed
from conformance.world import ProviderError

KINDS = ("scenario", *checks.PROPERTY_CHECKS, *checks.CONDITIONAL_CHECKS, "stateful")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "return-code contract checks")
    group.addoption("--conformance-provider", default=None,
                    help="provider to test: a name, pkg.module:Class or file.py:Class")
    group.addoption("--conformance-out", default="reports/latest", help="output folder")
    group.addoption("--conformance-profile", default="ci", choices=sorted(PROFILES))
    group.addoption("--conformance-seed", default=None, type=int)
    group.addoption("--conformance-code-page", default="cp1252",
                    help="the ANSI code page A entry points convert through")
    group.addoption("--conformance-token-file", default=None,
                    help="the agent's token, for remote providers")
    group.addoption("--conformance-differential", action="store_true",
                    help="also compare the provider with the reference on the same draws")
    group.addoption("--conformance-isolate", action="store_true",
                    help="run a provider given by name, module or file in a worker process "
                         "(the agent over stdio), replaced after a crash or a hang")
    group.addoption("--conformance-call-timeout", default=30.0, type=float,
                    help="with --conformance-isolate: seconds a provider call may take")
    group.addoption("--conformance-check-timeout", default=DEFAULT_CHECK_TIMEOUT, type=float,
                    help="seconds a check may take (0: no limit)")
    group.addoption("--conformance-observed", default=STRICT, choices=POLICIES,
                    help="lenient: a result a spec records under `observed` for the provider's "
                         "Windows version passes, marked as observed (default strict)")
    group.addoption("--conformance-record", default=None, metavar="FILE",
                    help="record the provider's exchanges for a cassette: an xdist worker "
                         "writes its part next to FILE, merged into FILE at the end")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(kind): a return-code contract check")
    name = config.getoption("--conformance-provider", default=None)
    if name and find_session(config) is None:
        worker = getattr(config, "workerinput", {}).get("workerid")
        name = pick_for_worker(name, worker)
        spec = isolated(name, config.getoption("--conformance-call-timeout")) \
            if config.getoption("--conformance-isolate") else name
        try:
            provider = load(spec, token_file=config.getoption("--conformance-token-file"))
            catalog = load_catalog([Path(a) for a in config.args] or None)
        except (ProviderUnavailable, SourceError) as exc:
            raise pytest.UsageError(str(exc)) from None
        record = config.getoption("--conformance-record", default=None)
        if record:
            provider = RecordingProvider(  # the controller of `pytest -n` merges the parts
                provider, cassette_part(record, worker),
                parts=worker is None and bool(config.getoption("numprocesses", default=None)),
                header={"worker": worker or "",
                        "profile": config.getoption("--conformance-profile"),
                        "seed": config.getoption("--conformance-seed"),
                        "code_page": config.getoption("--conformance-code-page")})
        session = ConformanceSession(
            catalog, provider, name, Path(config.getoption("--conformance-out")),
            config.getoption("--conformance-profile"), config.getoption("--conformance-seed"),
            config.getoption("--conformance-code-page"),
            config.getoption("--conformance-differential"),
            config.getoption("--conformance-check-timeout"),
            observed=config.getoption("--conformance-observed", default=STRICT))
        session.worker = worker
        config.pluginmanager.register(session, "conformance-session")


def pick_for_worker(providers: str, worker: str | None) -> str:
    """`P1,P2,...` gives each xdist worker its own provider (one agent per host): gwN takes
    entry N modulo their number."""
    choices = [p.strip() for p in providers.split(",") if p.strip()]
    if len(choices) <= 1 or worker is None:
        return choices[0] if choices else providers
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return choices[index % len(choices)]


def find_session(config: pytest.Config) -> ConformanceSession | None:
    """The run's session object, however it was registered (CLI or command-line option)."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, ConformanceSession):
            return plugin
    return None


class ConformanceSession:
    """One run: the catalog, the provider, the settings, and the results stream."""

    def __init__(self, catalog: Catalog, provider: Provider, provider_name: str, out: Path,
                 profile: str = "ci", seed: int | None = None, code_page: str = "cp1252",
                 differential: bool = False, check_timeout: float | None = DEFAULT_CHECK_TIMEOUT,
                 observed: str = STRICT):
        self.catalog = catalog
        self.provider = Budgeted(provider)  # every request of a check runs against its deadline
        self.check_timeout = check_timeout or None  # seconds per check (--check-timeout)
        self.provider_name = provider_name
        self.out = out
        self.profile = profile
        self.seed = seed
        self.code_page = code_page
        self.capabilities = _capabilities(provider)
        self.settings = Settings(
            max_examples=PROFILES[profile].max_examples,
            exhaustive=PROFILES[profile].exhaustive, steer=PROFILES[profile].steer, seed=seed,
            database=FailuresDatabase(str(out / ".hypothesis")), code_page=code_page,
            observed=ObservedPolicy(observed, declared_version(self.capabilities)))
        self.observed = observed
        self._cassette = cassette_of(provider)  # a recording or replaying provider, or None
        self._unpin: Any = None
        if self._cassette is not None:  # failures saved by an earlier run would change the
            self.settings.database = None  # draws: a cassette holds what the seed alone gives
        if self._cassette is not None or seed is not None:  # the same seed, the same draws,
            self._unpin = pin_draws()  # whatever other modules this process has loaded
        self.differential = differential
        self.retry: set[str] = set()  # flaky checks (from a baseline): run again on failure
        self.worker: str | None = None  # the xdist worker id, in a parallel run
        self._by_path: dict[Path, Spec] | None = None
        self.retries = 2
        self.reference = load("reference") if differential else None
        self.stream: ResultStream | None = None
        self.progress: Progress | None = None
        self.show_progress: bool | None = False  # conformance run turns it on
        self.summary: dict[str, Any] | None = None
        self.subjects: dict[str, Subject] = {}
        self.item_operations = Tally()

    # -- collection ----------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session):
        """Items are many and long-lived: no cyclic collection while they are made."""
        with gc_paused():
            return (yield)

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):
        spec = self._spec_for(file_path)
        if spec is not None:
            return SpecFile.from_parent(parent, path=file_path, spec=spec)
        if file_path.suffix == ".yaml":
            for domain in self.catalog.domains.values():
                if Path(domain.file).resolve() == file_path.resolve():
                    return DomainFile.from_parent(parent, path=file_path, family=domain.family)
        return None

    def kinds_for(self, spec: Spec) -> list[str]:
        """The property checks that apply to a spec in this run."""
        kinds = list(checks.PROPERTY_CHECKS)
        for kind, (_, applies) in checks.CONDITIONAL_CHECKS.items():
            if kind == "differential" and not self.differential:
                continue
            if applies(spec):
                kinds.append(kind)
        return kinds

    def _spec_for(self, path: Path) -> Spec | None:
        if self._by_path is None:  # resolved once: collection asks for every file it sees
            self._by_path = {Path(os.path.realpath(s.file)): s
                             for s in self.catalog.specs.values()}
        found = self._by_path.get(path)  # usually given resolved already: no system calls
        return found if found is not None else self._by_path.get(path.resolve())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        chosen = {item.spec.id for item in session.items
                  if isinstance(item, CheckItem) and item.spec is not None}
        methods = {
            s.id: MethodInfo(s.family, [c.symbol for c in s.codes],
                             s.interface.get("name", ""), s.file)
            for s in self.catalog.specs.values() if s.id in chosen
        }
        header = {"provider": self.provider_name, "profile": self.profile, "seed": self.seed,
                  "versions": run_versions(),
                  "differential": self.differential,
                  "observed": self.observed,
                  "capabilities": self.capabilities,
                  "checks_selected": sum(isinstance(i, CheckItem) for i in session.items)}
        if self.worker is not None:
            self.stream = ResultStream(self.out, header, methods,
                                       f"workers/{self.worker}.jsonl", summary=False)
        else:
            self.stream = ResultStream(self.out, header, methods)
        self.progress = Progress(header["checks_selected"], enabled=self.show_progress)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.stream is not None:
            self.summary = self.stream.close()
        elif self.worker is None and session.config.getoption("numprocesses", None):
            parts = list((self.out / "workers").glob("*.jsonl"))
            if parts:  # the controller of a parallel run: merge what the workers wrote
                self.summary = merge_streams(self.out, parts)
        if self._cassette is not None:
            self._cassette.begin_check(None)  # what follows belongs to the run, not a check
        if self._unpin is not None:
            self._unpin()
            self._unpin = None
        with contextlib.suppress(Exception):
            self.provider.close()

    # -- running -------------------------------------------------------------------------------
    def subject(self, spec: Spec) -> Subject:
        if spec.id not in self.subjects:
            domain = self.catalog.domain_of(spec)
            observable = tuple(c for c in self.capabilities.get("observe", [])
                               if c in domain.collections)
            subject = Subject(spec, domain, self.catalog.codes, self.provider, observable,
                              self.settings, reference=self.reference,
                              allowed=self.allowed())
            self.subjects[spec.id] = subject
            twin = self.catalog.specs.get(spec.twin or "")
            if twin is not None and twin.id in self.capabilities.get("methods", []):
                subject.twin = self.subject(twin)
        return self.subjects[spec.id]

    def allowed(self) -> Allowed:
        """What the provider declares it can build; undeclared lists mean everything."""
        steps, faults = self.capabilities.get("steps"), self.capabilities.get("faults")
        return Allowed(frozenset(steps) if isinstance(steps, list) else None,
                       frozenset(faults) if isinstance(faults, list) else None)

    def family_subjects(self, family: str) -> list[Subject]:
        return [self.subject(s) for s in self.catalog.specs.values()
                if s.family == family and s.id in self.capabilities.get("methods", [])]

    def run(self, item: CheckItem) -> Verdict:
        """Run one check within its budget; a timeout fails it and replaces the worker."""
        self.provider.start(self.check_timeout)
        try:
            return self.run_unbudgeted(item)
        except CheckTimedOut as exc:
            self.provider.replace_worker()
            return Verdict(FAILED, exc.message, {c: FAILED for c in _scenario_codes(item)})
        finally:
            self.provider.stop()
            self.item_operations.merge(self.provider.check_operations)

    def run_unbudgeted(self, item: CheckItem) -> Verdict:
        spec = item.spec
        if spec is not None and spec.id not in self.capabilities.get("methods", []):
            return Verdict(NOT_APPLICABLE, f"unsupported by the provider: method {spec.id} is "
                                           "not in its capabilities",
                           _scenario_codes(item))
        try:
            if spec is None:
                return check_stateful(self.family_subjects(item.family),
                                      self.catalog.domains[item.family])
            subject = self.subject(spec)
            if item.kind == "scenario":
                assert item.scenario is not None
                if item.scenario.calls:
                    return self.check_sequence(spec, item.scenario)
                return checks.check_scenario(subject, item.scenario)
            if item.kind in checks.PROPERTY_CHECKS:
                return checks.PROPERTY_CHECKS[item.kind](subject)
            return checks.CONDITIONAL_CHECKS[item.kind][0](subject)
        except CheckFailed as exc:
            return Verdict(FAILED, exc.message, {c: FAILED for c in exc.codes}, exc.repro,
                           exc.details)
        except NotApplicable as exc:
            return Verdict(NOT_APPLICABLE, str(exc), _scenario_codes(item))
        except Unsupported as exc:
            return Verdict(NOT_APPLICABLE, f"unsupported by the provider: {exc}",
                           _scenario_codes(item))
        except ProviderError as exc:
            return Verdict(FAILED, str(exc), {c: FAILED for c in _scenario_codes(item)})
        except OracleError as exc:
            return Verdict(ERROR, f"spec error: {exc}")
        except Exception as exc:  # the harness must record every check, whatever happened
            return Verdict(ERROR, f"the check could not complete: {type(exc).__name__}: {exc}")

    def run_with_retries(self, item: CheckItem) -> Verdict:
        """Run a check; a check the baseline calls flaky gets more tries, noted in its message."""
        verdict = self.run(item)
        tries = 1
        while verdict.status == FAILED and item.check_name in self.retry and \
                tries <= self.retries:
            tries += 1
            first = verdict
            verdict = self.run(item)
            if verdict.status == PASSED:
                verdict.message = (f"flaky: passed on try {tries} after failing: "
                                   f"{first.message}")
        return verdict

    def check_sequence(self, spec: Spec, scenario: Scenario) -> Verdict:
        """A scenario of several calls: run as its reproduction would be replayed."""
        repro = {"method": spec.id, "given": list(scenario.given), "calls": list(scenario.calls)}
        expected = {c for entry in scenario.calls if "expect" in entry
                    and entry.get("method", spec.id) == spec.id
                    for c in ([entry["expect"]] if isinstance(entry["expect"], str)
                              else entry["expect"])}
        try:
            result = replay(repro, self.catalog, self.provider, self.settings)
        except ReplayUnsupported as exc:
            return Verdict(NOT_APPLICABLE, str(exc), {c: NOT_APPLICABLE for c in expected})
        if result.passed:
            return Verdict(PASSED, result.message, {c: PASSED for c in expected})
        blamed = {c: FAILED for c in result.expected if c in expected} if result.expected \
            else {c: FAILED for c in expected}
        return Verdict(FAILED, result.message, blamed, repro)

    def record(self, item: CheckItem, verdict: Verdict, duration: float) -> None:
        if self.stream is None:
            return
        method = item.spec.id if item.spec is not None else _blamed(verdict)
        repro = verdict.repro
        if repro is not None:
            repro = {"check": item.check_name, "method": method, **repro}
            write_repro(self.out, item.check_name, repro)
        observed = self.settings.observed.take() if self.settings.observed else []
        message = verdict.message
        if observed and verdict.status == PASSED:
            message = "; ".join(m for m in (describe_hits(observed), message) if m)
        self.stream.add(CheckResult(
            name=item.check_name, method=method, kind=item.kind, case=item.case,
            status=verdict.status, message=message, codes=verdict.codes,
            repro=repro, duration=duration, family=item.family, details=verdict.details,
            observed=observed or None, operations=self.item_operations.as_dict()))

    def begin(self, item: CheckItem) -> None:
        """A check starts: no excuse carried over from the last one; a cassette being recorded
        or replayed files the check's exchanges under its name."""
        if self.settings.observed is not None:
            self.settings.observed.take()
        self.item_operations = Tally()  # every try of the check (a flaky one runs again)
        if self._cassette is not None:
            self._cassette.begin_check(item.check_name)


def _blamed(verdict: Verdict) -> str:
    """The method whose call a family-level failure ended on ("" when it passed)."""
    for entry in reversed((verdict.repro or {}).get("calls", [])):
        if "method" in entry:
            return entry["method"]
    return ""


def write_repro(out: Path, check: str, repro: dict[str, Any]) -> Path:
    """DIR/repro/<check>.yaml: a reproduction `conformance replay` runs again."""
    folder = out / "repro"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{checks.slug(check)}.yaml"
    header = (f"# Reproduction of {check}\n# Run it again: conformance replay {path} "
              "--provider PROVIDER\n")
    path.write_text(header + yaml.safe_dump(repro, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


def _scenario_codes(item: CheckItem) -> dict[str, str]:
    if item.kind == "scenario" and item.scenario is not None:
        return {c: NOT_APPLICABLE for c in item.scenario.expect}
    return {}


def pin_draws() -> Any:
    """Make hypothesis's draws depend on the seed alone, for a recorded or replayed run; returns
    the function that undoes it.

    Hypothesis (6.131 and later) mixes into its draws constants read from the source of every
    local module loaded in the process, so a worker of `-n 2` whose provider runs in another
    process, and a replay that loads no provider at all, would draw other cases from the same
    seed. Only the global constants are kept. This reaches into hypothesis's internals; where
    they differ, nothing is changed (and a replay may then stop with a clear mismatch)."""
    try:
        from hypothesis.internal.conjecture import providers as hp
        empty = hp.Constants(integers=hp.SortedSet(), floats=hp.SortedSet(key=hp.float_to_int),
                             bytes=hp.SortedSet(), strings=hp.SortedSet())
        original = hp._get_local_constants
        hp.CONSTANTS_CACHE.cache.clear()
    except (ImportError, AttributeError, TypeError):
        return lambda: None
    hp._get_local_constants = lambda: empty

    def unpin() -> None:
        hp._get_local_constants = original
        hp.CONSTANTS_CACHE.cache.clear()

    return unpin


def _capabilities(provider: Provider) -> dict[str, Any]:
    try:
        caps = provider.capabilities()
    except Exception as exc:
        raise ProviderUnavailable(
            f"capabilities() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(caps, dict):
        raise ProviderUnavailable(f"capabilities() returned {caps!r}, not a dict")
    return {k: list(v) if isinstance(v, list | tuple) else v for k, v in caps.items()}


class SpecFile(pytest.File):
    def __init__(self, *, spec: Spec, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self):
        for scenario in self.spec.scenarios:
            case = checks.slug(scenario.name)
            yield CheckItem.from_parent(self, name=check_name(self.spec.id, "scenario", case),
                                        spec=self.spec, kind="scenario", scenario=scenario,
                                        case=case)
        session = find_session(self.config)
        assert session is not None
        for kind in session.kinds_for(self.spec):
            yield CheckItem.from_parent(self, name=check_name(self.spec.id, kind, "property"),
                                        spec=self.spec, kind=kind, scenario=None,
                                        case="property")


class DomainFile(pytest.File):
    """A family's domain: its stateful machine over every method of the family."""

    def __init__(self, *, family: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.family = family

    def collect(self):
        yield CheckItem.from_parent(self, name=check_name(self.family, "stateful", "machine"),
                                    spec=None, kind="stateful", scenario=None,
                                    family=self.family)


def check_name(subject: str, kind: str, case: str) -> str:
    """The stable name of a check: `<method id>::<kind>::<case>` (a family for stateful)."""
    return f"{subject}::{kind}::{case}"


@functools.cache
def kind_marker(kind: str) -> pytest.MarkDecorator:
    """`conformance(kind)`, made once per kind and shared: marks are immutable."""
    return pytest.mark.conformance(kind)


class CheckItem(pytest.Item):
    def __init__(self, *, spec: Spec | None, kind: str, scenario: Scenario | None,
                 family: str | None = None, case: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec
        self.kind = kind
        self.scenario = scenario
        self.family = family or (spec.family if spec else "")
        if case is None:  # the collectors pass it; computed for items made elsewhere
            case = checks.slug(scenario.name) if scenario else \
                ("machine" if spec is None else "property")
        self.case = case
        name = check_name(spec.id if spec else self.family, kind, self.case)
        self.check_name = self.name if self.name == name else name  # one string, not two
        self.add_marker(kind_marker(kind))
        self.verdict: Verdict | None = None

    def runtest(self) -> None:
        session = find_session(self.config)
        assert session is not None
        started = time.perf_counter()
        if session.progress is not None:
            session.progress.starting(self.check_name)
        session.begin(self)
        self.verdict = session.run_with_retries(self)
        session.record(self, self.verdict, time.perf_counter() - started)
        if session.progress is not None:
            session.progress.finished(self.check_name, self.verdict.status in (FAILED, ERROR))
        if self.verdict.status == NOT_APPLICABLE:
            pytest.skip(f"not applicable: {self.verdict.message}")
        if self.verdict.status in (FAILED, ERROR):
            raise CheckFailed(self.verdict.message)
        assert self.verdict.status == PASSED

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            return f"{self.check_name}\n  {excinfo.value.message}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.spec.line("scenarios", self.scenario.index) \
            if self.spec and self.scenario else 1
        return self.path, line - 1, self.check_name
