"""The `conformance` command: run, validate, providers.

Exit codes of `run` (stable): 0 the provider conforms, 1 it does not (or no check ran),
2 usage or spec error, 3 provider unavailable.
"""

from __future__ import annotations

import argparse
import sys

from conformance.cli.commands import (
    cmd_diff,
    cmd_doctor,
    cmd_init_provider,
    cmd_providers,
    cmd_regressions,
    cmd_replay,
    cmd_validate,
)
from conformance.cli.run import DEFAULT_CHECK_TIMEOUT, budget_option, cmd_plan, cmd_report, cmd_run
from conformance.errors import EXIT_USAGE, ConformanceError
from conformance.units import memory_size, timeout_seconds

DELEGATED = {
    "extract": "conformance.extract.command",
    "verify-metadata": "conformance.spec.metadata",
    "agent": "conformance.remote.agent",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(argv)
    except ConformanceError as exc:  # its class says the exit status (conformance.errors)
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def dispatch(argv: list[str]) -> int:
    """Run the command `argv` names; its errors rise to `main`."""
    if argv and argv[0] in DELEGATED:  # these parse their own options
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description="Test implementations of Windows API return-code contracts against specs.",
    )
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the checks against a provider")
    run.add_argument(
        "--provider",
        default="reference",
        help="a provider name, pkg.module:Class or path/file.py:Class (default: reference)",
    )
    run.add_argument(
        "--out", default="reports/latest", help="output folder (default: reports/latest)"
    )
    run.add_argument(
        "--profile",
        default=None,
        choices=("quick", "ci", "thorough"),
        help="what the plan covers: quick every rule, code and effect; ci also "
        "conditions, argument classes, faults, repeat and variants; thorough "
        "also drawn cases (default: ci, or the one a replayed cassette was "
        "recorded with)",
    )
    run.add_argument(
        "--explore",
        type=int,
        nargs="?",
        const=200,
        default=None,
        metavar="N",
        help="after the plan, explore: N hypothesis-drawn cases per method "
        "(default 200) and the family state machines, from --seed (drawn "
        "and printed when not given); what fails is saved as a regression "
        "(on in the thorough profile; --explore 0 turns it off)",
    )
    run.add_argument(
        "--regressions",
        default=None,
        metavar="DIR",
        help="where exploration's finds are kept, and replayed from by every run "
        "under the check that found them (default: .conformance/regressions "
        "in the current folder)",
    )
    run.add_argument(
        "--rerun-failed",
        default=None,
        metavar="DIR",
        help="run only the checks that failed or errored in the run in DIR (and "
        "those with saved regressions): the loop of fixing one bug at a time",
    )
    run.add_argument(
        "--compare",
        default=None,
        metavar="OLD_DIR",
        help="compare with the run in OLD_DIR: printed, kept in results.json "
        "(`comparison`) and shown in report.html",
    )
    run.add_argument(
        "--budget",
        type=budget_option,
        default=None,
        metavar="BUDGET",
        help="keep the run within a provider time (90s, 10m, 1h, by the costs "
        "the provider declares) or a number of operations (5000ops): the "
        "planner keeps the cheapest cases, rules and codes first, and says "
        "what it left out",
    )
    run.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME",
        help="only this family's methods and family check (repeatable)",
    )
    run.add_argument(
        "-k",
        dest="keyword",
        default=None,
        help="only checks whose name matches this pytest -k expression",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        help="make the drawn cases reproducible (a replayed cassette gives its own)",
    )
    run.add_argument(
        "--specs",
        nargs="+",
        default=None,
        help="spec files or folders (default: the bundled specs)",
    )
    run.add_argument(
        "--code-page",
        default=None,
        help="the ANSI code page of A entry points (default: cp1252, or a replayed cassette's)",
    )
    run.add_argument(
        "--observed",
        default="strict",
        choices=("strict", "lenient"),
        help="lenient: a result a spec records under `observed` for the Windows "
        "version the provider declares passes, marked as observed; never for "
        "a provider that declares none, such as the reference (default: "
        "strict, a departure fails like any wrong code)",
    )
    run.add_argument(
        "--in-process",
        action="store_true",
        help="load the provider into the harness's own process (for debugging): "
        "by default a provider given by name, module or file runs in a "
        "worker process (the agent over stdio), so that a hang or a crash "
        "fails only the check in flight and the worker is replaced",
    )
    run.add_argument(
        "--isolate", action="store_true", help=argparse.SUPPRESS
    )  # the default now; kept for old command lines
    run.add_argument(
        "--call-timeout",
        type=timeout_seconds,
        default=30.0,
        metavar="S",
        help="seconds a provider call may take in the worker process (default 30; 0: no limit)",
    )
    run.add_argument(
        "--worker-memory",
        type=memory_size,
        default=0,
        metavar="SIZE",
        help="address space the worker process may use (512M, 2G); a provider "
        "call past it fails its check saying so (default 0: no limit)",
    )
    run.add_argument(
        "--check-timeout",
        type=timeout_seconds,
        default=DEFAULT_CHECK_TIMEOUT,
        metavar="S",
        help="seconds a check may take, all its calls included "
        f"(default {DEFAULT_CHECK_TIMEOUT:g}; 0: no limit)",
    )
    run.add_argument(
        "--token-file",
        default=None,
        help="the agent's token, for remote+tcp:// and remote+stdio: providers",
    )
    run.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write every exchange with the provider to a JSONL cassette, filed "
        "by check, with the run's seed (one is drawn if --seed is not given) "
        "and profile; with -n N each worker records its part and FILE gets "
        "them merged. Play it back with --provider replay:FILE",
    )
    run.add_argument(
        "--baseline",
        default=None,
        metavar="FILE",
        help="known deviations (and flaky checks) that do not fail the run",
    )
    run.add_argument(
        "--write-baseline",
        default=None,
        metavar="FILE",
        help="write this run's failures as a baseline",
    )
    run.add_argument(
        "--allure",
        action="store_true",
        help="also render the Allure 3 HTML report into DIR/allure-report",
    )
    run.add_argument(
        "--differential",
        action="store_true",
        help="also compare the provider with the reference on the same draws",
    )
    run.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 unless the run conforms (a partial run exits 0 otherwise)",
    )
    run.add_argument(
        "-n",
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run the checks in N processes (pytest-xdist); with --provider "
        "P1,P2,... each worker takes its own provider (one agent per host)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output")
    run.set_defaults(handler=cmd_run)

    dif = sub.add_parser(
        "diff",
        help="compare two runs: newly failing and passing checks, "
        "verdicts and codes per method, operations",
    )
    dif.add_argument("old", help="the earlier run's output folder")
    dif.add_argument("new", help="the later run's output folder")
    dif.add_argument("--json", action="store_true")
    dif.set_defaults(handler=cmd_diff)

    reg = sub.add_parser(
        "regressions",
        help="list the regressions exploration saved; with "
        "--provider, replay each and say which are fixed",
    )
    reg.add_argument(
        "--regressions",
        default=None,
        metavar="DIR",
        help="the folder (default: .conformance/regressions here)",
    )
    reg.add_argument("--provider", default=None, help="replay each against this provider")
    reg.add_argument("--specs", nargs="+", default=None)
    reg.add_argument("--token-file", default=None)
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(handler=cmd_regressions)

    pln = sub.add_parser(
        "plan",
        help="print the run's plan (cases, coverage, operations, "
        "estimated time) without running anything",
    )
    pln.add_argument(
        "--provider",
        default="reference",
        help="the provider whose capabilities and costs the plan is made for",
    )
    pln.add_argument("--profile", default="ci", choices=("quick", "ci", "thorough"))
    pln.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME",
        help="only this family's methods and family check (repeatable)",
    )
    pln.add_argument(
        "-k",
        dest="keyword",
        default=None,
        help="only checks whose name matches this pytest -k expression",
    )
    pln.add_argument(
        "--seed",
        type=int,
        default=None,
        help="accepted as run takes it; the plan never depends on it",
    )
    pln.add_argument(
        "--budget",
        type=budget_option,
        default=None,
        metavar="BUDGET",
        help="a time (10m) or a number of operations (5000ops) to plan within",
    )
    pln.add_argument("--specs", nargs="+", default=None)
    pln.add_argument("--differential", action="store_true")
    pln.add_argument(
        "--in-process",
        action="store_true",
        help="load the provider into this process to ask its capabilities",
    )
    pln.add_argument("--token-file", default=None)
    pln.add_argument(
        "--cases",
        action="store_true",
        help="also list every planned case in the spec's scenario shape",
    )
    pln.add_argument("--json", action="store_true", help="the plan as JSON, for tools")
    pln.set_defaults(handler=cmd_plan)

    val = sub.add_parser("validate", help="check spec files; exit 2 listing every problem")
    val.add_argument("paths", nargs="*", help="spec files or folders (default: bundled specs)")
    val.add_argument(
        "--no-reach",
        action="store_true",
        help="skip the search for rules no case can make the first to match",
    )
    val.set_defaults(handler=cmd_validate)

    rpt = sub.add_parser(
        "report",
        help="rebuild results.json and the reports of a run folder "
        "from its results.jsonl (also after a killed run)",
    )
    rpt.add_argument("out", help="the run's output folder")
    rpt.add_argument("--allure", action="store_true", help="also render the Allure 3 report")
    rpt.add_argument("--specs", nargs="+", default=None)
    rpt.set_defaults(handler=cmd_report)

    rep = sub.add_parser(
        "replay", help="run a reproduction again: exit 1 while it still fails, 0 once fixed"
    )
    rep.add_argument("file", help="a reproduction YAML (DIR/repro/<check>.yaml)")
    rep.add_argument("--provider", default="reference")
    rep.add_argument("--token-file", default=None)
    rep.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME",
        help="only this family's methods and family check (repeatable)",
    )
    rep.add_argument("--specs", nargs="+", default=None)
    rep.add_argument("--code-page", default="cp1252")
    rep.set_defaults(handler=cmd_replay)

    doc = sub.add_parser(
        "doctor",
        help="try a provider's capabilities, steps and observe on an empty world, before a run",
    )
    doc.add_argument("--provider", default="reference")
    doc.add_argument(
        "--family",
        action="append",
        default=None,
        metavar="NAME",
        help="only this family's methods and family check (repeatable)",
    )
    doc.add_argument("--specs", nargs="+", default=None)
    doc.set_defaults(handler=cmd_doctor)

    init = sub.add_parser("init-provider", help="write a provider package skeleton")
    init.add_argument("name", help="the provider's name (a Python identifier)")
    init.add_argument(
        "--family", action="append", default=None, help="families it will implement (default: all)"
    )
    init.add_argument("--out", default=".", help="folder to create the package in")
    init.set_defaults(handler=cmd_init_provider)

    sub.add_parser("agent", help="serve a provider over TCP or stdio (agent --help)")
    sub.add_parser("extract", help="draft specs from documentation pages (extract --help)")
    sub.add_parser(
        "verify-metadata",
        help="check specs against Microsoft's win32metadata (verify-metadata --help)",
    )

    prov = sub.add_parser("providers", help="list installed providers and their capabilities")
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(handler=cmd_providers)
    return parser
