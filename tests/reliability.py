"""The reliability corpus: hostile specs, providers, pages, agent clients and disks, each
with the bound the harness must keep against it.

Every case drives the harness as a user would (`python -m conformance ...`, `python -m
conformance.remote.agent ...` in child processes), so the same corpus measures this checkout and an
older one (`benchmarks/reliability.py --before REF`). A case returns an `Outcome`: whether the
bound held and one line saying what happened. Each child process has a wall-clock cap, so a
harness that hangs is a broken bound, not a hung corpus.

    python -m pytest tests/test_reliability.py      # every case must hold
    python benchmarks/reliability.py               # the table: case, bound, result, s, MiB
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOSTILE = HERE / "hostile_providers.py"
LOGOFF_CASE = "Logoff.yaml and out-params"  # the one check a hostile provider breaks
BYSTANDER = "removes-a-member-portal"  # one passing check of another method
CAP = 120.0  # seconds any child process of a case may take


@dataclass(frozen=True)
class Tree:
    """The harness under test: its source root (this checkout, or a worktree of an older
    commit) and the environment that makes `python -m conformance` import it."""

    root: Path
    env: dict[str, str]

    @classmethod
    def current(cls) -> Tree:
        return cls(HERE.parent, dict(os.environ))

    @classmethod
    def at(cls, root: Path, shim: Path) -> Tree:
        """An older checkout: `shim` gets links named as the installed packages."""
        shim.mkdir(parents=True, exist_ok=True)
        for name, folder in (
            ("conformance", "conformance"),
            ("conformance_providers", "providers"),
            ("conformance_specs", "specs"),
        ):
            link = shim / name
            if not link.exists():
                link.symlink_to(root / folder)
        env = dict(os.environ, PYTHONPATH=f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        return cls(root, env)

    @property
    def specs(self) -> Path:
        return self.root / "specs"


@dataclass
class Done:
    """What a child process did: exit code (None: killed at the cap), output, seconds, and
    its peak resident memory (MiB; 0 where the system does not say)."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    mib: float = 0.0

    @property
    def capped(self) -> bool:
        return self.code is None


@dataclass
class Context:
    tree: Tree
    tmp: Path

    def run(
        self,
        *argv: str,
        cap: float = CAP,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Done:
        """`python -m conformance ARGV` in `tmp` (so nothing lands in the checkout)."""
        return self.spawn([sys.executable, "-m", "conformance", *argv], cap, env, cwd)

    def spawn(
        self,
        argv: list[str],
        cap: float = CAP,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Done:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=cwd or self.tmp,
            env={**self.tree.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        streams = [_drain(proc.stdout), _drain(proc.stderr)]
        status, kib = _wait(proc, started + cap)
        out, err = (stream() for stream in streams)
        code = None if status is None else os.waitstatus_to_exitcode(status)
        return Done(code, out, err, time.monotonic() - started, kib / 1024)

    def specs_with_rule(self, when: str) -> Path:
        """The bundled specs with LogoutFromTarget's first rule's condition replaced."""
        root = self.tmp / "specs"
        shutil.copytree(self.tree.specs, root, ignore=shutil.ignore_patterns("__pycache__"))
        path = root / "vds" / "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"
        text = path.read_text(encoding="utf-8")
        start = text.index("rules:\n")
        head, rest = text[:start], text[start:]
        rest = re.sub(
            r"  - when: >-\n(?:      [^\n]*\n)+", f"  - when: {json.dumps(when)}\n", rest, count=1
        )
        path.write_text(head + rest, encoding="utf-8")
        return root


@dataclass
class Outcome:
    held: bool
    result: str
    finished: int | None = None  # checks finished before a kill
    recovered: int | None = None  # of those, checks the report recovered
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    side: str  # spec, provider, page, disk, agent
    bound: str
    run: Callable[[Context], Outcome]
    needs: str = ""  # "posix", "mount": skipped where missing

    @property
    def id(self) -> str:
        """The name as a test id and a command-line choice: words joined by dashes."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


CASES: list[Case] = []


def case(name: str, side: str, bound: str, needs: str = "") -> Callable[..., Any]:
    def register(fn: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        CASES.append(Case(name, side, bound, fn, needs))
        return fn

    return register


# -- helpers ---------------------------------------------------------------------------------------


def _drain(pipe: Any) -> Callable[[], str]:
    """Read a child's pipe to its end in a thread; the returned function gives the text."""
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: pipe.read(65536), b"")), daemon=True
    )
    reader.start()

    def text() -> str:
        reader.join(10)
        pipe.close()
        return b"".join(chunks).decode("utf-8", "replace")

    return text


def _wait(proc: subprocess.Popen[Any], deadline: float) -> tuple[int | None, int]:
    """Wait for the child until `deadline` (then kill its process group): its wait status
    (None when killed at the deadline) and its peak resident set in KiB. The peak is read
    from /proc while it runs where there is one: the rusage figure also counts the pages of
    the process it was forked from (a pytest worker's hundreds of MiB) before its exec."""
    capped, peak = False, 0
    status_file = Path(f"/proc/{proc.pid}/status")
    while True:
        peak = max(peak, _hwm_kib(status_file))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return (None if capped else status), peak or usage.ru_maxrss
        if time.monotonic() > deadline and not capped:
            _kill_group(proc)
            capped = True
        time.sleep(0.01)


def _hwm_kib(status_file: Path) -> int:
    """A running process's peak resident set (VmHWM, KiB), 0 where /proc does not say."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _results(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _checks(results: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not results:
        return []
    groups = [*results["methods"].values(), *results.get("families", {}).values()]
    return [c for g in groups for c in g["checks"]]


def _run_provider(
    ctx: Context,
    provider: str,
    keyword: str,
    *extra: str,
    env: dict[str, str] | None = None,
    cap: float = CAP,
) -> tuple[Done, list[dict]]:
    out = ctx.tmp / "out"
    done = ctx.run(
        "run",
        "--provider",
        f"{HOSTILE}:{provider}",
        "--profile",
        "quick",
        "--seed",
        "1",
        "--out",
        str(out),
        "-k",
        keyword,
        "--regressions",
        str(ctx.tmp / "regressions"),
        *extra,
        env=env,
        cap=cap,
    )
    return done, _checks(_results(out))


def _said(done: Done) -> str:
    """The last line the harness printed to stderr (its error), shortened."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1][:140] if lines else f"exit {done.code}"


def _one_check(checks: list[dict], method_part: str) -> dict | None:
    return next((c for c in checks if method_part in c["name"]), None)


def _provider_case(
    ctx: Context, provider: str, expect: str, *extra: str, env: dict[str, str] | None = None
) -> Outcome:
    """A hostile provider breaks Logoff: its check fails saying `expect`, the bystander passes,
    within the cap."""
    done, checks = _run_provider(ctx, provider, f"{LOGOFF_CASE} or {BYSTANDER}", *extra, env=env)
    if done.capped:
        return Outcome(False, f"still running after {CAP:.0f} s (killed)")
    logoff, other = _one_check(checks, "Logoff"), _one_check(checks, "RemovePortal")
    if logoff is None:
        return Outcome(False, f"no results (exit {done.code}): {_said(done)}")
    message = logoff["message"].splitlines()[0] if logoff["message"] else logoff["status"]
    held = expect in logoff["message"] and other is not None and other["status"] == "passed"
    return Outcome(held, f"{logoff['status']}: {message[:150]}")


# -- specs ---------------------------------------------------------------------------------------


@case(
    "a rule's regex backtracks: '(a+)+' on 40 a's",
    "spec",
    "linear-time regex engine; the check ends within --check-timeout 20 s",
)
def regex_in_a_rule(ctx: Context) -> Outcome:
    when = "'" + "a" * 40 + "!'.matches('^(a+)+$') || args.targetId == 'nothing'"
    specs = ctx.specs_with_rule(when)
    out = ctx.tmp / "out"
    done = ctx.run(
        "run",
        "--specs",
        str(specs),
        "--profile",
        "quick",
        "--seed",
        "1",
        "--in-process",
        "--check-timeout",
        "20",
        "--out",
        str(out),
        "-k",
        "LogoutFromTarget.yaml and oracle",
        "--regressions",
        str(ctx.tmp / "r"),
    )
    if done.capped:
        return Outcome(False, f"still running after {CAP:.0f} s (killed)")
    checks = _checks(_results(out))
    timed_out = [c for c in checks if "timed out" in c["message"]]
    held = bool(checks) and not timed_out and done.seconds < 30
    what = f"{len(checks)} checks judged in {done.seconds:.1f} s" if checks else _said(done)
    if timed_out:
        what = f"timed out, blamed on the provider: {timed_out[0]['message'][:100]}"
    return Outcome(held, what)


_NUMBERS = "[" + ",".join(str(i) for i in range(250)) + "]"
# a condition whose first operand visits 250**3 elements: far past the cost bound
NESTED_MAPS = (
    f"{_NUMBERS}.map(a, {_NUMBERS}.map(b, {_NUMBERS}.map(c, a + b + c))).size() == 0 "
    "|| args.targetId == 'nothing'"
)


@case(
    "comprehensions nested 3 deep over 250-element lists",
    "spec",
    "1,000,000 comprehension visits per evaluation, the rule's file:line named",
)
def nested_maps(ctx: Context) -> Outcome:
    specs = ctx.specs_with_rule(NESTED_MAPS)
    out = ctx.tmp / "out"
    done = ctx.run(
        "run",
        "--specs",
        str(specs),
        "--profile",
        "quick",
        "--seed",
        "1",
        "--in-process",
        "--out",
        str(out),
        "-k",
        "LogoutFromTarget.yaml and oracle",
        "--regressions",
        str(ctx.tmp / "r"),
        cap=90,
    )
    if done.capped:
        return Outcome(False, "still running after 90 s (killed)")
    checks = _checks(_results(out))
    named = [c for c in checks if "1,000,000" in c["message"] and ".yaml:" in c["message"]]
    if named:
        return Outcome(True, f"failed as the spec's fault: {named[0]['message'][:120]}")
    return Outcome(False, f"exit {done.code} in {done.seconds:.0f} s: {_said(done)}")


@case(
    "validate with a rule past the cost bound that every scenario evaluates",
    "spec",
    "the bound paid once per spec: one problem naming the rule's file:line, not one per scenario",
)
def validate_costly_rule(ctx: Context) -> Outcome:
    done = ctx.run("validate", "--no-reach", str(ctx.specs_with_rule(NESTED_MAPS)), cap=90)
    if done.capped:
        return Outcome(False, "still running after 90 s (killed)")
    lines = [line for line in done.stdout.splitlines() if "1,000,000" in line]
    held = done.code == 2 and len(lines) == 1 and ".yaml:" in lines[0]
    return Outcome(held, f"exit {done.code}, {len(lines)} cost line(s) in {done.seconds:.1f} s")


@case("a 400 MB spec file", "spec", "2 MiB read per spec file, refused naming the file")
def huge_spec(ctx: Context) -> Outcome:
    specs = ctx.tmp / "specs"
    shutil.copytree(ctx.tree.specs, specs, ignore=shutil.ignore_patterns("__pycache__"))
    path = specs / "vds" / "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"
    with open(path, "wb") as file:
        file.write(b"spec: 1\nsummary: ")
        block = b"x" * (1 << 20)
        for _ in range(400):
            file.write(block)
    done = ctx.run("validate", "--no-reach", str(specs))
    path.unlink()
    held = (
        done.code == 2 and "LogoutFromTarget.yaml" in done.stdout + done.stderr and done.mib < 200
    )
    said = (done.stdout.strip().splitlines() or [""])[0].rsplit(": ", 1)[-1]
    return Outcome(
        held, f"exit {done.code} in {done.seconds:.1f} s, {done.mib:.0f} MiB: {said[:80]}"
    )


@case("a YAML alias bomb", "spec", "aliases refused before expansion, the file named")
def alias_bomb(ctx: Context) -> Outcome:
    specs = ctx.tmp / "specs"
    shutil.copytree(ctx.tree.specs, specs, ignore=shutil.ignore_patterns("__pycache__"))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(9)
    )
    (specs / "vds" / "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml").write_text(bomb)
    done = ctx.run("validate", "--no-reach", str(specs), cap=60)
    held = done.code == 2 and "LogoutFromTarget.yaml" in done.stdout
    return Outcome(held, f"exit {done.code} in {done.seconds:.1f} s")


# -- providers -----------------------------------------------------------------------------------


@case(
    "a provider's forked child keeps the pipes open and hangs",
    "provider",
    "--call-timeout 3 --check-timeout 10; the child killed with the worker",
    needs="posix",
)
def forked_child(ctx: Context) -> Outcome:
    pid_file = ctx.tmp / "child.pid"
    outcome = _provider_case(
        ctx,
        "ForkHangs",
        "timed out after 3 s",
        "--call-timeout",
        "3",
        "--check-timeout",
        "10",
        env={"FORKED_PID_FILE": str(pid_file)},
    )
    with contextlib.suppress(OSError, ValueError):
        child = int(pid_file.read_text(encoding="utf-8"))
        time.sleep(0.5)
        alive = (
            Path(f"/proc/{child}").exists()
            and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
        )
        if alive:
            os.kill(child, signal.SIGKILL)
            return Outcome(False, outcome.result + "; the forked child outlived the run")
    return outcome


@case(
    "a provider logs 4 MB to stderr on every call",
    "provider",
    "no false timeouts (--call-timeout 1) for a conforming provider",
)
def stderr_flood(ctx: Context) -> Outcome:
    done, checks = _run_provider(
        ctx,
        "Noisy",
        "Logoff.yaml or RemovePortal.yaml",
        "--call-timeout",
        "1",
        env={"NOISY_KB": "4096"},
    )
    if done.capped:
        return Outcome(False, f"still running after {CAP:.0f} s (killed)")
    timed_out = [c for c in checks if "timed out" in c["message"]]
    return Outcome(
        bool(checks) and not timed_out, f"{len(timed_out)} of {len(checks)} checks timed out"
    )


@case(
    "a provider allocates without end",
    "provider",
    "--worker-memory 256M; the check fails saying the limit was reached",
    needs="posix",
)
def eats_memory(ctx: Context) -> Outcome:
    return _provider_case(
        ctx,
        "EatsMemory",
        "the worker's limit is 256 MiB",
        "--worker-memory",
        "256M",
        "--call-timeout",
        "20",
    )


@case(
    "a provider's output nests 100,000 deep",
    "provider",
    "the check fails saying why; the worker goes on",
)
def deep_output(ctx: Context) -> Outcome:
    return _provider_case(ctx, "Deep", "cannot be sent")


@case(
    "a provider's output has an object whose repr raises",
    "provider",
    "the check fails saying why; the worker goes on",
)
def bad_repr(ctx: Context) -> Outcome:
    return _provider_case(ctx, "BadRepr", "has no repr")


@case(
    "a provider crashes inside a call",
    "provider",
    "the check fails naming the call; the worker is replaced",
)
def crash_in_call(ctx: Context) -> Outcome:
    return _provider_case(ctx, "Exits", "in call(IVMGuestOS::Logoff)")


@case(
    "a provider's message holds NUL, ESC and markup",
    "provider",
    "report.html shows them escaped, never raw",
)
def control_bytes(ctx: Context) -> Outcome:
    outcome = _provider_case(ctx, "ControlBytes", "bad")
    html = ctx.tmp / "out" / "report.html"
    if not html.is_file():
        return Outcome(False, "no report.html")
    raw = html.read_bytes()
    found = [name for name, byte in (("NUL", b"\x00"), ("ESC", b"\x1b")) if byte in raw]
    held = not found and b"<script>alert(1)" not in raw and outcome.held
    return Outcome(
        held,
        "raw " + " and ".join(found) + " in report.html" if found else "escaped in report.html",
    )


# -- pages ---------------------------------------------------------------------------------------


@case(
    "a page pads its declaration with 60,000 spaces", "page", "extraction linear in the page's size"
)
def padded_declaration(ctx: Context) -> Outcome:
    page = (HERE / "extract" / "fixtures" / "win32_gadget_spin.md").read_text(encoding="utf-8")
    pad = " " * 60_000
    page = page.replace("HRESULT Spin(", f"HRESULT{pad}x Spin\nHRESULT{pad}Spin(").replace(
        "  [in]          long     inTurns,", f"  [in]{pad}long{pad}inTurns,"
    )
    path = ctx.tmp / "win32_padded.md"
    path.write_text(page, encoding="utf-8")
    done = ctx.run("extract", "--no-specs", "--out", str(ctx.tmp / "drafts"), str(path), cap=90)
    if done.capped:
        return Outcome(False, "still running after 90 s (killed)")
    return Outcome(
        done.code in (0, 1) and done.seconds < 10, f"exit {done.code} in {done.seconds:.1f} s"
    )


# -- disks ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _small_disk(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def can_mount() -> bool:
    """Whether this process may mount a small tmpfs (root on Linux, outside a jail)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/conformance-mount-probe-{os.getpid()}")
    try:
        with _small_disk(probe, "64k"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _full_disk(ctx: Context, size: str) -> Outcome:
    """A run whose --out is a disk of `size`: it stops with one line naming the file, and
    results.jsonl holds whole lines only, every one of a check that finished."""
    with _small_disk(ctx.tmp / "disk", size) as disk:
        out = disk / "out"
        done = ctx.run(
            "run",
            "--profile",
            "quick",
            "--in-process",
            "--out",
            str(out),
            "--regressions",
            str(ctx.tmp / "r"),
        )
        stream = out / "results.jsonl"
        text = stream.read_bytes() if stream.is_file() else b""
        whole = not text or text.endswith(b"\n")
        leftovers = sorted(p.name for p in out.glob("*.tmp")) if out.is_dir() else []
        lines = [line for line in done.stderr.splitlines() if line.strip()]
    held = done.code == 2 and whole and not leftovers and len(lines) <= 3
    checks = text.count(b'"event": "check"')
    what = (
        f"exit {done.code}, {len(lines)} stderr lines, {checks} whole check lines kept"
        + ("" if whole else ", a torn line")
        + (f", left {leftovers}" if leftovers else "")
    )
    return Outcome(held, what)


case(
    "the disk is full as the run starts",
    "disk",
    "exit 2 in one line naming the file; no temporary file",
    needs="mount",
)(lambda ctx: _full_disk(ctx, "96k"))
case(
    "the disk fills up half-way through a run",
    "disk",
    "exit 2 in one line; results.jsonl whole lines; no temporary file",
    needs="mount",
)(lambda ctx: _full_disk(ctx, "640k"))


@case(
    "--out on a read-only disk",
    "disk",
    "exit 2 in one line before any provider call",
    needs="mount",
)
def read_only_out(ctx: Context) -> Outcome:
    with _small_disk(ctx.tmp / "ro", "64k", read_only=True) as disk:
        done = ctx.run(
            "run",
            "--profile",
            "quick",
            "--out",
            str(disk / "out"),
            "--regressions",
            str(ctx.tmp / "r"),
            cap=60,
        )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return Outcome(
        done.code == 2 and len(lines) == 1,
        f"exit {done.code}, {len(lines)} stderr lines: {_said(done)[:100]}",
    )


@case(
    "results.jsonl torn inside a UTF-8 character, plus a line that is no record",
    "disk",
    "report skips and names both lines, recovers every whole check",
)
def torn_stream(ctx: Context) -> Outcome:
    out = ctx.tmp / "out"
    ctx.run(
        "run",
        "--profile",
        "quick",
        "--in-process",
        "--out",
        str(out),
        "-k",
        "Logoff.yaml",
        "--regressions",
        str(ctx.tmp / "r"),
    )
    finished = len(_checks(_results(out)))
    stream = out / "results.jsonl"
    data = stream.read_bytes()
    stream.write_bytes(data + b'["not", "a record"]\n{"event": "check", "name": "caf\xc3')
    (out / "results.json").unlink()
    done = ctx.run("report", str(out))
    recovered = len(_checks(_results(out)))
    return Outcome(
        done.code in (0, 1) and recovered == finished,
        f"exit {done.code}: {_said(done)[:110]}",
        finished,
        recovered,
    )


def _kill_parallel(ctx: Context, fraction: float) -> Outcome:
    """Start `run -n 2`, SIGKILL its whole process group once `fraction` of the checks of a
    finished run are in the workers' streams, then `conformance report` the folder."""
    total = _total_checks(ctx)
    out = ctx.tmp / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance",
            "run",
            "-n",
            "2",
            "--profile",
            "quick",
            "--out",
            str(out),
            "--regressions",
            str(ctx.tmp / "r"),
        ],
        cwd=ctx.tmp,
        env=ctx.tree.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    target, deadline = max(1, int(total * fraction)), time.monotonic() + CAP
    while time.monotonic() < deadline and proc.poll() is None:
        if _count_check_lines(out) >= target:
            break
        time.sleep(0.05)
    _kill_group(proc)
    proc.wait()
    finished = _count_check_lines(out)
    ctx.run("report", str(out))
    recovered = len(_checks(_results(out)))
    return Outcome(
        finished > 0 and recovered == finished,
        f"killed at {finished}/{total} checks; report recovered {recovered}",
        finished,
        recovered,
    )


def _count_check_lines(out: Path) -> int:
    """Whole check lines in the run's streams (the workers', or the merged one)."""
    streams = sorted((out / "workers").glob("*.jsonl")) if (out / "workers").is_dir() else []
    if not streams and (out / "results.jsonl").is_file():
        streams = [out / "results.jsonl"]
    count = 0
    for stream in streams:
        with contextlib.suppress(OSError):
            data = stream.read_bytes()
            count += sum(1 for line in data.split(b"\n")[:-1] if b'"event": "check"' in line)
    return count


_TOTAL: dict[Path, int] = {}


def _total_checks(ctx: Context) -> int:
    """How many checks a whole `quick` run makes (one in-process run, once per tree)."""
    if ctx.tree.root not in _TOTAL:
        out = ctx.tmp / "full"
        ctx.run(
            "run",
            "--profile",
            "quick",
            "--in-process",
            "--out",
            str(out),
            "--regressions",
            str(ctx.tmp / "r-full"),
        )
        _TOTAL[ctx.tree.root] = len(_checks(_results(out))) or 500
    return _TOTAL[ctx.tree.root]


for _moment, _fraction in (("early", 0.05), ("half-way", 0.5), ("late", 0.95)):
    case(
        f"kill -9 of a -n 2 run, {_moment}",
        "disk",
        "every check finished before the kill recovered by `conformance report`",
    )(lambda ctx, f=_fraction: _kill_parallel(ctx, f))


# -- agent clients -------------------------------------------------------------------------------

TOKEN = "reliability-corpus-token"


@contextlib.contextmanager
def _agent(
    ctx: Context, *extra: str, provider: str = "reference"
) -> Iterator[tuple[str, int, int]]:
    """`conformance agent --listen 127.0.0.1:0` with a token: (host, port, pid)."""
    token = ctx.tmp / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance",
            "agent",
            "--provider",
            provider,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            str(token),
            "--log-level",
            "ERROR",
            *extra,
        ],
        cwd=ctx.tmp,
        env=ctx.tree.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        host, port = line.strip().rsplit(" ", 1)[-1].rsplit(":", 1)
        yield host, int(port), proc.pid
    finally:
        _kill_group(proc)
        proc.wait()


def _peak_mib(pid: int) -> float:
    return _hwm_kib(Path(f"/proc/{pid}/status")) / 1024


def _ask(sock: socket.socket, reader: Any, message: dict[str, Any]) -> dict[str, Any] | None:
    sock.sendall(json.dumps(message).encode() + b"\n")
    line = reader.readline()
    return json.loads(line) if line else None


def _session(host: str, port: int, timeout: float = 10) -> tuple[socket.socket, Any, bool]:
    """A legitimate client: connect and hello; (socket, reader, welcomed)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    reader = sock.makefile("rb")
    answer = _ask(sock, reader, {"hello": 1, "token": TOKEN, "client": "reliability"})
    return sock, reader, bool(answer and "welcome" in answer)


def _served(host: str, port: int) -> bool:
    """One legitimate request: hello, reset, close."""
    try:
        sock, reader, welcomed = _session(host, port)
        with sock:
            return welcomed and (_ask(sock, reader, {"id": 1, "op": "reset"}) or {}).get("ok")
    except OSError:
        return False


@case(
    "64 slow unauthenticated clients, then 70 legitimate ones",
    "agent",
    "strangers wait in a bounded line (--max-waiting), never in the 64 provider slots",
)
def slow_strangers(ctx: Context) -> Outcome:
    with _agent(ctx) as (host, port, pid):
        strangers = [socket.create_connection((host, port), timeout=5) for _ in range(64)]
        time.sleep(0.3)
        served = sum(_served(host, port) for _ in range(70))
        peak = _peak_mib(pid)
        for sock in strangers:
            sock.close()
    return Outcome(
        served == 70,
        f"{served} of 70 served, {70 - served} refused; agent peak {peak:.0f} MiB",
        extra={"agent_mib": peak},
    )


@case(
    "one authenticated 300 KB batch whose answers grow quadratically",
    "agent",
    "the batch stops once its answers pass --max-message; other clients served meanwhile",
)
def big_batch(ctx: Context) -> Outcome:
    requests: list[dict[str, Any]] = [{"op": "reset"}]
    i = 0
    while len(json.dumps(requests)) < 300_000:
        requests += [
            {"op": "setup", "step": {"target": f"T{i}"}},
            {"op": "observe", "collection": "targets"},
        ]
        i += 1
    with _agent(ctx) as (host, port, pid):
        sock, reader, _ = _session(host, port, timeout=CAP)
        delays: list[float] = []

        def other_client() -> None:
            time.sleep(0.2)
            started = time.monotonic()
            _served(host, port)
            delays.append(time.monotonic() - started)

        helper = threading.Thread(target=other_client)
        helper.start()
        started = time.monotonic()
        with sock:
            try:
                answer = _ask(sock, reader, {"id": 1, "op": "batch", "requests": requests})
            except (OSError, ValueError) as exc:
                answer = {"error": {"message": f"{type(exc).__name__}: {exc}"}}
        seconds = time.monotonic() - started
        helper.join(CAP)
        peak = _peak_mib(pid)
    error = (answer or {}).get("error", {}).get("message", "") if answer else "no answer"
    delay = delays[0] if delays else float("inf")
    held = seconds < 10 and peak < 512 and delay < 5
    return Outcome(
        held,
        f"answered in {seconds:.1f} s ({error[:60] or 'ok'}); agent peak "
        f"{peak:.0f} MiB; another client waited {delay:.1f} s",
        extra={"agent_mib": peak},
    )


@case(
    "provider calls that never return, from 10 then 20 connections",
    "agent",
    "threads stuck in the provider never pass --max-connections 4; the refusal names them",
)
def hung_calls(ctx: Context) -> Outcome:
    with _agent(
        ctx, "--call-timeout", "0.5", "--max-connections", "4", provider=f"{HOSTILE}:Hangs"
    ) as (host, port, pid):
        counts = []
        for _ in range(2):
            for _ in range(10):
                _hang_one(host, port)
            time.sleep(0.5)  # let the agent finish with the refused connections
            counts.append(_threads(pid))
        answer: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            probe = socket.create_connection((host, port), timeout=5)
            with probe:
                answer = _ask(probe, probe.makefile("rb"), {"hello": 1, "token": TOKEN})
    named = "never returned" in json.dumps(answer)
    held = counts[1] <= counts[0] and named
    return Outcome(
        held,
        f"agent threads after 10 hung calls: {counts[0]}, after 20: "
        f"{counts[1]}; "
        + (
            "the refusal names the stuck calls"
            if named
            else f"the next hello got {json.dumps(answer)[:80]}"
        ),
    )


def _hang_one(host: str, port: int) -> None:
    """Connect, and call the method the provider never returns from (the agent times out)."""
    method = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
    with contextlib.suppress(OSError, ValueError):
        sock, reader, welcomed = _session(host, port)
        with sock:
            if welcomed:
                _ask(sock, reader, {"id": 1, "op": "reset"})
                _ask(sock, reader, {"id": 2, "op": "call", "method": method, "args": {}})


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def available(case: Case) -> str | None:
    """Why the case cannot run on this machine, or None."""
    if case.needs == "posix" and os.name != "posix":
        return "needs a POSIX system"
    if case.needs == "mount" and not can_mount():
        return "needs to mount a small tmpfs (root on Linux)"
    return None
