"""Every case of the reliability corpus (`tests/reliability.py`) keeps its bound.

Each case drives the harness in child processes against a hostile spec, provider, page, disk
or agent client; `benchmarks/reliability.py` runs the same cases and prints the table with
time and peak memory (and, with --before REF, an older commit's figures beside them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability import CASES, Case, Context, Tree, available


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_harness_keeps_its_bound(case: Case, tmp_path: Path) -> None:
    reason = available(case)
    if reason:
        pytest.skip(reason)
    outcome = case.run(Context(Tree.current(), tmp_path))
    assert outcome.held, f"{case.name}: bound {case.bound!r} broken: {outcome.result}"
