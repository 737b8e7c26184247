"""Remote vs in-process: the whole suite through `conformance agent` on loopback, timed.

    python benchmarks/remote_ratio.py [--profile quick|ci] [--no-stdio] [-k EXPR] [--rounds N]

Runs `conformance run --provider reference --in-process`, then through an agent over TCP on
127.0.0.1 (`--provider remote+tcp://127.0.0.1:PORT`) and over stdio (the default isolated run:
the worker is `conformance agent --stdio`), each as its own process with the same seed, and
reports the wall times, the remote/in-process ratio (goal: at most 1.5x) and whether every
check's verdict (status, per-code results, method verdicts) and message came out the same.
Rounds are interleaved and the median kept, so a machine whose load changes moves every side
alike.
Writes reports/benchmarks-remote.json:
{"figures": [{"name", "value", "unit", "goal", "met", "note"}], "runs": {...}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.5


def start_agent() -> tuple[subprocess.Popen[str], str]:
    """`conformance agent` on 127.0.0.1, any free port: the process and its address."""
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance.remote.agent",
            "--provider",
            "reference",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert agent.stdout is not None
    line = agent.stdout.readline().strip()
    if not line.startswith("listening on "):
        agent.kill()
        raise RuntimeError(f"the agent did not start: {line!r}")
    return agent, line.split()[-1]


SIDES = {  # side -> the `conformance run` options that select it ({address}: the TCP agent)
    "in-process": ["--provider", "reference", "--in-process"],
    "tcp": ["--provider", "remote+tcp://{address}"],
    "stdio": ["--provider", "reference"],  # isolation is the default: an agent over stdio
}


def timed_run(options: list[str], out: Path, profile: str, keyword: str | None) -> float:
    """Wall seconds of one `conformance run` process (exit 0 or 1 both count: it finished)."""
    argv = [
        sys.executable,
        "-m",
        "conformance",
        "run",
        *options,
        "--out",
        str(out),
        "--profile",
        profile,
        "--seed",
        "1",
    ]
    if keyword:
        argv += ["-k", keyword]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(options)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return elapsed


def verdicts(out: Path) -> dict[str, Any]:
    """Each check's status and message, each method's verdict: what must not depend on where
    the provider runs."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    groups = [*results["methods"].values(), *results.get("families", {}).values()]
    return {
        "checks": {c["name"]: [c["status"], c["message"]] for g in groups for c in g["checks"]},
        "methods": {k: [m["verdict"], m["codes"]] for k, m in results["methods"].items()},
    }


def differences(a: dict[str, Any], b: dict[str, Any], part: int | None = None) -> list[str]:
    """Checks (and methods) whose outcome differs; part 0 compares statuses only, part 1
    messages only, None both."""

    def pick(value: Any) -> Any:
        return value if value is None or part is None else value[part]

    names = sorted(set(a["checks"]) | set(b["checks"]))
    checks = [n for n in names if pick(a["checks"].get(n)) != pick(b["checks"].get(n))]
    if part == 1:
        return checks
    return checks + [
        m
        for m in sorted(set(a["methods"]) | set(b["methods"]))
        if a["methods"].get(m) != b["methods"].get(m)
    ]


def measure(
    profile: str = "quick", keyword: str | None = None, rounds: int = 1, stdio: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(figures, runs): each remote side against in-process, rounds interleaved."""
    agent, address = start_agent()
    sides = {
        side: [o.format(address=address) for o in options]
        for side, options in SIDES.items()
        if stdio or side != "stdio"
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            times: dict[str, list[float]] = {side: [] for side in sides}
            seen: dict[str, dict[str, Any]] = {}
            for round_ in range(rounds):
                for side, options in sides.items():
                    out = Path(tmp) / f"{side}-{round_}"
                    times[side].append(timed_run(options, out, profile, keyword))
                    seen[side] = verdicts(out)
                    print(f"round {round_ + 1}: {side:<10} {times[side][-1]:7.2f} s", flush=True)
    finally:
        agent.terminate()
        agent.wait(timeout=10)

    base = statistics.median(times["in-process"])
    figures, runs = [], {}
    for side in sides:
        wall = statistics.median(times[side])
        diff = differences(seen["in-process"], seen[side], 0)
        worded = differences(seen["in-process"], seen[side], 1)
        runs[side] = {
            "wall_s": round(wall, 3),
            "checks": len(seen[side]["checks"]),
            "same_verdicts_as_in_process": not diff,
            "differing": diff[:20],
            "messages_differing": worded[:20],
        }
        if side == "in-process":
            continue
        ratio = wall / base
        label = "remote" if side == "tcp" else "remote over stdio (the isolated default)"
        figures.append(
            {
                "name": f"{label} vs in-process ({profile} profile)",
                "value": round(ratio, 3),
                "unit": "x",
                "goal": f"<= {GOAL}",
                "met": ratio <= GOAL and not diff,
                "note": f"{wall:.2f} s vs {base:.2f} s wall, {len(seen[side]['checks'])} checks, "
                f"verdicts {'identical' if not diff else f'differ on {len(diff)}'}, "
                f"messages differ on {len(worded)}",
            }
        )
        print(
            f"{side}: {wall:.2f} s vs in-process {base:.2f} s = {ratio:.2f}x (goal <= {GOAL}x); "
            f"verdicts {'identical' if not diff else 'DIFFER: ' + ', '.join(diff[:5])}; "
            f"messages differ on {', '.join(worded[:5]) or 'none'}",
            flush=True,
        )
    return figures, runs


def figures(quick: bool) -> list[dict[str, Any]]:
    """The figures for benchmarks/run.py: the quick profile with --quick, else the ci one."""
    return measure("quick" if quick else "ci", rounds=1 if quick else 2)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=("quick", "ci", "thorough"))
    parser.add_argument("-k", dest="keyword", default=None, help="a pytest -k selection")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-stdio", dest="stdio", action="store_false")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks-remote.json"))
    args = parser.parse_args(argv)
    figures, runs = measure(args.profile, args.keyword, args.rounds, args.stdio)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"figures": figures, "runs": runs}, indent=2) + "\n", encoding="utf-8"
    )
    print(f"written: {args.out}")
    return 0 if all(r["same_verdicts_as_in_process"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
