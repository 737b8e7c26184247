"""Making a run's session from its options: the one way it is made, by `conformance run` (which
loads the provider itself, to say why it cannot) and in every worker of `-n`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from conformance.engine.operations import parse_budget
from conformance.engine.verdict import (
    ERROR,
    FAILED,
)
from conformance.provider import Provider, load
from conformance.remote.cassette import RecordingProvider, cassette_part
from conformance.remote.client import isolated
from conformance.runner.options import (
    RunOptions,
    pick_for_worker,
)
from conformance.runner.session import ConformanceSession

if TYPE_CHECKING:
    from conformance.spec.catalog import Catalog


def open_session(
    options: RunOptions,
    catalog: Catalog,
    provider: Provider | None = None,
    worker: str | None = None,
    parallel: bool = False,
    provider_name: str | None = None,
) -> ConformanceSession:
    """A run's session from its options: the one way it is made, by `conformance run` (which
    loads the provider itself, to say why it cannot) and in every worker of `-n`."""
    name = pick_for_worker(options.provider, worker)
    if provider is None:
        spec = (
            isolated(name, options.call_timeout, options.worker_memory) if options.isolate else name
        )
        provider = load(spec, token_file=options.token_file)
        if options.record:  # the controller of `-n` merges the workers' parts
            provider = RecordingProvider(
                provider,
                cassette_part(options.record, worker),
                parts=worker is None and parallel,
                header={
                    "worker": worker or "",
                    "profile": options.profile,
                    "seed": options.seed,
                    "code_page": options.code_page,
                },
            )
    session = ConformanceSession(
        catalog,
        provider,
        provider_name or name,
        Path(options.out),
        options.profile,
        options.seed,
        options.code_page,
        options.differential,
        options.check_timeout,
        observed=options.observed,
        budget=parse_budget(options.budget) if options.budget else None,
        explore=options.explore,
        regressions=Path(options.regressions) if options.regressions else None,
    )
    session.options = options
    session.worker = worker
    session.retry = set(options.flaky)
    if options.rerun_failed:
        session.only = failed_in(Path(options.rerun_failed)) | set(session.regressions)
    return session


def failed_in(folder: Path) -> set[str]:
    """The checks that failed or errored in the run in `folder` (UsageError if unreadable)."""
    from conformance.errors import UsageError
    from conformance.reporting.diff import DiffError, checks_of, load_run

    try:
        return {
            n for n, c in checks_of(load_run(folder)).items() if c.get("status") in (FAILED, ERROR)
        }
    except DiffError as exc:
        raise UsageError(f"--rerun-failed: {exc}") from None
