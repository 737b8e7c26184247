"""The pytest plugin: spec files become collections of checks with stable names.

Thin by design (as pytest's own plugins are): this module only makes the run's session (a
worker of `-n` from the options its controller sent, `pytest --conformance-provider` from
pytest's own); the session (`runner/session.py`) collects each spec into items
(`runner/items.py`), runs them through the check kinds (`conformance.engine.kinds`) and writes
each finished check to the results stream. The plugin is inert unless `--conformance-provider`
is given (or `conformance run` registers its session), so installing the package does not
change anyone else's pytest runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conformance.engine.regressions import RegressionError
from conformance.provider import ProviderUnavailable
from conformance.runner.options import (
    SESSION,
    WORKER_INPUT,
    RunOptions,
    add_pytest_options,
    run_id_of,
    session_of,
)
from conformance.runner.start import open_session
from conformance.spec.catalog import load_catalog
from conformance.spec.source import SourceError


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A worker of `-n`, or `pytest --conformance-provider`: the session made from the run's
    options (`conformance run` has put its own session in the stash already)."""
    config.addinivalue_line("markers", "conformance(kind): a return-code contract check")
    if session_of(config) is not None:
        return
    options = RunOptions.from_pytest(config)
    if options is None:
        return
    worker = getattr(config, "workerinput", {}).get("workerid")
    try:
        catalog = load_catalog([Path(a) for a in config.args] or None)
        session = open_session(
            options,
            catalog,
            worker=worker,
            parallel=bool(config.getoption("numprocesses", default=None)),
        )
    except (ProviderUnavailable, SourceError, RegressionError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None
    session.run_id = run_id_of(config, session.run_id)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "conformance-session")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller starting a worker: the worker gets the run's options whole, and
    writes under the controller's run id (so a stream another run left in `workers/` is told
    apart from this run's)."""
    session = session_of(node.config)
    if session is not None:
        node.workerinput["conformance_run"] = session.run_id
        if session.options is not None:
            node.workerinput[WORKER_INPUT] = session.options.to_json()
