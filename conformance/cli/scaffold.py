"""`conformance init-provider`: a provider package that installs and runs as it is.

The skeleton registers itself under the `conformance.providers` entry point, lists in
comments what each family asks of it (methods, steps, faults, collections), and raises
`Unsupported` everywhere, so `conformance run` against it works from the first minute: every
check is not applicable and the run exits 1 ("no check ran") until methods are filled in. Its
generated test is skipped until then, and from then on fails whenever a check fails (or the
gate of the project's baseline does not pass).
"""

from __future__ import annotations

import re
from pathlib import Path

from conformance.errors import UsageError
from conformance.spec.catalog import Catalog


class ScaffoldError(UsageError):
    pass


GUIDE = "the conformance guide docs/writing-a-provider.md"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}-conformance-provider"
version = "0.1.0"
description = "A conformance provider for {name}"
requires-python = ">=3.11"
dependencies = ["conformance"]

[project.entry-points."conformance.providers"]
{name} = "{package}:Provider"

[tool.setuptools]
packages = ["{package}"]
"""

MODULE = '''\
"""The {name} provider: {name}'s implementation of the return-code contracts.

Fill in one method at a time; the harness turns everything that still raises
Unsupported into "not applicable", never into "passed".
The contract: {guide}.
"""

from __future__ import annotations

from typing import Any

from conformance.provider import Outcome, Unsupported
from conformance.provider import Provider as _Base

TODO = "not implemented yet: see {guide}"

# What the specs ask of this provider, by family:
{needs}


class Provider(_Base):
    name = "{name}"

    def capabilities(self) -> dict[str, list[str]]:
        # List what works as you implement it; the harness plans its checks from this.
        return {{"methods": [], "steps": [], "faults": [], "observe": []}}

    def reset(self) -> None:
        """Start a fresh, empty world (called before every test case)."""

    def setup(self, step: dict[str, Any]) -> str:
        raise Unsupported(f"step {{next(iter(step))!r}} is {{TODO}}")

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        raise Unsupported(f"method {{method_id!r}} is {{TODO}}")

    def observe(self, collection: str) -> list[dict[str, Any]]:
        raise Unsupported(f"collection {{collection!r}} is {{TODO}}")

    def close(self) -> None:
        """Release connections, handles, sessions."""
'''

TEST = '''\
"""Runs the conformance suite against this provider: red when a method deviates.

The run is `conformance run` from this project's folder, so the regressions exploration saved
under .conformance/regressions/ are replayed, and conformance-baseline.yaml (when present)
lists the deviations you accept for now (`conformance run --write-baseline` starts one).
Exit codes: 0 the provider passes (or passes the gate), 1 a check failed or none ran, 2 usage
or spec error, 3 provider unavailable. While every method raises Unsupported nothing can be
tested, and the test is skipped, not passed.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "conformance-baseline.yaml"


def test_conformance_suite(tmp_path):
    argv = [sys.executable, "-m", "conformance", "run", "--provider", "{package}:Provider",
            "--out", str(tmp_path)]
    if BASELINE.is_file():
        argv += ["--baseline", str(BASELINE)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    assert (tmp_path / "results.json").is_file(), done.stderr
    totals = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["totals"]
    if totals["passed"] + totals["failed"] + totals["errors"] == 0:
        pytest.skip("no method is implemented yet: every check is not applicable")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
'''

README = """\
# {name} conformance provider

    pip install -e .
    conformance doctor --provider {name}     # what works, before a run
    conformance run --provider {name}        # the suite; report in reports/latest/

Implement the methods in `{package}/__init__.py`; the contract is in {guide}.
"""


def _needs(catalog: Catalog, families: list[str]) -> str:
    lines = []
    for family in families:
        domain = catalog.domains[family]
        methods = sorted(s.id for s in catalog.specs.values() if s.family == family)
        lines.append(f"#   {family}:")
        lines.append(f"#     methods: {', '.join(methods)}")
        lines.append(f"#     steps:   {', '.join(domain.steps())}")
        lines.append(f"#     faults:  {', '.join(domain.faults) or '-'}")
        lines.append(f"#     observe: {', '.join(domain.collections)}")
    return "\n".join(lines)


def write_skeleton(
    name: str, out: Path, catalog: Catalog, families: list[str] | None = None
) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ScaffoldError(f"provider name {name!r}: use lower-case letters, digits and _")
    chosen = families or sorted(catalog.domains)
    unknown = [f for f in chosen if f not in catalog.domains]
    if unknown:
        raise ScaffoldError(
            f"unknown family {unknown[0]!r}; known: {', '.join(sorted(catalog.domains))}"
        )
    root = out / name
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another --out or name")
    package = f"{name}_provider"
    values = {"name": name, "package": package, "guide": GUIDE, "needs": _needs(catalog, chosen)}
    (root / package).mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(**values), encoding="utf-8")
    (root / "README.md").write_text(README.format(**values), encoding="utf-8")
    (root / package / "__init__.py").write_text(MODULE.format(**values), encoding="utf-8")
    (root / "tests" / "test_conformance.py").write_text(TEST.format(**values), encoding="utf-8")
    return root
