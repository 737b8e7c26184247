"""A harness that survives its providers: crashes, hangs, and a run killed half-way.

By default `conformance run` runs the provider in a worker process (the agent over stdio); a
crash (os._exit, a segfault) or a hang fails the check in flight, the worker is replaced, and
every other check still runs. A check over its budget (--check-timeout), or a call over the
per-call timeout (--call-timeout), fails with "timed out after N s in METHOD". `--in-process`
loads the provider into the harness's own process. A provider that cannot load exits 3 at
startup with its reason. A run killed with SIGKILL loses nothing already finished:
`conformance report DIR` rebuilds from the stream.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import TESTS, catalog_parsed_once

from conformance.cli import main

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
LOGOFF = "IVMGuestOS::Logoff"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
ONE_PORTAL_SCENARIO = "removes-a-member-portal"  # one passing check of another method

HOSTILE = str(TESTS / "hostile_providers.py")  # Exits, Hangs, Deep, ...

PROVIDERS = '''
import os, time
from pathlib import Path

from conformance.provider import ProviderUnavailable
from conformance_providers.reference import ReferenceProvider


class Slow(ReferenceProvider):
    """LogoutFromTarget answers, but takes its time."""

    def call(self, method_id, args):
        if method_id == "IVdsIscsiInitiatorAdapter::LogoutFromTarget":
            time.sleep(0.3)
        return super().call(method_id, args)


class Pid(ReferenceProvider):
    """Notes the process it was created in (in pids.txt beside this file)."""

    def __init__(self):
        super().__init__()
        with open(Path(__file__).with_name("pids.txt"), "a") as pids:
            pids.write(f"{os.getpid()}\\n")


class NeedsAUnicorn(ReferenceProvider):
    def __init__(self):
        raise ProviderUnavailable("needs a unicorn: none is attached to this machine")
'''


@pytest.fixture(scope="module", autouse=True)
def _catalog_parsed_once() -> Iterator[None]:
    """What these tests time is the provider's worker, not the YAML parse."""
    with catalog_parsed_once():
        yield


def _providers(tmp_path: Path) -> Path:
    path = tmp_path / "hostile_providers.py"
    path.write_text(PROVIDERS, encoding="utf-8")
    return path


def _run(tmp_path: Path, provider: str, keyword: str, *extra: str) -> tuple[int, dict]:
    """`conformance run` as a user types it (no isolation option: the default)."""
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--provider",
            provider,
            "--profile",
            "quick",
            "--seed",
            "1",
            "--out",
            str(out),
            "-k",
            keyword,
            *extra,
        ]
    )
    return code, json.loads((out / "results.json").read_text(encoding="utf-8"))


def _pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids.txt"
    pids = [int(line) for line in path.read_text(encoding="utf-8").split()]
    path.unlink()
    return pids


@pytest.mark.parametrize(
    ("provider", "said"),
    [
        ("Exits", "agent process exited with code 7"),
        (
            "Segfaults",
            "agent process exited with code "
            + (f"{-signal.SIGSEGV}" if os.name == "posix" else ""),
        ),
    ],
)
def test_a_crashing_provider_fails_only_its_checks(
    provider: str, said: str, tmp_path: Path
) -> None:
    code, results = _run(
        tmp_path,
        f"{HOSTILE}:{provider}",
        f"{LOGOFF} and (scenario and (the-vm-is-off or no-one-is-logged-on) "
        f"or out-params) or {ONE_PORTAL_SCENARIO}",
    )
    assert code == 1
    logoff = results["methods"][LOGOFF]
    assert logoff["verdict"] == "fails"
    assert {c["kind"] for c in logoff["checks"]} == {"scenario", "out-params"}
    for check in logoff["checks"]:
        assert check["status"] == "failed" and said in check["message"], check
    portal = results["methods"][REMOVE_PORTAL]["checks"]
    assert [c["status"] for c in portal] == ["passed"]  # on a new worker, after the crash


def test_a_hanging_call_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    """Each check that calls the hanging method ends at its first timed-out call (a property
    check too: hypothesis does not shrink a timeout), so the run takes about call timeout x
    checks that hang + the normal time."""
    provider = f"{HOSTILE}:Hangs"
    started = time.monotonic()
    code, results = _run(
        tmp_path,
        provider,
        f"logs-out-of-every-session-to-the-target or {LOGOUT} and oracle or {ONE_PORTAL_SCENARIO}",
        "--call-timeout",
        "0.5",
    )
    assert code == 1
    assert time.monotonic() - started < 30
    checks = results["methods"][LOGOUT]["checks"]
    assert {c["kind"] for c in checks} == {"scenario", "oracle"}
    for check in checks:
        assert check["status"] == "failed", check
        assert check["message"].startswith(f"timed out after 0.5 s in {LOGOUT}"), check
        assert "--call-timeout" in check["message"]
    portal = results["methods"][REMOVE_PORTAL]["checks"]
    assert [c["status"] for c in portal] == ["passed"]
    stream = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8")
    assert stream.count('"event": "check"') == len(checks) + 1  # every check recorded


def test_a_check_over_its_budget_fails_and_the_worker_is_replaced(tmp_path: Path) -> None:
    """The per-call timeout (30 s by default) would not fire: the check's budget does, kills
    the worker in the middle of the call, and the next check runs on a new one."""
    provider = f"{HOSTILE}:Hangs"
    started = time.monotonic()
    code, results = _run(
        tmp_path,
        provider,
        f"logs-out-of-every-session-to-the-target or {ONE_PORTAL_SCENARIO}",
        "--check-timeout",
        "1",
    )
    assert code == 1
    assert time.monotonic() - started < 20
    (check,) = results["methods"][LOGOUT]["checks"]
    assert check["status"] == "failed"
    assert check["message"].startswith(f"timed out after 1 s in {LOGOUT}"), check["message"]
    assert "--check-timeout" in check["message"] and "worker was replaced" in check["message"]
    assert [c["status"] for c in results["methods"][REMOVE_PORTAL]["checks"]] == ["passed"]


def test_the_budget_holds_in_process_too_between_calls(tmp_path: Path) -> None:
    code, results = _run(
        tmp_path,
        f"{_providers(tmp_path)}:Slow",
        f"{LOGOUT} and oracle or {ONE_PORTAL_SCENARIO}",
        "--in-process",
        "--check-timeout",
        "1",
    )
    assert code == 1
    (check,) = results["methods"][LOGOUT]["checks"]
    assert check["message"].startswith(f"timed out after 1 s in {LOGOUT}"), check["message"]
    assert [c["status"] for c in results["methods"][REMOVE_PORTAL]["checks"]] == ["passed"]


def test_isolation_is_the_default_and_in_process_is_asked_for(tmp_path: Path) -> None:
    provider = f"{_providers(tmp_path)}:Pid"
    for option in ([], ["--isolate"]):  # --isolate: the old spelling of the default
        code, results = _run(tmp_path, provider, ONE_PORTAL_SCENARIO, *option)
        assert code == 0 and results["provider"] == provider
        assert os.getpid() not in _pids(tmp_path), option
    code, results = _run(tmp_path, provider, ONE_PORTAL_SCENARIO, "--in-process")
    assert code == 0 and results["provider"] == provider
    assert _pids(tmp_path) == [os.getpid()]


def _unavailable(tmp_path: Path, provider: str, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(
            [
                "run",
                "--provider",
                provider,
                "--profile",
                "quick",
                "--out",
                str(tmp_path / "out"),
                *extra,
            ]
        )
    assert not (tmp_path / "out" / "results.json").exists()
    return code, err.getvalue()


def test_an_unloadable_provider_exits_3_at_startup_with_its_reason(tmp_path: Path) -> None:
    """The worker refuses the hello with the provider's reason; the harness says it as an
    in-process run would, without the worker's command line, before any check runs."""
    provider = f"{_providers(tmp_path)}:NeedsAUnicorn"
    for option in ([], ["--in-process"]):
        code, said = _unavailable(tmp_path, provider, *option)
        assert code == 3, said
        assert said.startswith("provider unavailable: needs a unicorn: none is attached"), said
        assert "agent" not in said
    if sys.platform != "win32":
        code, said = _unavailable(tmp_path, "windows")
        assert code == 3 and said.startswith("provider unavailable: needs Windows"), said


def test_a_killed_run_keeps_every_finished_check(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    run = subprocess.Popen(
        [sys.executable, "-m", "conformance", "run", "--profile", "ci", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stream = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stream.is_file() and stream.read_text(encoding="utf-8").count('"event": "check"') >= 5:
            break
        time.sleep(0.2)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    finished = stream.read_text(encoding="utf-8").count('"event": "check"')
    assert finished >= 5
    assert main(["report", str(out)]) in (0, 1)
    rebuilt = json.loads((out / "results.json").read_text(encoding="utf-8"))
    counted = sum(len(m["checks"]) for m in rebuilt["methods"].values()) + sum(
        len(f["checks"]) for f in rebuilt.get("families", {}).values()
    )
    assert counted == finished
    assert (out / "report.html").is_file() and (out / "junit.xml").is_file()


def test_a_provider_that_logs_a_lot_to_stderr_gets_no_false_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's stderr is drained in large reads: a byte at a time, 4 MB of log per call
    kept each call waiting on a full pipe past a one-second call timeout."""
    out = tmp_path / "out"
    monkeypatch.setenv("NOISY_KB", "4096")
    code = main(
        [
            "run",
            "--provider",
            f"{HOSTILE}:Noisy",
            "--out",
            str(out),
            "--call-timeout",
            "1",
            "-k",
            "Logoff.yaml and (oracle or closed-world)",
            "--regressions",
            str(tmp_path / "r"),
        ]
    )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    messages = [c["message"] for m in results["methods"].values() for c in m["checks"]]
    assert code == 0, messages
    assert not any("timed out" in m for m in messages)


def test_report_recovers_a_parallel_run_killed_before_its_merge(tmp_path: Path) -> None:
    """Killed with -n, a run leaves its finished checks in workers/*.jsonl, and an older
    results.jsonl may lie beside them: `conformance report` rebuilds from the workers'."""
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--out",
                str(out),
                "-n",
                "2",
                "--in-process",
                "-k",
                "Logoff.yaml",
                "--regressions",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    finished = json.loads((out / "results.json").read_text(encoding="utf-8"))["totals"]
    (out / "results.json").unlink()
    older = out / "results.jsonl"
    older.write_text(
        '{"event": "start", "provider": "an older run", "methods": {}}\n', encoding="utf-8"
    )
    os.utime(older, (1, 1))  # older than the workers' streams
    run = json.loads((out / "workers" / "gw0.jsonl").read_text(encoding="utf-8").splitlines()[0])[
        "run"
    ]
    stale = out / "workers" / "gw7.jsonl"  # a worker's stream an earlier run left behind
    stale.write_text(
        (out / "workers" / "gw0.jsonl").read_text(encoding="utf-8").replace(run, "0123456789ab"),
        encoding="utf-8",
    )
    os.utime(stale, (2, 2))
    assert main(["report", str(out)]) == 0
    rebuilt = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert rebuilt["totals"] == finished and rebuilt["provider"] == "reference"
    assert rebuilt["run"] == run and rebuilt["workers"] == 2
    lines = [
        json.loads(line)
        for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert {line["run"] for line in lines if line["event"] == "check"} == {run}


def test_report_skips_the_lines_of_another_run(tmp_path: Path, capsys) -> None:
    """A results.jsonl holding check lines of two runs (appended by hand, or a copy gone
    wrong): the other run's lines are skipped and named, not counted."""
    out = tmp_path / "out"
    main(
        [
            "run",
            "--out",
            str(out),
            "--in-process",
            "-k",
            "Logoff.yaml and oracle",
            "--regressions",
            str(tmp_path / "r"),
        ]
    )
    finished = json.loads((out / "results.json").read_text(encoding="utf-8"))["totals"]
    stream = out / "results.jsonl"
    lines = stream.read_text(encoding="utf-8").splitlines()
    run = json.loads(lines[0])["run"]
    foreign = [line.replace(run, "0123456789ab") for line in lines if '"check"' in line]
    stream.write_text("\n".join(lines + foreign) + "\n", encoding="utf-8")
    capsys.readouterr()
    main(["report", str(out)])
    rebuilt = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert rebuilt["totals"] == finished
    assert "from another run (0123456789ab" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="address-space limits are POSIX resource limits")
def test_a_provider_eating_memory_hits_the_worker_limit_and_is_told_so(tmp_path: Path) -> None:
    """With --worker-memory, a provider allocating without end fails its check saying the
    limit was reached (it used to be reported as a timeout, after taking the machine's
    memory), and the next check runs in the same worker."""
    code, results = _run(
        tmp_path,
        f"{HOSTILE}:EatsMemory",
        f"{LOGOFF} and out-params or {ONE_PORTAL_SCENARIO}",
        "--worker-memory",
        "256M",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 1
    (check,) = results["methods"][LOGOFF]["checks"]
    assert (
        "the provider ran out of memory: the worker's limit is 256 MiB (--worker-memory)"
        in check["message"]
    ), check["message"]
    statuses = {c["status"] for c in results["methods"][REMOVE_PORTAL]["checks"]}
    assert statuses == {"passed"}


def test_a_memory_option_reads_sizes_and_refuses_nonsense() -> None:
    import argparse

    from conformance.units import memory_size

    assert memory_size("512M") == 512 << 20 and memory_size("2g") == 2 << 30
    assert memory_size("0") == 0 and memory_size("1GiB") == 1 << 30
    for bad in ("lots", "-1M", "1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            memory_size(bad)


def test_a_crash_during_a_call_is_named_after_the_call(tmp_path: Path) -> None:
    """The worker dies inside Logoff, in the middle of its test case's batch: the message
    names the call, not the batch's first request (reset)."""
    code, results = _run(
        tmp_path,
        f"{HOSTILE}:Exits",
        f"{LOGOFF} and out-params",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 1
    (check,) = results["methods"][LOGOFF]["checks"]
    assert "provider raised in call(IVMGuestOS::Logoff)" in check["message"], check["message"]
    assert "provider raised in reset()" not in check["message"]


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        ("Deep", "cannot be sent: it nests deeper than JSON can be written here"),
        ("BadRepr", "cannot be sent: a Weird in it has no repr (RuntimeError: repr refuses)"),
    ],
)
def test_an_answer_the_worker_cannot_send_fails_its_check_with_the_reason(
    provider: str, reason: str, tmp_path: Path
) -> None:
    """Output nested 100,000 deep, or holding an object whose repr raises, used to kill the
    worker; now the check fails saying why, and the worker goes on."""
    code, results = _run(
        tmp_path,
        f"{HOSTILE}:{provider}",
        f"{LOGOFF} and out-params or {ONE_PORTAL_SCENARIO}",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 1
    (check,) = results["methods"][LOGOFF]["checks"]
    assert reason in check["message"] and "exited" not in check["message"], check["message"]
    assert [c["status"] for c in results["methods"][REMOVE_PORTAL]["checks"]] == ["passed"]


@pytest.mark.skipif(os.name != "posix", reason="fork and process groups are POSIX")
def test_a_forked_child_holding_the_pipes_does_not_outlive_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORKED_PID_FILE", str(tmp_path / "child.pid"))
    code, results = _run(
        tmp_path,
        f"{HOSTILE}:ForkHangs",
        f"{LOGOFF} and out-params or {ONE_PORTAL_SCENARIO}",
        "--call-timeout",
        "2",
        "--check-timeout",
        "10",
        "--regressions",
        str(tmp_path / "r"),
    )
    assert code == 1
    (check,) = results["methods"][LOGOFF]["checks"]
    assert "timed out after 2 s in IVMGuestOS::Logoff" in check["message"]
    assert [c["status"] for c in results["methods"][REMOVE_PORTAL]["checks"]] == ["passed"]
    child = int((tmp_path / "child.pid").read_text(encoding="utf-8"))
    for _ in range(50):  # the kill is immediate; its reaping by init may take a moment
        if (
            not Path(f"/proc/{child}").exists()
            or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
        ):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the provider's forked child outlived the run")
