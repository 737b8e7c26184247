"""Every reproduction replays: the exact `conformance replay` command a failing run printed,
run from the folder the run started in, and the one report.html shows, run from the report's
folder, exit 1 on the broken provider and 0 once the provider is fixed (the reference)."""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from broken_providers import LOGOFF, REMOVE_PORTAL
from support import TESTS, catalog_parsed_once, cli, inside
from test_checks import BREAKAGES, spec_file

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

HERE = TESTS
ENGINE = TESTS / "engine"  # the family tests, which hold providers broken between methods
FAMILY_BROKEN = [  # broken between methods: only sequences show it
    (f"{ENGINE / 'test_family_vds.py'}:StaleDeletedGroupProvider", "vds-iscsi"),
    (f"{ENGINE / 'test_family_iscsi.py'}:StaticTargetsReportedAsLogins", "iscsi-discovery"),
    # a family check that fails on a step, before any call: its reproduction names no method
    (f"{HERE / 'broken_providers.py'}:BadSetupId", "virtual-pc and stateful"),
]
SELECTIONS = [
    (f"{HERE / 'broken_providers.py'}:{b.provider}", spec_file(b.method)) for b in BREAKAGES
] + [
    (f"{HERE / 'broken_providers.py'}:Raises", spec_file(REMOVE_PORTAL)),
    (f"{HERE / 'broken_providers.py'}:IgnoresForce", "IVMGuestOS.Shutdown.yaml"),
    (f"{HERE / 'broken_providers.py'}:LongNameRefused", "AddIScsiStaticTargetW.yaml"),
    (f"{HERE / 'broken_providers.py'}:WrongVia", spec_file(LOGOFF)),
    *FAMILY_BROKEN,
]


@pytest.fixture(scope="module", autouse=True)
def _catalog_parsed_once() -> Iterator[None]:
    with catalog_parsed_once():
        yield


def replayed(command: str, provider: str | None = None) -> int:
    argv = shlex.split(command)
    assert argv[:2] == ["conformance", "replay"], command
    if provider is not None:
        argv[argv.index("--provider") + 1] = provider
    return cli(*argv[1:])[0]


@pytest.mark.parametrize(
    ("provider", "keyword"), SELECTIONS, ids=[p.rpartition(":")[2] for p, _ in SELECTIONS]
)
def test_every_printed_replay_line_replays(provider: str, keyword: str, tmp_path: Path) -> None:
    with inside(tmp_path):
        code, stdout, _ = cli(
            "run",
            "--provider",
            provider,
            "--in-process",
            "--out",
            "out",
            "-k",
            keyword,
            "--regressions",
            "regressions",
        )
        assert code == 1
        printed = re.findall(r"^  reproduce: (conformance replay .+)$", stdout, re.M)
        assert printed, stdout
        for command in printed:
            assert replayed(command) == 1, command
            assert replayed(command, "reference") == 0, command
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    shown = [html.unescape(c) for c in re.findall(r"Run it again: <code>(.+?)</code>", report)]
    assert len(shown) == len(printed)
    with inside(tmp_path / "out"):  # "from the folder of this report"
        for command in shown:
            assert replayed(command) == 1, command
            assert replayed(command, "reference") == 0, command


def test_a_provider_given_as_a_relative_file_replays_from_the_report_folder(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "mine.py").write_text(
        (HERE / "broken_providers.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with inside(tmp_path):
        code, _, _ = cli(
            "run",
            "--provider",
            "vendor/mine.py:WrongCode",
            "--in-process",
            "--out",
            "out",
            "-k",
            spec_file(BREAKAGES[0].method),
            "--regressions",
            "regressions",
        )
        assert code == 1
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    shown = [html.unescape(c) for c in re.findall(r"Run it again: <code>(.+?)</code>", report)]
    assert shown
    with inside(tmp_path / "out"):
        for command in shown:
            assert f"{tmp_path / 'vendor' / 'mine.py'}:WrongCode" in command
            assert replayed(command) == 1, command
