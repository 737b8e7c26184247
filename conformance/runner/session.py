"""One run as a pytest plugin object: the catalog, the provider, the settings, the plan, the
results stream; made by `open_session` from the run's options, in `conformance run` and in
every worker of `-n` alike.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from conformance.engine.budget import DEFAULT_CHECK_TIMEOUT, Budgeted, CheckTimedOut
from conformance.engine.draws import pin_draws
from conformance.engine.exampledb import FailuresDatabase
from conformance.engine.kinds import KINDS, Target, kinds_for
from conformance.engine.operations import Budget, Costs, Tally
from conformance.engine.plan import SpecPlan, plan_spec
from conformance.engine.profiles import PROFILES
from conformance.engine.regressions import DEFAULT_FOLDER as DEFAULT_REGRESSIONS
from conformance.engine.regressions import by_check
from conformance.engine.regressions import load as load_regressions
from conformance.engine.runplan import RunPlan, apply_budget
from conformance.engine.scenarios import scenario_needs
from conformance.engine.sequences import context_of, plan_family
from conformance.engine.strategies import Allowed
from conformance.engine.subject import Subject
from conformance.engine.verdict import (
    ERROR,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    Settings,
    Verdict,
    verdict_of,
)
from conformance.errors import ConformanceError
from conformance.provider import Provider, ProviderUnavailable, load, portable
from conformance.remote.cassette import cassette_of
from conformance.reporting.model import run_versions
from conformance.reporting.progress import Progress
from conformance.reporting.results import (
    CheckResult,
    MethodInfo,
    ResultStream,
    ResultsWriteError,
    merge_streams,
)
from conformance.runner.items import CheckItem, DomainFile, SpecFile
from conformance.runner.options import (
    SESSION,
    RunOptions,
)
from conformance.runner.records import (
    PlannedItem,
    blamed_method,
    plan_of,
    say,
    scenario_codes,
    write_repro,
)
from conformance.spec.catalog import Catalog, gc_paused
from conformance.spec.observed import (
    STRICT,
    ObservedPolicy,
    declared_version,
    describe_hits,
)

if TYPE_CHECKING:
    from conformance.engine.repro import Repro
    from conformance.reporting.shapes import (
        Details,
        Header,
        Missing,
        ObservedHit,
        Operations,
        RegressionOutcome,
        RunPlanSummary,
        Summary,
    )
    from conformance.spec.domain import Domain
    from conformance.spec.model import Spec


class ConformanceSession:
    """One run: the catalog, the provider, the settings, and the results stream."""

    def __init__(
        self,
        catalog: Catalog,
        provider: Provider,
        provider_name: str,
        out: Path,
        profile: str = "ci",
        seed: int | None = None,
        code_page: str = "cp1252",
        differential: bool = False,
        check_timeout: float | None = DEFAULT_CHECK_TIMEOUT,
        observed: str = STRICT,
        budget: Budget | None = None,
        explore: int | None = None,
        regressions: Path | None = None,
    ):
        self.catalog = catalog
        self.provider = Budgeted(provider)  # every request of a check runs against its deadline
        self.check_timeout = check_timeout or None  # seconds per check (--check-timeout)
        self.provider_name = provider_name
        self.out = out
        self.profile = profile
        self.seed = seed
        self.code_page = code_page
        self.capabilities = _capabilities(provider)
        costs = Costs.of(self.capabilities)  # CostsError: a ProviderUnavailable
        chosen = PROFILES[profile]
        drawn = chosen.explore if explore is None else explore
        runs = chosen.machine_runs if explore is None else max(5, explore // 4)
        self.regressions_folder = (
            regressions if regressions is not None else Path.cwd() / DEFAULT_REGRESSIONS
        )
        self.regressions = by_check(load_regressions(self.regressions_folder))
        self.settings = Settings(
            max_examples=drawn,
            tier=chosen.tier,
            steer=chosen.steer,
            seed=seed,
            database=FailuresDatabase(str(out / ".hypothesis")),
            code_page=code_page,
            observed=ObservedPolicy(observed, declared_version(self.capabilities)),
            costs=costs,
            machine_runs=runs,
            regressions=self.regressions_folder,
            provider_name=provider_name,
        )
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
        self.summary: Summary | None = None
        self.subjects: dict[str, Subject] = {}
        self.family_plans: dict[str, Any] = {}  # family -> its planned sequences
        self.only: set[str] | None = None  # --rerun-failed: the checks to run
        self.write_error: str | None = None  # results could not be written (a full disk)
        self._planning: threading.Thread | None = None  # the controller of -n plans beside
        self.item_operations = Tally()
        self.options: RunOptions | None = None  # what the run was asked for (open_session)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        """Registered by `conformance run`: the run's session is this one."""
        config.stash[SESSION] = self

    # -- collection ----------------------------------------------------------------------------
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """--rerun-failed: only the checks named (deselected, not skipped: they did not run)."""
        if self.only is None:
            return
        keep = [i for i in items if isinstance(i, CheckItem) and i.check_name in self.only]
        dropped = [i for i in items if not (isinstance(i, CheckItem) and i.check_name in self.only)]
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
        optional = (
            frozenset(k.name for k in KINDS.values() if k.optional)
            if self.differential
            else frozenset()
        )
        return [k.name for k in kinds_for(spec, self.settings, optional)]

    def _spec_for(self, path: Path) -> Spec | None:
        if self._by_path is None:  # resolved once: collection asks for every file it sees
            self._by_path = {Path(os.path.realpath(s.file)): s for s in self.catalog.specs.values()}
        found = self._by_path.get(path)  # usually given resolved already: no system calls
        return found if found is not None else self._by_path.get(path.resolve())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = [i for i in session.items if isinstance(i, CheckItem)]
        chosen = {item.spec.id for item in items if item.spec is not None}
        self.plan = self.make_plan(items, lazy=self.worker is not None and self.budget is None)
        if self.planning_only:
            return
        if self.worker is None and self.show_plan and self.plan is not None:
            say(self.plan.headline())
        specs = self.plan.specs if self.plan is not None else {}
        methods = {
            s.id: MethodInfo(
                s.family,
                [c.symbol for c in s.codes],
                s.interface.get("name", ""),
                s.file,
                plan_of(specs.get(s.id)),
            )
            for s in self.catalog.specs.values()
            if s.id in chosen
        }
        header: Header = {
            "run": self.run_id,
            "provider": self.provider_name,
            "provider_path": portable(self.provider_name),
            "profile": self.profile,
            "seed": self.seed,
            "versions": run_versions(),
            "differential": self.differential,
            "observed": self.observed,
            "capabilities": self.capabilities,
            "plan": cast("RunPlanSummary", self.plan.summary()) if self.plan is not None else None,
            "checks_selected": len(items),
        }
        stream = f"workers/{self.worker}.jsonl" if self.worker is not None else "results.jsonl"
        try:
            self.stream = ResultStream(
                self.out, header, methods, stream, summary=self.worker is None
            )
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
        return RunPlan(
            {p.spec.id: p for p in plans}, self.budget, fixed, seconds, dict(self.family_plans)
        )

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
            steps, called = scenario_needs(scenario, item.spec.id if item.spec else "")
            if self.allowed().refused(steps, called):
                return ops, seconds  # not applicable before any operation
            calls = max(1, len(called))
            shown = self.observable(self.catalog.domains[item.family])
            ops.add("reset")
            ops.add("setup", len(steps))
            ops.add("call", calls)
            # one call reads what its `then` names; a sequence, its family's collections after
            # every call (as a replay does)
            ops.add("observe", len(scenario.then) if not scenario.calls else calls * len(shown))
            seconds = (
                costs.of_op("reset")
                + sum(costs.of_op("setup", str(next(iter(s)))) for s in steps)
                + calls * costs.of_op("call", item.spec.id if item.spec else "*")
                + ops.counts["observe"] * costs.of_op("observe")
            )
        elif KINDS[item.kind].scope == "family":  # exploring: the machine's sequences
            from conformance.engine.stateful import STEPS_PER_RUN

            runs = self.settings.machine_runs
            reads = len(self.observable(self.catalog.domains[item.family]))
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
        items = [i for i in (PlannedItem.of(self, nodeid) for nodeid in ids) if i is not None]

        def plan() -> None:
            # a PlannedItem has what make_plan reads of a CheckItem (spec, kind, family, case)
            self.plan = self.make_plan(items)  # type: ignore[arg-type]
            if self.show_plan and self.plan is not None:
                say(self.plan.headline())

        self._planning = threading.Thread(target=plan, name="conformance-plan", daemon=True)
        self._planning.start()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The controller of a parallel run follows the workers' checks as they finish."""
        if (
            self.worker is None
            and self.stream is None
            and self.progress is not None
            and report.when == "call"
        ):
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
                self.summary = merge_streams(
                    self.out, parts, self.plan_summaries(), run=self.run_id
                )
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
        return {
            "plan": self.plan.summary(),
            "methods": {spec_id: p.summary() for spec_id, p in self.plan.specs.items()},
        }

    # -- running -------------------------------------------------------------------------------
    def subject(self, spec: Spec) -> Subject:
        if spec.id not in self.subjects:
            domain = self.catalog.domain_of(spec)
            subject = Subject(
                spec,
                domain,
                self.catalog.codes,
                self.provider,
                self.observable(domain),
                self.settings,
                reference=self.reference,
                allowed=self.allowed(),
            )
            self.subjects[spec.id] = subject
            twin = self.catalog.specs.get(spec.twin or "")
            if twin is not None and twin.id in self.capabilities.get("methods", []):
                subject.twin = self.subject(twin)
        return self.subjects[spec.id]

    def observable(self, domain: Domain) -> tuple[str, ...]:
        """The collections of `domain` the provider can show (`capabilities()["observe"]`)."""
        return tuple(c for c in self.capabilities.get("observe", []) if c in domain.collections)

    def allowed(self) -> Allowed:
        """What the provider declares it can build; undeclared lists mean everything."""
        steps, faults = self.capabilities.get("steps"), self.capabilities.get("faults")
        return Allowed(
            frozenset(steps) if isinstance(steps, list) else None,
            frozenset(faults) if isinstance(faults, list) else None,
            frozenset(self.capabilities.get("methods", [])),
        )

    def family_subjects(self, family: str) -> list[Subject]:
        return [
            self.subject(s)
            for s in self.catalog.specs.values()
            if s.family == family and s.id in self.capabilities.get("methods", [])
        ]

    def run(self, item: CheckItem) -> Verdict:
        """Run one check within its budget; a timeout fails it and replaces the worker."""
        self.provider.start(self.check_timeout)
        try:
            return self.run_unbudgeted(item)
        except CheckTimedOut as exc:
            self.provider.replace_worker()
            return Verdict(FAILED, exc.message, {c: FAILED for c in scenario_codes(item)})
        finally:
            self.provider.stop()
            self.item_operations.merge(self.provider.check_operations)

    def run_unbudgeted(self, item: CheckItem) -> Verdict:
        spec = item.spec
        if spec is not None and spec.id not in self.capabilities.get("methods", []):
            return Verdict(
                NOT_APPLICABLE,
                f"unsupported by the provider: method {spec.id} is not in its capabilities",
                scenario_codes(item),
            )
        try:
            return KINDS[item.kind].run(self.target(item))
        except ConformanceError as exc:  # its class says the verdict (conformance.errors)
            return verdict_of(exc, scenario_codes(item))
        except Exception as exc:  # the harness must record every check, whatever happened
            return Verdict(ERROR, f"the check could not complete: {type(exc).__name__}: {exc}")

    def target(self, item: CheckItem) -> Target:
        """What the item's check runs on."""
        saved = tuple(self.regressions.get(item.check_name, ()))
        if item.spec is None:
            explored = item.case == KINDS[item.kind].explore_case
            return Target(
                family=self.family_subjects(item.family),
                domain=self.catalog.domains[item.family],
                catalog=self.catalog,
                family_plan=None if explored else self.family_plan(item.family),
                case=item.case,
                regressions=saved,
            )
        return Target(
            self.subject(item.spec),
            item.scenario,
            catalog=self.catalog,
            case=item.case,
            regressions=saved,
        )

    def run_with_retries(self, item: CheckItem) -> Verdict:
        """Run a check; a check the baseline calls flaky gets more tries, noted in its message."""
        verdict = self.run(item)
        tries = 1
        while verdict.status == FAILED and item.check_name in self.retry and tries <= self.retries:
            tries += 1
            first = verdict
            if item.spec is not None:  # a flaky provider answers anew: execute the plan again
                self.subject(item.spec).forget_executions()
            verdict = self.run(item)
            if verdict.status == PASSED:
                verdict.message = f"flaky: passed on try {tries} after failing: {first.message}"
        return verdict

    def record(self, item: CheckItem, verdict: Verdict, duration: float) -> None:
        if self.stream is None:
            return
        method = item.spec.id if item.spec is not None else blamed_method(verdict)
        repro = verdict.repro
        if repro is not None:  # (a family failure that ended before any call names none)
            repro = cast(
                "Repro",
                {"check": item.check_name, **({"method": method} if method else {}), **repro},
            )
            write_repro(self.out, item.check_name, repro)
        observed = self.settings.observed.take() if self.settings.observed else []
        message = verdict.message
        if observed and verdict.status == PASSED:
            message = "; ".join(m for m in (describe_hits(observed), message) if m)
        self._add(
            CheckResult(
                name=item.check_name,
                method=method,
                kind=item.kind,
                case=item.case,
                status=verdict.status,
                message=message,
                codes=verdict.codes,
                repro=repro,
                duration=duration,
                family=item.family,
                # (the engine writes these shapes without importing reporting)
                details=cast("Details | None", verdict.details),
                observed=cast("list[ObservedHit] | None", observed or None),
                operations=cast("Operations", self.item_operations.as_dict()),
                unreached=cast("list[Missing] | None", verdict.unreached),
                regressions=cast("list[RegressionOutcome] | None", verdict.regressions),
            )
        )

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


def _capabilities(provider: Provider) -> dict[str, Any]:
    try:
        caps = provider.capabilities()
    except Exception as exc:
        raise ProviderUnavailable(f"capabilities() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(caps, dict):
        raise ProviderUnavailable(f"capabilities() returned {caps!r}, not a dict")
    return {k: list(v) if isinstance(v, list | tuple) else v for k, v in caps.items()}
