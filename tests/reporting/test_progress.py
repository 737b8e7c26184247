"""A run is never silent: piped, a progress line at most every 10 s; on a terminal, a live
line; --family and -k with a family name select a family; methods a provider does not list
are summarized once."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from support import cli, results

from conformance.reporting.progress import Progress

pytestmark = pytest.mark.slow  # whole runs: left out of the fast loop

ONE_FAMILY = """
from conformance_providers.reference import ReferenceProvider


class OneFamily(ReferenceProvider):
    def capabilities(self):
        caps = super().capabilities()
        return {**caps, "methods": [m for m in caps["methods"] if m.startswith("IVMGuestOS::")]}
"""


def test_piped_progress_is_a_line_every_ten_seconds() -> None:
    now = [0.0]
    progress = Progress(10, stream=io.StringIO(), enabled=None, clock=lambda: now[0])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i in range(10):
            now[0] += 4
            progress.finished(f"check {i}", failed=i == 3)
    assert out.getvalue().splitlines() == [
        "progress: 3/10 checks, 0 failed, 12 s elapsed",
        "progress: 6/10 checks, 1 failed, 24 s elapsed",
        "progress: 9/10 checks, 1 failed, 36 s elapsed",
    ]


def test_on_a_terminal_the_line_is_live_and_never_periodic() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream, out = Tty(), io.StringIO()
    progress = Progress(2, stream=stream, enabled=None, clock=lambda: 100.0)
    with contextlib.redirect_stdout(out):
        progress.finished("a", False)
    assert stream.getvalue().startswith("\r[1/2] 0 failed  a") and out.getvalue() == ""


def test_family_selects_its_methods_and_machine(tmp_path: Path) -> None:
    code, _, _ = cli(
        "run",
        "--in-process",
        "--out",
        str(tmp_path / "k"),
        "-k",
        "vds-iscsi",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 0
    summary = results(tmp_path / "k")
    assert {m.split("::")[0] for m in summary["methods"]} == {
        "IVdsIscsiInitiatorAdapter",
        "IVdsIscsiPortalGroup",
    }
    assert set(summary["families"]) == {"vds-iscsi"}
    code, stdout, _ = cli("plan", "--family", "virtual-pc", "--json")
    assert code == 0 and '"vds-iscsi"' not in stdout and '"virtual-pc"' in stdout
    code, _, stderr = cli("doctor", "--family", "nope")
    assert code == 2 and "--family nope: no such family" in stderr


def test_methods_a_provider_does_not_list_are_one_line_and_one_row(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(ONE_FAMILY, encoding="utf-8")
    code, stdout, _ = cli(
        "run",
        "--in-process",
        "--provider",
        f"{tmp_path / 'one.py'}:OneFamily",
        "--out",
        str(tmp_path / "out"),
        "-k",
        "Logoff.yaml or LogoutFromTarget",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 0
    lines = [line for line in stdout.splitlines() if "not in the provider's capabilities" in line]
    assert lines == [
        "1 method not in the provider's capabilities()['methods'] (not applicable): "
        "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
    ]
    assert not any(
        line.startswith("IVdsIscsiInitiatorAdapter::LogoutFromTarget ")
        for line in stdout.splitlines()
    )
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert report.count("not in the provider&#39;s capabilities()[&#39;methods&#39;]") == 1


def test_a_module_that_does_not_import_says_where_to_run_from(tmp_path: Path) -> None:
    code, _, stderr = cli(
        "run",
        "--in-process",
        "--provider",
        "vendor_pkg.provider:Provider",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 3
    assert (
        "ModuleNotFoundError" in stderr
        and "the current folder the one holding vendor_pkg/" in stderr
        and "path/to/vendor_pkg/provider.py:Class" in stderr
    )
