"""One error root: every error the harness raises says its exit status and a check's verdict,
and the runner and the command line read them from it alone (conformance.errors)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import conformance
from conformance.cli.main import main
from conformance.engine.oracle import OracleError
from conformance.engine.verdict import CheckFailed, NotApplicable, verdict_of
from conformance.engine.world import ProviderError
from conformance.errors import ConformanceError, ExitStatus, Status
from conformance.provider import ProviderUnavailable, Unsupported

# Outside the root on purpose, with the reason.
ROOTLESS = {
    "conformance.engine.budget.CheckTimedOut": "a BaseException: a provider's `except "
    "Exception` must not swallow the check's time limit",
}


def harness_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class the harness's modules define (private signals aside)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(conformance.__path__, "conformance."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = value
    return found


def outside_the_root(classes: dict[str, type[BaseException]]) -> list[str]:
    return sorted(
        name
        for name, cls in classes.items()
        if not issubclass(cls, ConformanceError) and name not in ROOTLESS
    )


def test_every_error_of_the_harness_derives_from_the_root() -> None:
    classes = harness_exceptions()
    assert len(classes) > 20
    assert not outside_the_root(classes), "give these a place under conformance.errors"
    assert set(ROOTLESS) <= set(classes), "ROOTLESS names a class that is gone"


def test_the_root_check_can_fail() -> None:
    class Stray(Exception):
        pass

    assert outside_the_root({"conformance.x.Stray": Stray}) == ["conformance.x.Stray"]


@pytest.mark.parametrize(
    ("error", "status", "message", "codes"),
    [
        (CheckFailed("wrong code", codes=("E_A",)), Status.FAILED, "wrong code", {"E_A": "failed"}),
        (
            ProviderError("raised in call"),
            Status.FAILED,
            "raised in call",
            {"S_OK": "failed", "E_A": "failed"},
        ),
        (
            Unsupported("step 'pool'"),
            Status.NOT_APPLICABLE,
            "unsupported by the provider: step 'pool'",
            {"S_OK": "not_applicable", "E_A": "not_applicable"},
        ),
        (
            NotApplicable("no case reached it"),
            Status.NOT_APPLICABLE,
            "no case reached it",
            {"S_OK": "not_applicable", "E_A": "not_applicable"},
        ),
        (OracleError("a.yaml:3: no such field"), Status.ERROR, "spec error: a.yaml:3: ...", {}),
    ],
)
def test_a_check_an_error_ended_reads_its_verdict_from_the_class(
    error: ConformanceError, status: Status, message: str, codes: dict[str, str]
) -> None:
    verdict = verdict_of(error, {"S_OK": "not_applicable", "E_A": "not_applicable"})
    assert verdict.status is status
    assert verdict.message == message.replace("...", "no such field")
    assert verdict.codes == codes


def test_exit_statuses_are_the_stable_ones() -> None:
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3]
    assert ProviderUnavailable.exit_status == 3
    assert OracleError.exit_status == 2


def test_a_command_ended_by_an_error_prints_it_in_one_line_with_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(tmp_path / "old"), str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "old" in err[0]
    assert main(["run", "--family", "nosuch", "--out", str(tmp_path / "r")]) == 2
    assert "--family nosuch: no such family" in capsys.readouterr().err
