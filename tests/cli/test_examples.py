"""The example CI workflow is a valid workflow whose conformance commands the CLI accepts."""

from __future__ import annotations

import re
import shlex

import yaml
from support import ROOT

from conformance.cli.main import build_parser

WORKFLOW = ROOT / "examples" / "github-actions" / "conformance.yml"


def commands() -> list[list[str]]:
    """Every `conformance ...` command in the workflow's steps, with GitHub expressions
    replaced by each value they can take."""
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    found = []
    for job in jobs.values():
        for step in job["steps"]:
            for value in ("ci", "thorough"):
                text = re.sub(r"\$\{\{.*?\}\}", value, str(step.get("run", "")))
                for line in text.replace("\n", " ").split("&&"):
                    if line.strip().startswith("conformance "):
                        found.append(shlex.split(line)[1:])
    return found


def test_the_workflow_runs_and_gates_on_the_baseline() -> None:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert data["name"] and data["jobs"]
    runs = [c for c in commands() if c[0] == "run"]
    assert runs and all("--baseline" in c for c in runs)


def test_every_conformance_command_parses() -> None:
    parser = build_parser()
    found = commands()
    assert {c[0] for c in found} >= {"validate", "run"}
    for argv in found:
        args = parser.parse_args(argv)
        if argv[0] == "run":
            assert args.profile in ("ci", "thorough")
