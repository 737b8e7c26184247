"""The options of one run, built once and handed whole to every worker of `-n`.

`conformance run` builds a `RunOptions` from its command line; `pytest --conformance-provider`
builds one from pytest's; xdist's controller sends it to each worker as JSON (`workerinput`),
so that no option is relayed by hand and none is lost on the way (a baseline's flaky checks,
`--rerun-failed`, the isolation limits). The run's session lives in `config.stash[SESSION]`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import pytest

from conformance.engine.budget import DEFAULT_CHECK_TIMEOUT
from conformance.spec.observed import STRICT

if TYPE_CHECKING:
    from conformance.runner.session import ConformanceSession

SESSION = pytest.StashKey["ConformanceSession"]()
WORKER_INPUT = "conformance_options"


@dataclass(frozen=True)
class RunOptions:
    """Everything a run was asked for that its workers must know too."""

    provider: str  # as given: `P1,P2,...` gives each worker its own (pick_for_worker)
    out: str = "reports/latest"
    profile: str = "ci"
    seed: int | None = None
    code_page: str = "cp1252"
    differential: bool = False
    token_file: str | None = None
    isolate: bool = False  # the provider in a worker process (the agent over stdio)
    call_timeout: float = 30.0
    worker_memory: int = 0
    check_timeout: float | None = DEFAULT_CHECK_TIMEOUT
    observed: str = STRICT
    budget: str | None = None  # as typed (90s, 10m, 5000ops)
    explore: int | None = None
    regressions: str | None = None
    rerun_failed: str | None = None  # a run folder: only what failed there
    record: str | None = None  # a cassette file
    flaky: tuple[str, ...] = ()  # checks a baseline calls flaky: tried again on failure

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunOptions:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["flaky"] = tuple(data.get("flaky") or ())
        return cls(**data)

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> RunOptions | None:
        """The options a worker was sent, else those of pytest's own command line (None when
        the run is not a conformance run)."""
        sent = getattr(config, "workerinput", {}).get(WORKER_INPUT)
        if sent:
            return cls.from_json(sent)
        provider = config.getoption("--conformance-provider", default=None)
        if not provider:
            return None
        option = config.getoption
        return cls(
            provider=provider,
            out=option("--conformance-out"),
            profile=option("--conformance-profile"),
            seed=option("--conformance-seed"),
            code_page=option("--conformance-code-page"),
            differential=option("--conformance-differential"),
            token_file=option("--conformance-token-file"),
            isolate=option("--conformance-isolate"),
            call_timeout=option("--conformance-call-timeout"),
            worker_memory=option("--conformance-worker-memory"),
            check_timeout=option("--conformance-check-timeout"),
            observed=option("--conformance-observed", default=STRICT),
            budget=option("--conformance-budget", default=None),
            explore=option("--conformance-explore", default=None),
            regressions=option("--conformance-regressions", default=None),
            rerun_failed=option("--conformance-rerun-failed", default=None),
            record=option("--conformance-record", default=None),
        )


def add_pytest_options(parser: pytest.Parser) -> None:
    """`pytest --conformance-provider NAME ...`: a run from pytest's own command line."""
    from conformance.engine.profiles import PROFILES
    from conformance.spec.observed import POLICIES

    group = parser.getgroup("conformance", "return-code contract checks")
    add = group.addoption
    add(
        "--conformance-provider",
        default=None,
        help="provider to test (name, pkg.module:Class or file.py:Class); enables the plugin",
    )
    add("--conformance-out", default="reports/latest", help="output folder")
    add("--conformance-profile", default="ci", choices=sorted(PROFILES))
    add("--conformance-seed", default=None, type=int)
    add(
        "--conformance-code-page",
        default="cp1252",
        help="ANSI code page of A entry points (cp1252)",
    )
    add("--conformance-token-file", default=None, help="the agent's token, for remote+ providers")
    add(
        "--conformance-differential",
        action="store_true",
        help="also compare with the reference provider",
    )
    add(
        "--conformance-isolate",
        action="store_true",
        help="run the provider in a worker process (conformance run does by default)",
    )
    add(
        "--conformance-call-timeout",
        default=30.0,
        type=float,
        help="seconds a provider call may take in the worker process",
    )
    add(
        "--conformance-worker-memory",
        default=0,
        type=int,
        help="bytes of address space the worker process may use (0: no limit)",
    )
    add(
        "--conformance-check-timeout",
        default=DEFAULT_CHECK_TIMEOUT,
        type=float,
        help="seconds a check may take, all its calls included",
    )
    add(
        "--conformance-observed",
        default=STRICT,
        choices=POLICIES,
        help="lenient: a result a spec records under `observed` passes, marked as observed",
    )
    add(
        "--conformance-explore",
        default=None,
        type=int,
        metavar="N",
        help="drawn cases per method after the plan (exploration)",
    )
    add(
        "--conformance-regressions",
        default=None,
        metavar="DIR",
        help="where exploration's finds are kept and replayed from",
    )
    add(
        "--conformance-rerun-failed",
        default=None,
        metavar="DIR",
        help="only the checks that failed or errored in the run in DIR (and those with "
        "saved regressions)",
    )
    add(
        "--conformance-budget",
        default=None,
        metavar="BUDGET",
        help="keep the run within a provider time or a number of operations",
    )
    add(
        "--conformance-record",
        default=None,
        metavar="FILE",
        help="write every exchange with the provider to a cassette",
    )


def session_of(config: pytest.Config) -> ConformanceSession | None:
    """The run's session, kept in the config's stash (None when this is not a conformance
    run)."""
    return config.stash.get(SESSION, None)


def pick_for_worker(providers: str, worker: str | None) -> str:
    """`P1,P2,...` gives each xdist worker its own provider (one agent per host): gwN takes
    entry N modulo their number."""
    choices = [p.strip() for p in providers.split(",") if p.strip()]
    if len(choices) <= 1 or worker is None:
        return choices[0] if choices else providers
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return choices[index % len(choices)]


def run_id_of(config: pytest.Config, default: str) -> str:
    """A worker writes under its controller's run id."""
    return getattr(config, "workerinput", {}).get("conformance_run", default)
