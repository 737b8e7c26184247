"""Helpers the test modules share: one parsed catalog per module, what a run concluded."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.spec import catalog as catalog_module

TESTS = Path(__file__).resolve().parent  # where the shared helpers and providers are
ROOT = TESTS.parent  # the checkout


@contextlib.contextmanager
def catalog_parsed_once() -> Iterator[None]:
    """Every `conformance run` in the block shares one parse per set of spec paths.

    The YAML parse and validation cost about a second per run and the catalog is read-only,
    so runs still go through `main` but the first one parses.
    """
    real = catalog_module.load_catalog
    cache: dict[tuple[str, ...] | None, Any] = {}

    def load_catalog(paths: list[str | Path] | None = None) -> Any:
        key = None if paths is None else tuple(str(p) for p in paths)
        if key not in cache:
            cache[key] = real(paths)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_module, "load_catalog", load_catalog)
        yield


def verdicts(out: Path) -> dict[str, Any]:
    """What a run concluded: each check's status and message, each method's verdict and codes."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    groups = [*results["methods"].values(), *results.get("families", {}).values()]
    return {
        "checks": {c["name"]: (c["status"], c["message"]) for g in groups for c in g["checks"]},
        "methods": {name: (m["verdict"], m["codes"]) for name, m in results["methods"].items()},
    }


def cli(*argv: str) -> tuple[int, str, str]:
    """`conformance ...` in-process: exit code, stdout, stderr."""
    from conformance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def results(folder: Path) -> dict[str, Any]:
    """A run's results.json."""
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run the block from `folder` (regressions are kept beside where a run starts)."""
    import os

    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
