"""A harness that survives its providers: crashes, hangs, and a run killed half-way.

With --isolate the provider runs in a worker process (the agent over stdio); a crash or a hang
fails the check in flight, the worker restarts, and every other check still runs. A run killed
with SIGKILL loses nothing already finished: `conformance report DIR` rebuilds from the stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conformance.cli import main

PROVIDERS = '''
import os, time
from conformance_providers.reference import ReferenceProvider


class Exits(ReferenceProvider):
    """Logoff kills its process, as a crash inside a DLL would."""

    def call(self, method_id, args):
        if method_id == "IVMGuestOS::Logoff":
            os._exit(7)
        return super().call(method_id, args)


class Hangs(ReferenceProvider):
    """LogoutFromTarget never returns."""

    def call(self, method_id, args):
        if method_id == "IVdsIscsiInitiatorAdapter::LogoutFromTarget":
            time.sleep(3600)
        return super().call(method_id, args)
'''


def _providers(tmp_path: Path) -> Path:
    path = tmp_path / "hostile_providers.py"
    path.write_text(PROVIDERS, encoding="utf-8")
    return path


def _run(tmp_path: Path, provider: str, keyword: str, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = main(["run", "--provider", provider, "--isolate", "--profile", "quick", "--seed",
                 "1", "--out", str(out), "-k", keyword, *extra])
    return code, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_a_crashing_provider_fails_only_its_checks(tmp_path: Path) -> None:
    provider = f"{_providers(tmp_path)}:Exits"
    code, results = _run(tmp_path, provider, "(Logoff or RemovePortal) and scenario")
    assert code == 1
    logoff = results["methods"]["IVMGuestOS::Logoff"]
    assert logoff["verdict"] == "fails"
    assert all("agent process exited with code 7" in c["message"] for c in logoff["checks"])
    assert results["methods"]["IVdsIscsiPortalGroup::RemovePortal"]["verdict"] != "fails"


def test_a_hanging_call_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    provider = f"{_providers(tmp_path)}:Hangs"
    started = time.monotonic()
    code, results = _run(tmp_path, provider,
                         "(logs-out-of-every-session-to-the-target or removes-a-member-portal)",
                         "--call-timeout", "1")
    assert code == 1
    assert time.monotonic() - started < 60
    (check,) = results["methods"]["IVdsIscsiInitiatorAdapter::LogoutFromTarget"]["checks"]
    assert check["status"] == "failed"
    assert "within 1.0 s" in check["message"], check["message"]
    portal = results["methods"]["IVdsIscsiPortalGroup::RemovePortal"]["checks"]
    assert [c["status"] for c in portal] == ["passed"]


def test_a_killed_run_keeps_every_finished_check(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    run = subprocess.Popen([sys.executable, "-m", "conformance", "run", "--profile", "ci",
                            "--out", str(out)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
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
        len(f["checks"]) for f in rebuilt.get("families", {}).values())
    assert counted == finished
    assert (out / "report.html").is_file() and (out / "junit.xml").is_file()
