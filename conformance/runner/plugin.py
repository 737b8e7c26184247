"""The pytest plugin: spec files become collections of checks with stable names.

Thin by design (as pytest's own plugins are): collection turns each spec into one item per
scenario and per property check, named `<method id>::<kind>::<case>`; running an item hands off
to `conformance.engine.checks`; each finished check goes to the results stream. The plugin is inert
unless `--conformance-provider` is given (or `conformance run` registers it), so installing the
package does not change anyone else's pytest runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.engine import checks
from conformance.engine.budget import DEFAULT_CHECK_TIMEOUT, Budgeted, CheckTimedOut
from conformance.engine.checks import (
    ERROR,
    FAILED,
    KINDS,
    NOT_APPLICABLE,
    PASSED,
    CheckFailed,
    NotApplicable,
    Settings,
    Subject,
    Target,
    Verdict,
    kinds_for,
)
from conformance.engine.exampledb import FailuresDatabase
from conformance.engine.operations import Budget, Costs, CostsError, Tally, parse_budget
from conformance.engine.oracle import OracleError
from conformance.engine.plan import RunPlan, SpecPlan, apply_budget, plan_spec
from conformance.engine.profiles import PROFILES
from conformance.engine.regressions import DEFAULT_FOLDER as DEFAULT_REGRESSIONS
from conformance.engine.regressions import RegressionError, by_check
from conformance.engine.regressions import load as load_regressions
from conformance.engine.sequences import context_of, plan_family
from conformance.engine.strategies import Allowed
from conformance.engine.world import ProviderError
from conformance.provider import Provider, ProviderUnavailable, Unsupported, load, portable
from conformance.remote.client import RecordingProvider, cassette_of, cassette_part, isolated
from conformance.reporting.model import run_versions
from conformance.reporting.progress import Progress
from conformance.reporting.results import (
    CheckResult,
    MethodInfo,
    ResultStream,
    ResultsWriteError,
    merge_streams,
)
from conformance.spec.catalog import Catalog, gc_paused, load_catalog
from conformance.spec.model import Scenario, Spec
from conformance.spec.observed import (
    POLICIES,
    STRICT,
    ObservedPolicy,
    declared_version,
    describe_hits,
)
from conformance.spec.source import SourceError


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
    group.addoption("--conformance-worker-memory", default=0, type=int,
                    help="with --conformance-isolate: bytes of address space the worker may "
                         "use (0: no limit)")
    group.addoption("--conformance-check-timeout", default=DEFAULT_CHECK_TIMEOUT, type=float,
                    help="seconds a check may take (0: no limit)")
    group.addoption("--conformance-observed", default=STRICT, choices=POLICIES,
                    help="lenient: a result a spec records under `observed` for the provider's "
                         "Windows version passes, marked as observed (default strict)")
    group.addoption("--conformance-explore", default=None, type=int, metavar="N",
                    help="explore after the plan: N drawn cases per method, and family machines")
    group.addoption("--conformance-regressions", default=None, metavar="DIR",
                    help="where exploration's finds are kept and replayed from "
                         "(default .conformance/regressions)")
    group.addoption("--conformance-rerun-failed", default=None, metavar="DIR",
                    help="only the checks that failed or errored in the run in DIR (and those "
                         "with saved regressions)")
    group.addoption("--conformance-budget", default=None, metavar="BUDGET",
                    help="keep the plan within a time (10m) or a number of operations (5000ops)")
    group.addoption("--conformance-record", default=None, metavar="FILE",
                    help="record the provider's exchanges for a cassette: an xdist worker "
                         "writes its part next to FILE, merged into FILE at the end")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(kind): a return-code contract check")
    name = config.getoption("--conformance-provider", default=None)
    if name and find_session(config) is None:
        worker = getattr(config, "workerinput", {}).get("workerid")
        name = pick_for_worker(name, worker)
        spec = isolated(name, config.getoption("--conformance-call-timeout"),
                        config.getoption("--conformance-worker-memory")) \
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
        try:
            session = _configured_session(config, catalog, provider, name)
        except RegressionError as exc:
            raise pytest.UsageError(str(exc)) from None
        session.worker = worker
        session.run_id = getattr(config, "workerinput", {}).get("conformance_run",
                                                                  session.run_id)
        earlier = config.getoption("--conformance-rerun-failed", default=None)
        if earlier:
            session.only = _failed_in(Path(earlier)) | set(session.regressions)
        config.pluginmanager.register(session, "conformance-session")


def _configured_session(config: pytest.Config, catalog: Catalog, provider: Provider,
                        name: str) -> ConformanceSession:
    """The session of a run started by pytest's own command line (an xdist worker)."""
    return ConformanceSession(
        catalog, provider, name, Path(config.getoption("--conformance-out")),
        config.getoption("--conformance-profile"), config.getoption("--conformance-seed"),
        config.getoption("--conformance-code-page"),
        config.getoption("--conformance-differential"),
        config.getoption("--conformance-check-timeout"),
        observed=config.getoption("--conformance-observed", default=STRICT),
        budget=_budget_option(config.getoption("--conformance-budget", default=None)),
        explore=config.getoption("--conformance-explore", default=None),
        regressions=_path(config.getoption("--conformance-regressions", default=None)))


def _failed_in(folder: Path) -> set[str]:
    from conformance.reporting.diff import DiffError, checks_of, load_run

    try:
        return {n for n, c in checks_of(load_run(folder)).items()
                if c.get("status") in ("failed", "error")}
    except DiffError as exc:
        raise pytest.UsageError(f"--conformance-rerun-failed: {exc}") from None


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _budget_option(text: str | None) -> Budget | None:
    try:
        return parse_budget(text) if text else None
    except ValueError as exc:
        raise pytest.UsageError(f"--conformance-budget: {exc}") from None


def pick_for_worker(providers: str, worker: str | None) -> str:
    """`P1,P2,...` gives each xdist worker its own provider (one agent per host): gwN takes
    entry N modulo their number."""
    choices = [p.strip() for p in providers.split(",") if p.strip()]
    if len(choices) <= 1 or worker is None:
        return choices[0] if choices else providers
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return choices[index % len(choices)]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller starting a worker: the worker writes under the controller's run id,
    so a stream another run left in `workers/` is told apart from this run's."""
    session = find_session(node.config)
    if session is not None:
        node.workerinput["conformance_run"] = session.run_id


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
                 observed: str = STRICT, budget: Budget | None = None,
                 explore: int | None = None, regressions: Path | None = None):
        self.catalog = catalog
        self.provider = Budgeted(provider)  # every request of a check runs against its deadline
        self.check_timeout = check_timeout or None  # seconds per check (--check-timeout)
        self.provider_name = provider_name
        self.out = out
        self.profile = profile
        self.seed = seed
        self.code_page = code_page
        self.capabilities = _capabilities(provider)
        try:
            costs = Costs.of(self.capabilities)
        except CostsError as exc:
            raise ProviderUnavailable(str(exc)) from None
        chosen = PROFILES[profile]
        drawn = chosen.explore if explore is None else explore
        runs = chosen.machine_runs if explore is None else max(5, explore // 4)
        self.regressions_folder = regressions if regressions is not None else \
            Path.cwd() / DEFAULT_REGRESSIONS
        self.regressions = by_check(load_regressions(self.regressions_folder))
        self.settings = Settings(
            max_examples=drawn, tier=chosen.tier, steer=chosen.steer, seed=seed,
            database=FailuresDatabase(str(out / ".hypothesis")), code_page=code_page,
            observed=ObservedPolicy(observed, declared_version(self.capabilities)),
            costs=costs, machine_runs=runs, regressions=self.regressions_folder,
            provider_name=provider_name)
        self.budget = budget
        self.plan: RunPlan | None = None
        self.show_plan = False  # conformance run prints the plan before the checks run
        self.planning_only = False  # conformance plan: collect and plan, write nothing
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
        self.run_id = uuid.uuid4().hex[:12]  # in every results line; workers get the controller's
        self._by_path: dict[Path, Spec] | None = None
        self.retries = 2
        self.reference = load("reference") if differential else None
        self.stream: ResultStream | None = None
        self.progress: Progress | None = None
        self.show_progress: bool | None = False  # conformance run turns it on
        self.summary: dict[str, Any] | None = None
        self.subjects: dict[str, Subject] = {}
        self.family_plans: dict[str, Any] = {}  # family -> its planned sequences
        self.only: set[str] | None = None  # --rerun-failed: the checks to run
        self.write_error: str | None = None  # results could not be written (a full disk)
        self._planning: threading.Thread | None = None  # the controller of -n plans beside
        self.item_operations = Tally()

    # -- collection ----------------------------------------------------------------------------
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """--rerun-failed: only the checks named (deselected, not skipped: they did not run)."""
        if self.only is None:
            return
        keep = [i for i in items if isinstance(i, CheckItem) and i.check_name in self.only]
        dropped = [i for i in items if not (isinstance(i, CheckItem)
                                            and i.check_name in self.only)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

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
        """The per-spec check kinds that apply to a spec in this run."""
        optional = frozenset(k.name for k in KINDS.values() if k.optional) \
            if self.differential else frozenset()
        return [k.name for k in kinds_for(spec, self.settings, optional)]

    def _spec_for(self, path: Path) -> Spec | None:
        if self._by_path is None:  # resolved once: collection asks for every file it sees
            self._by_path = {Path(os.path.realpath(s.file)): s
                             for s in self.catalog.specs.values()}
        found = self._by_path.get(path)  # usually given resolved already: no system calls
        return found if found is not None else self._by_path.get(path.resolve())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = [i for i in session.items if isinstance(i, CheckItem)]
        chosen = {item.spec.id for item in items if item.spec is not None}
        self.plan = self.make_plan(items, lazy=self.worker is not None and self.budget is None)
        if self.planning_only:
            return
        if self.worker is None and self.show_plan and self.plan is not None:
            _say(self.plan.headline())
        specs = self.plan.specs if self.plan is not None else {}
        methods = {
            s.id: MethodInfo(s.family, [c.symbol for c in s.codes],
                             s.interface.get("name", ""), s.file, _plan_of(specs.get(s.id)))
            for s in self.catalog.specs.values() if s.id in chosen
        }
        header = {"run": self.run_id, "provider": self.provider_name,
                  "provider_path": portable(self.provider_name),
                  "profile": self.profile, "seed": self.seed,
                  "versions": run_versions(),
                  "differential": self.differential,
                  "observed": self.observed,
                  "capabilities": self.capabilities,
                  "plan": self.plan.summary() if self.plan is not None else None,
                  "checks_selected": len(items)}
        stream = f"workers/{self.worker}.jsonl" if self.worker is not None else "results.jsonl"
        try:
            self.stream = ResultStream(self.out, header, methods, stream,
                                       summary=self.worker is None)
        except ResultsWriteError as exc:  # the disk refused before the first check
            self.write_error = str(exc)
            pytest.exit(self.write_error, returncode=pytest.ExitCode.INTERRUPTED)
        self.progress = Progress(header["checks_selected"], enabled=self.show_progress)

    def make_plan(self, items: list[CheckItem], lazy: bool = False) -> RunPlan | None:
        """The run's plan for the selected checks, made with the oracle alone: the planned
        cases of each spec whose property checks were selected (twice-called where its repeat
        check is), within the budget, and an estimate of the scenarios and family checks.
        `lazy` (a worker of a parallel run without a budget): only what each subject needs to
        plan itself when its first check runs, so that a worker plans only the specs it is
        given (the controller makes the whole plan, for the headline and the results)."""
        by_spec: dict[str, set[str]] = {}
        families: set[str] = set()
        fixed = Tally()
        seconds = 0.0
        for item in items:
            if item.spec is not None and KINDS[item.kind].scope == "spec":
                by_spec.setdefault(item.spec.id, set()).add(item.kind)
                if KINDS[item.kind].with_twin and item.spec.twin:  # pairs with the W form's
                    by_spec.setdefault(item.spec.twin, set())
                continue
            if KINDS[item.kind].scope == "family" and item.case != KINDS[item.kind].explore_case:
                families.add(item.family)
                continue
            if item.spec is not None and item.spec.id not in self.capabilities.get("methods", []):
                continue  # not applicable at once: nothing asked of the provider
            ops, secs = self.estimate(item)
            fixed.merge(ops)
            seconds += secs
        plans: list[SpecPlan] = []
        for spec_id, kinds in by_spec.items():
            spec = self.catalog.specs.get(spec_id)
            if spec is None or spec_id not in self.capabilities.get("methods", []):
                continue
            subject = self.subject(spec)
            subject.repeat = any(KINDS[k].calls > 1 for k in kinds)
            if lazy:
                continue
            subject.plan = plan_spec(spec, subject.plan_context())
            plans.append(subject.plan)
            explored = self.settings.max_examples * sum(KINDS[k].explores for k in kinds)
            if explored and subject.plan.cases:  # drawn cases cost what planned ones do
                per_case = subject.plan.operations().total / len(subject.plan.cases)
                fixed.add("reset", explored)
                fixed.add("call", explored * subject.plan.calls)
                fixed.add("setup", round(explored * (per_case - 1 - subject.plan.calls) / 2))
                fixed.add("observe", round(explored * (per_case - 1 - subject.plan.calls) / 2))
                seconds += explored * subject.plan.seconds() / len(subject.plan.cases)
        self.family_plans = {}
        if lazy:
            return None
        for family in sorted(families):
            self.family_plan(family)
        if self.budget is not None:
            apply_budget([*plans, *self.family_plans.values()], self.budget, fixed, seconds)
            for plan in plans:
                self.subject(plan.spec).plan = plan  # the executions follow the kept cases
        return RunPlan({p.spec.id: p for p in plans}, self.budget, fixed, seconds,
                       dict(self.family_plans))

    def family_plan(self, family: str) -> Any:
        """A family's planned sequences, made once (on first use in a lazy worker)."""
        if family not in self.family_plans:
            subjects = self.family_subjects(family)
            if not subjects:
                return None
            domain = self.catalog.domains[family]
            self.family_plans[family] = plan_family(subjects, context_of(subjects, domain))
        return self.family_plans[family]

    def estimate(self, item: CheckItem) -> tuple[Tally, float]:
        """What a check outside the plan should cost: a scenario's steps, calls and reads; a
        family machine's sequences (each step a setup or a call, and the reads after it)."""
        costs, ops, seconds = self.settings.costs, Tally(), 0.0
        if KINDS[item.kind].scope == "scenario" and item.scenario is not None:
            scenario = item.scenario
            steps = [*scenario.given, *(s for c in scenario.calls for s in c.get("given", []))]
            calls = max(1, sum("given" not in c for c in scenario.calls))
            ops.add("reset")
            ops.add("setup", len(steps))
            ops.add("call", calls)
            ops.add("observe", len(scenario.then) if not scenario.calls else
                    calls * len(self.capabilities.get("observe", [])))
            seconds = costs.of_op("reset") + sum(costs.of_op("setup", str(next(iter(s))))
                                                 for s in steps) + \
                calls * costs.of_op("call", item.spec.id if item.spec else "*") + \
                ops.counts["observe"] * costs.of_op("observe")
        elif KINDS[item.kind].scope == "family":  # exploring: the machine's sequences
            from conformance.engine.stateful import STEPS_PER_RUN

            domain = self.catalog.domains[item.family]
            runs = self.settings.machine_runs
            reads = len([c for c in self.capabilities.get("observe", [])
                         if c in domain.collections])
            ops.add("reset", runs)
            ops.add("call", runs * STEPS_PER_RUN // 2)
            ops.add("setup", runs * STEPS_PER_RUN // 2)
            ops.add("observe", runs * STEPS_PER_RUN * reads)
            seconds = sum(n * costs.of_op(k) for k, n in ops.counts.items())
        return ops, seconds

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """The controller of a parallel run: the whole plan, made once from the first
        worker's collection (every worker collects the same items) and kept for the merged
        results (a worker plans only what it is given). It is made beside the run, not before
        it: xdist hands out no check until this hook returns, and the workers need nothing
        from it; its line is printed as soon as it is made."""
        if self._planning is not None:
            return
        if self.show_progress is not False:
            self.progress = Progress(len(ids), enabled=self.show_progress)
        items = [i for i in (_PlannedItem.of(self, nodeid) for nodeid in ids) if i is not None]

        def plan() -> None:
            self.plan = self.make_plan(items)  # type: ignore[arg-type]
            if self.show_plan and self.plan is not None:
                _say(self.plan.headline())

        self._planning = threading.Thread(target=plan, name="conformance-plan", daemon=True)
        self._planning.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The controller of a parallel run follows the workers' checks as they finish."""
        if self.worker is None and self.stream is None and self.progress is not None and \
                report.when == "call":
            self.progress.finished(report.nodeid.partition("::")[2], report.failed)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.stream is not None and self.write_error is None:
            try:
                self.summary = self.stream.close()
            except ResultsWriteError as exc:
                self.write_error = str(exc)
        elif self.worker is None and session.config.getoption("numprocesses", None):
            if self._planning is not None:
                self._planning.join()
            parts = list((self.out / "workers").glob("*.jsonl"))
            if parts:  # the controller of a parallel run: merge what the workers wrote
                self.summary = merge_streams(self.out, parts, self.plan_summaries(),
                                             run=self.run_id)
        if self._cassette is not None:
            self._cassette.begin_check(None)  # what follows belongs to the run, not a check
        if self._unpin is not None:
            self._unpin()
            self._unpin = None
        with contextlib.suppress(Exception):
            self.provider.close()

    def plan_summaries(self) -> dict[str, Any] | None:
        """The run's plan and each method's, for results whose workers planned lazily."""
        if self.plan is None:
            return None
        return {"plan": self.plan.summary(),
                "methods": {spec_id: p.summary() for spec_id, p in self.plan.specs.items()}}

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
            return KINDS[item.kind].run(self.target(item))
        except CheckFailed as exc:
            return Verdict(FAILED, exc.message, {c: FAILED for c in exc.codes}, exc.repro,
                           exc.details)
        except NotApplicable as exc:
            return Verdict(NOT_APPLICABLE, str(exc), _scenario_codes(item),
                           unreached=exc.unreached)
        except Unsupported as exc:
            return Verdict(NOT_APPLICABLE, f"unsupported by the provider: {exc}",
                           _scenario_codes(item))
        except ProviderError as exc:
            return Verdict(FAILED, str(exc), {c: FAILED for c in _scenario_codes(item)})
        except OracleError as exc:
            return Verdict(ERROR, f"spec error: {exc}")
        except Exception as exc:  # the harness must record every check, whatever happened
            return Verdict(ERROR, f"the check could not complete: {type(exc).__name__}: {exc}")

    def target(self, item: CheckItem) -> Target:
        """What the item's check runs on."""
        saved = tuple(self.regressions.get(item.check_name, ()))
        if item.spec is None:
            explored = item.case == KINDS[item.kind].explore_case
            return Target(family=self.family_subjects(item.family),
                          domain=self.catalog.domains[item.family], catalog=self.catalog,
                          family_plan=None if explored else self.family_plan(item.family),
                          case=item.case, regressions=saved)
        return Target(self.subject(item.spec), item.scenario, catalog=self.catalog,
                      case=item.case, regressions=saved)

    def run_with_retries(self, item: CheckItem) -> Verdict:
        """Run a check; a check the baseline calls flaky gets more tries, noted in its message."""
        verdict = self.run(item)
        tries = 1
        while verdict.status == FAILED and item.check_name in self.retry and \
                tries <= self.retries:
            tries += 1
            first = verdict
            if item.spec is not None:  # a flaky provider answers anew: execute the plan again
                self.subject(item.spec).forget_executions()
            verdict = self.run(item)
            if verdict.status == PASSED:
                verdict.message = (f"flaky: passed on try {tries} after failing: "
                                   f"{first.message}")
        return verdict

    def record(self, item: CheckItem, verdict: Verdict, duration: float) -> None:
        if self.stream is None:
            return
        method = item.spec.id if item.spec is not None else _blamed(verdict)
        repro = verdict.repro
        if repro is not None:  # (a family failure that ended before any call names none)
            repro = {"check": item.check_name, **({"method": method} if method else {}),
                     **repro}
            write_repro(self.out, item.check_name, repro)
        observed = self.settings.observed.take() if self.settings.observed else []
        message = verdict.message
        if observed and verdict.status == PASSED:
            message = "; ".join(m for m in (describe_hits(observed), message) if m)
        self._add(CheckResult(
            name=item.check_name, method=method, kind=item.kind, case=item.case,
            status=verdict.status, message=message, codes=verdict.codes,
            repro=repro, duration=duration, family=item.family, details=verdict.details,
            observed=observed or None, operations=self.item_operations.as_dict(),
            unreached=verdict.unreached, regressions=verdict.regressions))

    def _add(self, result: CheckResult) -> None:
        """Keep a finished check; when the disk refuses, stop the run with that one line
        (what finished before is in results.jsonl)."""
        assert self.stream is not None
        try:
            self.stream.add(result)
        except ResultsWriteError as exc:
            self.write_error = str(exc)
            pytest.exit(self.write_error, returncode=pytest.ExitCode.INTERRUPTED)

    def begin(self, item: CheckItem) -> None:
        """A check starts: no excuse carried over from the last one; a cassette being recorded
        or replayed files the check's exchanges under its name."""
        if self.settings.observed is not None:
            self.settings.observed.take()
        self.item_operations = Tally()  # every try of the check (a flaky one runs again)
        if self._cassette is not None:
            self._cassette.begin_check(item.check_name)


def _say(line: str) -> None:
    """A line for the person running the run, before the checks start (stdout, flushed: a CI
    log shows it at once)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _plan_of(plan: SpecPlan | None) -> dict[str, Any] | None:
    return plan.summary() if plan is not None else None


class _PlannedItem:
    """A collected item the controller of a parallel run knows by its node id only."""

    def __init__(self, spec: Spec | None, kind: str, scenario: Scenario | None, family: str,
                 case: str):
        self.spec, self.kind, self.scenario, self.family = spec, kind, scenario, family
        self.case = case

    @classmethod
    def of(cls, session: ConformanceSession, nodeid: str) -> _PlannedItem | None:
        _, _, name = nodeid.partition("::")
        parts = name.split("::")
        if len(parts) < 3:
            return None
        kind, case = parts[-2], parts[-1]
        if kind not in KINDS:
            return None
        if KINDS[kind].scope == "family":
            return cls(None, kind, None, "::".join(parts[:-2]), case)
        spec = session.catalog.specs.get("::".join(parts[:-2]))
        if spec is None:
            return None
        scenario = next((s for s in spec.scenarios if checks.slug(s.name) == case), None)
        return cls(spec, kind, scenario, spec.family, case)


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
    if KINDS[item.kind].scope == "scenario" and item.scenario is not None:
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
        for kind in (k.name for k in KINDS.values() if k.scope == "scenario"):
            for scenario in self.spec.scenarios:
                case = checks.slug(scenario.name)
                yield CheckItem.from_parent(self, name=check_name(self.spec.id, kind, case),
                                            spec=self.spec, kind=kind, scenario=scenario,
                                            case=case)
        session = find_session(self.config)
        assert session is not None
        for kind in session.kinds_for(self.spec):
            case = KINDS[kind].case
            yield CheckItem.from_parent(self, name=check_name(self.spec.id, kind, case),
                                        spec=self.spec, kind=kind, scenario=None, case=case)


class DomainFile(pytest.File):
    """A family's domain: its stateful machine over every method of the family."""

    def __init__(self, *, family: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.family = family

    def collect(self):
        session = find_session(self.config)
        exploring = session is not None and session.settings.max_examples > 0
        for kind in (k for k in KINDS.values() if k.scope == "family"):
            cases = ["machine", *([kind.explore_case] if exploring and kind.explore_case
                                  else [])]
            for case in cases:
                yield CheckItem.from_parent(self, name=check_name(self.family, kind.name, case),
                                            spec=None, kind=kind.name, scenario=None,
                                            family=self.family, case=case)


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
        if self.family:  # `-k vds-iscsi` selects the family's methods, not only its machine
            self.extra_keyword_matches.add(self.family)
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
