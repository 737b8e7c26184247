"""The `conformance` command: run, validate, providers.

Exit codes of `run` (stable): 0 the provider conforms, 1 it does not (or no check ran),
2 usage or spec error, 3 provider unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILS, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
DEFAULT_CHECK_TIMEOUT = 300.0  # as conformance.engine.budget (not imported: keep `--help` light)


def budget_option(text: str) -> Any:
    """--budget: a time or a number of operations (conformance.engine.operations.parse_budget)."""
    from conformance.engine.operations import parse_budget

    try:
        return parse_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def timeout_seconds(text: str) -> float:
    """A timeout option: seconds >= 0, where 0 means no limit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("a timeout is a number of seconds >= 0 (0: no limit)")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def memory_size(text: str) -> int:
    """A memory option: bytes, or a number with K, M or G (binary units); 0 means no limit."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (512M, 2G, or bytes)")
    size = int(found.group(1)) * _SIZE_UNITS[found.group(2).upper()]
    if 0 < size < 64 << 20:
        raise argparse.ArgumentTypeError("a worker's memory limit is at least 64M "
                                         "(the worker's Python itself needs about 40M)")
    return size


DELEGATED = {"extract": "conformance.extract", "verify-metadata": "conformance.spec.metadata",
             "agent": "conformance.remote.agent"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:  # these parse their own options
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description="Test implementations of Windows API return-code contracts against specs.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the checks against a provider")
    run.add_argument("--provider", default="reference",
                     help="a provider name, pkg.module:Class or path/file.py:Class "
                          "(default: reference)")
    run.add_argument("--out", default="reports/latest", help="output folder "
                                                             "(default: reports/latest)")
    run.add_argument("--profile", default=None, choices=("quick", "ci", "thorough"),
                     help="what the plan covers: quick every rule, code and effect; ci also "
                          "conditions, argument classes, faults, repeat and variants; thorough "
                          "also drawn cases (default: ci, or the one a replayed cassette was "
                          "recorded with)")
    run.add_argument("--explore", type=int, nargs="?", const=200, default=None, metavar="N",
                     help="after the plan, explore: N hypothesis-drawn cases per method "
                          "(default 200) and the family state machines, from --seed (drawn "
                          "and printed when not given); what fails is saved as a regression "
                          "(on in the thorough profile; --explore 0 turns it off)")
    run.add_argument("--regressions", default=None, metavar="DIR",
                     help="where exploration's finds are kept, and replayed from by every run "
                          "under the check that found them (default: .conformance/regressions "
                          "in the current folder)")
    run.add_argument("--rerun-failed", default=None, metavar="DIR",
                     help="run only the checks that failed or errored in the run in DIR (and "
                          "those with saved regressions): the loop of fixing one bug at a time")
    run.add_argument("--compare", default=None, metavar="OLD_DIR",
                     help="compare with the run in OLD_DIR: printed, kept in results.json "
                          "(`comparison`) and shown in report.html")
    run.add_argument("--budget", type=budget_option, default=None, metavar="BUDGET",
                     help="keep the run within a provider time (90s, 10m, 1h, by the costs "
                          "the provider declares) or a number of operations (5000ops): the "
                          "planner keeps the cheapest cases, rules and codes first, and says "
                          "what it left out")
    run.add_argument("--family", action="append", default=None, metavar="NAME",
                     help="only this family's methods and family check (repeatable)")
    run.add_argument("-k", dest="keyword", default=None,
                     help="only checks whose name matches this pytest -k expression")
    run.add_argument("--seed", type=int, default=None,
                     help="make the drawn cases reproducible (a replayed cassette gives its own)")
    run.add_argument("--specs", nargs="+", default=None,
                     help="spec files or folders (default: the bundled specs)")
    run.add_argument("--code-page", default=None,
                     help="the ANSI code page of A entry points (default: cp1252, or a replayed "
                          "cassette's)")
    run.add_argument("--observed", default="strict", choices=("strict", "lenient"),
                     help="lenient: a result a spec records under `observed` for the Windows "
                          "version the provider declares passes, marked as observed; never for "
                          "a provider that declares none, such as the reference (default: "
                          "strict, a departure fails like any wrong code)")
    run.add_argument("--in-process", action="store_true",
                     help="load the provider into the harness's own process (for debugging): "
                          "by default a provider given by name, module or file runs in a "
                          "worker process (the agent over stdio), so that a hang or a crash "
                          "fails only the check in flight and the worker is replaced")
    run.add_argument("--isolate", action="store_true",
                     help=argparse.SUPPRESS)  # the default now; kept for old command lines
    run.add_argument("--call-timeout", type=timeout_seconds, default=30.0, metavar="S",
                     help="seconds a provider call may take in the worker process "
                          "(default 30; 0: no limit)")
    run.add_argument("--worker-memory", type=memory_size, default=0, metavar="SIZE",
                     help="address space the worker process may use (512M, 2G); a provider "
                          "call past it fails its check saying so (default 0: no limit)")
    run.add_argument("--check-timeout", type=timeout_seconds, default=DEFAULT_CHECK_TIMEOUT,
                     metavar="S", help="seconds a check may take, all its calls included "
                                       f"(default {DEFAULT_CHECK_TIMEOUT:g}; 0: no limit)")
    run.add_argument("--token-file", default=None,
                     help="the agent's token, for remote+tcp:// and remote+stdio: providers")
    run.add_argument("--record", default=None, metavar="FILE",
                     help="write every exchange with the provider to a JSONL cassette, filed "
                          "by check, with the run's seed (one is drawn if --seed is not given) "
                          "and profile; with -n N each worker records its part and FILE gets "
                          "them merged. Play it back with --provider replay:FILE")
    run.add_argument("--baseline", default=None, metavar="FILE",
                     help="known deviations (and flaky checks) that do not fail the run")
    run.add_argument("--write-baseline", default=None, metavar="FILE",
                     help="write this run's failures as a baseline")
    run.add_argument("--allure", action="store_true",
                     help="also render the Allure 3 HTML report into DIR/allure-report")
    run.add_argument("--differential", action="store_true",
                     help="also compare the provider with the reference on the same draws")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 unless the run conforms (a partial run exits 0 otherwise)")
    run.add_argument("-n", "--workers", type=int, default=0, metavar="N",
                     help="run the checks in N processes (pytest-xdist); with --provider "
                          "P1,P2,... each worker takes its own provider (one agent per host)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output")
    run.set_defaults(handler=cmd_run)

    dif = sub.add_parser("diff", help="compare two runs: newly failing and passing checks, "
                                      "verdicts and codes per method, operations")
    dif.add_argument("old", help="the earlier run's output folder")
    dif.add_argument("new", help="the later run's output folder")
    dif.add_argument("--json", action="store_true")
    dif.set_defaults(handler=cmd_diff)

    reg = sub.add_parser("regressions", help="list the regressions exploration saved; with "
                                             "--provider, replay each and say which are fixed")
    reg.add_argument("--regressions", default=None, metavar="DIR",
                     help="the folder (default: .conformance/regressions here)")
    reg.add_argument("--provider", default=None, help="replay each against this provider")
    reg.add_argument("--specs", nargs="+", default=None)
    reg.add_argument("--token-file", default=None)
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(handler=cmd_regressions)

    pln = sub.add_parser("plan", help="print the run's plan (cases, coverage, operations, "
                                      "estimated time) without running anything")
    pln.add_argument("--provider", default="reference",
                     help="the provider whose capabilities and costs the plan is made for")
    pln.add_argument("--profile", default="ci", choices=("quick", "ci", "thorough"))
    pln.add_argument("--family", action="append", default=None, metavar="NAME",
                     help="only this family's methods and family check (repeatable)")
    pln.add_argument("-k", dest="keyword", default=None,
                     help="only checks whose name matches this pytest -k expression")
    pln.add_argument("--seed", type=int, default=None,
                     help="accepted as run takes it; the plan never depends on it")
    pln.add_argument("--budget", type=budget_option, default=None, metavar="BUDGET",
                     help="a time (10m) or a number of operations (5000ops) to plan within")
    pln.add_argument("--specs", nargs="+", default=None)
    pln.add_argument("--differential", action="store_true")
    pln.add_argument("--in-process", action="store_true",
                     help="load the provider into this process to ask its capabilities")
    pln.add_argument("--token-file", default=None)
    pln.add_argument("--cases", action="store_true",
                     help="also list every planned case in the spec's scenario shape")
    pln.add_argument("--json", action="store_true", help="the plan as JSON, for tools")
    pln.set_defaults(handler=cmd_plan)

    val = sub.add_parser("validate", help="check spec files; exit 2 listing every problem")
    val.add_argument("paths", nargs="*", help="spec files or folders (default: bundled specs)")
    val.add_argument("--no-reach", action="store_true",
                     help="skip the search for rules no case can make the first to match")
    val.set_defaults(handler=cmd_validate)

    rpt = sub.add_parser("report", help="rebuild results.json and the reports of a run folder "
                                        "from its results.jsonl (also after a killed run)")
    rpt.add_argument("out", help="the run's output folder")
    rpt.add_argument("--allure", action="store_true", help="also render the Allure 3 report")
    rpt.add_argument("--specs", nargs="+", default=None)
    rpt.set_defaults(handler=cmd_report)

    rep = sub.add_parser("replay", help="run a reproduction again: exit 1 while it still "
                                        "fails, 0 once fixed")
    rep.add_argument("file", help="a reproduction YAML (DIR/repro/<check>.yaml)")
    rep.add_argument("--provider", default="reference")
    rep.add_argument("--token-file", default=None)
    rep.add_argument("--family", action="append", default=None, metavar="NAME",
                     help="only this family's methods and family check (repeatable)")
    rep.add_argument("--specs", nargs="+", default=None)
    rep.add_argument("--code-page", default="cp1252")
    rep.set_defaults(handler=cmd_replay)

    doc = sub.add_parser("doctor", help="try a provider's capabilities, steps and observe on "
                                        "an empty world, before a run")
    doc.add_argument("--provider", default="reference")
    doc.add_argument("--family", action="append", default=None, metavar="NAME",
                     help="only this family's methods and family check (repeatable)")
    doc.add_argument("--specs", nargs="+", default=None)
    doc.set_defaults(handler=cmd_doctor)

    init = sub.add_parser("init-provider", help="write a provider package skeleton")
    init.add_argument("name", help="the provider's name (a Python identifier)")
    init.add_argument("--family", action="append", default=None,
                      help="families it will implement (default: all)")
    init.add_argument("--out", default=".", help="folder to create the package in")
    init.set_defaults(handler=cmd_init_provider)

    sub.add_parser("agent", help="serve a provider over TCP or stdio (agent --help)")
    sub.add_parser("extract", help="draft specs from documentation pages (extract --help)")
    sub.add_parser("verify-metadata",
                   help="check specs against Microsoft's win32metadata (verify-metadata --help)")

    prov = sub.add_parser("providers", help="list installed providers and their capabilities")
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(handler=cmd_providers)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    from conformance.spec.catalog import load_catalog
    from conformance.spec.source import SourceError

    try:
        catalog = load_catalog(args.paths or None)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    codes = sum(len(s.codes) for s in catalog.specs.values())
    from conformance.spec.validate import cost_warnings

    warnings = cost_warnings(catalog)
    if not args.no_reach:
        from conformance.engine.plan import rule_warnings

        warnings += rule_warnings(catalog)
    for warning in warnings:
        print(warning)
    print(f"{len(catalog.specs)} specs, {codes} documented codes, "
          f"{len(catalog.domains)} domains: valid"
          + (f", {len(warnings)} warning(s)" if warnings else ""))
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.engine.checks import Settings
    from conformance.engine.replay import ReproError, load_repro, replay

    try:
        repro = load_repro(args.file)
    except ReproError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    loaded = _catalog_and_provider(args.specs, args.family, args.provider, args.token_file)
    if isinstance(loaded, int):
        return loaded
    catalog, provider = loaded
    try:
        result = replay(repro, catalog, provider, Settings(code_page=args.code_page))
    except ReproError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    finally:
        provider.close()
    print(("FIXED: " if result.passed else "STILL FAILS: ") + result.message)
    return EXIT_OK if result.passed else EXIT_FAILS


def cmd_doctor(args: argparse.Namespace) -> int:
    from conformance.cli.doctor import RAISED, diagnose, render

    loaded = _catalog_and_provider(args.specs, args.family, args.provider, None)
    if isinstance(loaded, int):
        return loaded
    catalog, provider = loaded
    try:
        rows = diagnose(provider, catalog)
    finally:
        provider.close()
    print(f"provider {args.provider}")
    print(render(rows))
    return EXIT_FAILS if any(r.status == RAISED for r in rows) else EXIT_OK


def cmd_init_provider(args: argparse.Namespace) -> int:
    from conformance.cli.scaffold import ScaffoldError, write_skeleton
    from conformance.spec.catalog import load_catalog

    catalog = load_catalog()
    try:
        where = write_skeleton(args.name, Path(args.out), catalog, args.family)
    except ScaffoldError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {where}")
    print(f"next: pip install -e {where} && conformance run --provider {args.name}")
    return EXIT_OK


def cmd_providers(args: argparse.Namespace) -> int:
    from conformance.provider import ProviderUnavailable, available, load

    listing: dict[str, Any] = {}
    for name, target in sorted(available().items()):
        try:
            provider = load(name)
            listing[name] = {"target": target, "capabilities": provider.capabilities()}
            provider.close()
        except (ProviderUnavailable, Exception) as exc:
            listing[name] = {"target": target, "error": str(exc)}
    if args.json:
        print(json.dumps(listing, indent=2))
        return EXIT_OK
    for name, info in listing.items():
        print(f"{name}  ({info['target']})")
        if "error" in info:
            print(f"  unavailable: {info['error']}")
            continue
        for key, values in info["capabilities"].items():
            shown = ", ".join(map(str, values)) if isinstance(values, list) else values
            print(f"  {key}: {shown}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from conformance.engine.regressions import RegressionError
    from conformance.provider import ProviderUnavailable, load
    from conformance.remote.client import is_local, isolated
    from conformance.reporting.results import run_verdict
    from conformance.runner.plugin import ConformanceSession
    from conformance.spec.source import SourceError

    if args.isolate and args.in_process:
        print("--isolate and --in-process contradict each other (isolation is the default)",
              file=sys.stderr)
        return EXIT_USAGE
    isolate = not args.in_process
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"--out {args.out}: exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    problem = _unwritable(Path(args.out))
    if problem:
        print(f"--out {args.out}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    catalog = _catalog(args.specs, args.family)
    if catalog is None:
        return EXIT_USAGE
    try:
        baseline = _load_baseline(args.baseline)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    first = args.provider.split(",")[0]
    try:
        provider = load(isolated(first, args.call_timeout, args.worker_memory)
                        if isolate else first,
                        token_file=args.token_file)
        problem = _run_settings(args, provider)
        if problem:
            print(problem, file=sys.stderr)
            return EXIT_USAGE
        if args.record:
            from conformance.remote.client import RecordingProvider

            provider = RecordingProvider(
                provider, args.record, parts=bool(args.workers),
                header={"profile": args.profile, "seed": args.seed, "code_page": args.code_page})
        session = ConformanceSession(catalog, provider, args.provider, Path(args.out),
                                     args.profile, args.seed, args.code_page, args.differential,
                                     args.check_timeout, observed=args.observed,
                                     budget=args.budget, explore=args.explore,
                                     regressions=_folder(args.regressions))
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {_unavailable(exc, isolate and is_local(first))}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RegressionError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if baseline is not None:
        session.retry = {e.check for e in baseline.flaky}
    if args.rerun_failed:
        from conformance.reporting.diff import DiffError, checks_of, load_run

        try:
            earlier = load_run(Path(args.rerun_failed))
        except DiffError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        session.only = {n for n, c in checks_of(earlier).items()
                        if c.get("status") in ("failed", "error")} | set(session.regressions)
        print(f"re-running {len(session.only)} check(s) that failed in {args.rerun_failed} "
              "or have saved regressions", file=sys.stderr)
    pytest_args = pytest_selection(catalog, args.keyword, args.verbose)
    session.show_progress = None if not args.verbose else False
    session.show_plan = True
    if args.workers:
        shutil.rmtree(Path(args.out) / "workers", ignore_errors=True)
        pytest_args += ["-p", "xdist", "-n", str(args.workers), "--dist", "loadfile",
                        "--no-loadscope-reorder",
                        "--conformance-provider",
                        args.provider, "--conformance-out", args.out, "--conformance-profile",
                        args.profile, "--conformance-code-page", args.code_page]
        pytest_args += ["--conformance-seed", str(args.seed)] if args.seed is not None else []
        pytest_args += ["--conformance-differential"] if args.differential else []
        pytest_args += ["--conformance-token-file", args.token_file] if args.token_file else []
        pytest_args += ["--conformance-check-timeout", str(args.check_timeout)]
        pytest_args += ["--conformance-observed", args.observed]
        pytest_args += ["--conformance-budget", args.budget.source] if args.budget else []
        pytest_args += ["--conformance-explore", str(args.explore)] \
            if args.explore is not None else []
        pytest_args += ["--conformance-regressions", args.regressions] if args.regressions \
            else []
        pytest_args += ["--conformance-rerun-failed", args.rerun_failed] if args.rerun_failed \
            else []
        pytest_args += ["--conformance-record", args.record] if args.record else []
        pytest_args += ["--conformance-isolate", "--conformance-call-timeout",
                        str(args.call_timeout), "--conformance-worker-memory",
                        str(args.worker_memory)] if isolate else []
    code = pytest.main(pytest_args, plugins=[session])
    if session.write_error is not None:
        print(session.write_error, file=sys.stderr)
        return EXIT_USAGE
    if session.summary is None:
        print(f"the run did not start (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_USAGE if code == pytest.ExitCode.USAGE_ERROR else EXIT_FAILS
    out = Path(args.out)
    gate = _gate(session.summary, baseline, args.baseline, out) if baseline is not None \
        else None
    if args.compare:
        comparison = _compare(session.summary, args.compare, out)
        if comparison is not None:
            from conformance.reporting.diff import render

            print(render(comparison))
    _write_reports(session.summary, out, catalog, args.allure)
    verdict = run_verdict(session.summary)
    print_summary(session.summary, verdict, out)
    if args.write_baseline:
        from conformance.reporting.baseline import write_baseline

        print(f"baseline: {write_baseline(session.summary, args.write_baseline, keep=baseline)}")
    if gate is not None:
        for line in gate.lines(args.baseline):
            print(line, file=sys.stderr)
        print(gate.headline())
        return gate.exit_code
    t = session.summary["totals"]
    if t["passed"] + t["failed"] + t["errors"] == 0:
        print("no check ran: nothing was tested", file=sys.stderr)
        return EXIT_FAILS
    if args.strict and verdict != "conforms":
        return EXIT_FAILS
    return EXIT_FAILS if verdict == "fails" else EXIT_OK


def pytest_selection(catalog: Any, keyword: str | None, verbose: bool = False) -> list[str]:
    """The pytest arguments that collect a catalog's checks (and select them with -k)."""
    families = {s.family for s in catalog.specs.values()}
    # The family files first: a family's planned sequences are the longest checks, and with
    # -n (files handed out in this order, --no-loadscope-reorder) they start at once on
    # different workers instead of queuing behind each other at the end.
    files = sorted(d.file for d in catalog.domains.values() if d.family in families) + \
        sorted({s.file for s in catalog.specs.values()})
    pytest_args = [*collection_args(files), "-p", "no:cacheprovider", "-p", "no:randomly",
                   "-p", "no:benchmark", "--rootdir",
                   str(catalog.root or Path.cwd()), "-c", os.devnull,
                   "-o", "python_files=", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest_args += ["-v", "--no-header", "-rN"] if verbose else ["-p", "no:terminal"]
    if keyword:
        pytest_args += ["-k", keyword]
    return pytest_args


def cmd_diff(args: argparse.Namespace) -> int:
    """`conformance diff OLD NEW`: exit 1 when a check is newly failing, else 0."""
    from conformance.reporting.diff import DiffError, compare, load_run, render

    try:
        diff = compare(load_run(Path(args.old)), load_run(Path(args.new)), args.old, args.new)
    except DiffError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(diff, indent=2, ensure_ascii=False) if args.json else render(diff))
    return EXIT_FAILS if diff["newly_failing"] else EXIT_OK


def cmd_regressions(args: argparse.Namespace) -> int:
    """`conformance regressions`: each saved case, its check, where and when it was found;
    with --provider, whether it still fails (exit 1 while one does)."""
    from conformance.engine.regressions import DEFAULT_FOLDER, RegressionError, load

    folder = Path(args.regressions) if args.regressions else Path.cwd() / DEFAULT_FOLDER
    try:
        saved = load(folder)
    except RegressionError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    statuses: dict[str, str] = {}
    if args.provider and saved:
        code = _replay_all(args, saved, statuses)
        if code is not None:
            return code
    rows = [{"file": str(r.path), "check": r.check, "found": r.found, "seed": r.seed,
             "provider": r.provider, "message": r.message,
             **({"status": statuses[r.name]} if r.name in statuses else {})} for r in saved]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(f"{len(rows)} regression(s) in {folder}")
        for row in rows:
            status = f"  [{row['status']}]" if "status" in row else ""
            print(f"{row['file']}{status}\n  {row['check']}  found {row['found'] or '?'} "
                  f"by {row['provider'] or '?'} with --seed {row['seed']}\n  {row['message']}")
    return EXIT_FAILS if "still fails" in statuses.values() else EXIT_OK


def _replay_all(args: argparse.Namespace, saved: list[Any], statuses: dict[str, str]
                ) -> int | None:
    from conformance.engine.checks import Settings
    from conformance.engine.replay import ReproError, replay

    loaded = _catalog_and_provider(args.specs, None, args.provider, args.token_file)
    if isinstance(loaded, int):
        return loaded
    catalog, provider = loaded
    try:
        for regression in saved:
            try:
                result = replay(regression.repro, catalog, provider, Settings())
                statuses[regression.name] = "fixed" if result.passed else "still fails"
            except ReproError as exc:
                statuses[regression.name] = f"cannot replay: {exc}"
    finally:
        provider.close()
    return None


def cmd_plan(args: argparse.Namespace) -> int:
    """`conformance plan`: the run's plan, made with the oracle alone; nothing is executed
    (the provider is asked for its capabilities only)."""
    import pytest

    from conformance.provider import ProviderUnavailable, load
    from conformance.remote.client import is_local, isolated
    from conformance.runner.plugin import ConformanceSession

    catalog = _catalog(args.specs, args.family)
    if catalog is None:
        return EXIT_USAGE
    isolate = not args.in_process
    try:
        provider = load(isolated(args.provider, 30.0) if isolate else args.provider,
                        token_file=args.token_file)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="conformance-plan-") as out:
            session = ConformanceSession(catalog, provider, args.provider, Path(out),
                                         args.profile, args.seed, budget=args.budget,
                                         differential=args.differential)
            session.planning_only = True
            code = pytest.main([*pytest_selection(catalog, args.keyword), "--collect-only"],
                               plugins=[session])
            provider.close()
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {_unavailable(exc, isolate and is_local(args.provider))}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    if session.plan is None:
        print(f"no plan was made (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_USAGE
    from conformance.engine.plan import render_plan

    if args.json:
        print(json.dumps({"provider": args.provider, "profile": args.profile,
                          **session.plan.as_json()}, indent=2, ensure_ascii=False))
    else:
        print(render_plan(session.plan, args.provider, args.profile, args.cases))
    return EXIT_OK if session.plan.specs or session.plan.fixed.total else EXIT_FAILS


def _not_listed(info: dict[str, Any]) -> bool:
    """Whether a method's every check was not applicable for want of it in capabilities."""
    checks = info.get("checks") or []
    return bool(checks) and all(
        c.get("status") == "not_applicable"
        and str(c.get("message", "")).endswith("is not in its capabilities") for c in checks)


def _run_settings(args: argparse.Namespace, provider: Any) -> str | None:
    """Settle the seed, profile and code page: a replayed cassette gives those it was recorded
    with (a different one given here is an error: the run would ask for exchanges the cassette
    does not hold); a recorded run without --seed draws one, so that it can be replayed."""
    from conformance.remote.client import CassetteProvider, cassette_of

    cassette = cassette_of(provider)
    if isinstance(cassette, CassetteProvider):
        for option in ("seed", "profile", "code_page"):
            recorded, given = cassette.header.get(option), getattr(args, option)
            flag = "--" + option.replace("_", "-")
            if recorded is None or given == recorded:
                continue
            if given is not None:
                return (f"{flag} {given}: the cassette {cassette.path} was recorded with "
                        f"{flag} {recorded}, and a replay with another would ask for exchanges "
                        f"it does not hold; leave {flag} out to use the recorded one")
            setattr(args, option, recorded)
    args.profile = args.profile if args.profile in ("quick", "ci", "thorough") else "ci"
    args.code_page = args.code_page or "cp1252"
    if args.record and args.seed is None:
        import random

        args.seed = random.SystemRandom().randrange(1 << 31)
        print(f"recording with --seed {args.seed} (the cassette keeps it for its replay)",
              file=sys.stderr)
    exploring = args.explore if args.explore is not None else \
        (200 if args.profile == "thorough" else 0)
    if exploring:
        if args.seed is None:
            import random

            args.seed = random.SystemRandom().randrange(1 << 31)
        print(f"exploring with --seed {args.seed}: {exploring} drawn cases per method and the "
              "family machines after the plan; what fails is saved as a regression",
              file=sys.stderr)
    return None


def _unwritable(folder: Path) -> str | None:
    """Why results cannot be written into `folder` (None when they can): found before the
    provider is touched, in one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".conformance-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write there: {exc.strerror or exc}"
    return None


def _folder(text: str | None) -> Path | None:
    return Path(text) if text else None


def _unavailable(exc: Exception, in_worker: bool) -> str:
    """Why the provider is unavailable; for a provider in a worker process, the reason the
    worker gave (not the worker's command line)."""
    refused = getattr(exc, "refused", None)
    if in_worker and refused:
        return str(refused).removeprefix("provider unavailable: ")
    return str(exc)


def collection_args(files: list[str]) -> list[str]:
    """What pytest is asked to collect: the folders holding the run's files where every YAML
    file in a folder belongs to the run, else the files. (pytest resolves each argument
    through the whole collection tree: a thousand file arguments cost minutes.)"""
    by_folder: dict[Path, set[Path]] = {}
    for file in files:
        path = Path(file).resolve()
        by_folder.setdefault(path.parent, set()).add(path)
    args: list[str] = []
    for folder, wanted in by_folder.items():  # in the order the files were given
        present = {p.resolve() for p in folder.glob("*.yaml")}
        subfolders = any(p.is_dir() for p in folder.iterdir())
        if present == wanted and not subfolders and folder.name != "domains":
            args.append(str(folder))
        else:
            args.extend(str(p) for p in sorted(wanted))
    return args


def _catalog_and_provider(specs: list[str] | None, families: list[str] | None, provider: str,
                          token_file: str | None) -> tuple[Any, Any] | int:
    """The catalog and the loaded provider of a command that replays or probes, or the exit
    code after saying why not (usage for the specs, unavailable for the provider)."""
    from conformance.provider import ProviderUnavailable, load

    catalog = _catalog(specs, families)
    if catalog is None:
        return EXIT_USAGE
    try:
        return catalog, load(provider, token_file=token_file)
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _catalog(specs: list[str] | None, families: list[str] | None = None) -> Any:
    """The catalog (of `families` only, when given), or None after printing every problem
    (`file:line: path: message`) or the unknown family."""
    from conformance.spec.catalog import load_catalog
    from conformance.spec.source import SourceError

    try:
        return load_catalog(specs).of_families(families)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return None


def _load_baseline(path: str | None):
    if path is None:
        return None
    from conformance.reporting.baseline import load_baseline

    return load_baseline(path)


def _compare(summary: dict[str, Any], old: str, out: Path) -> dict[str, Any] | None:
    """The run against an earlier one, kept in results.json as `comparison`."""
    from conformance.reporting.diff import DiffError, compare, load_run
    from conformance.reporting.results import write_summary

    try:
        summary["comparison"] = compare(load_run(Path(old)), summary, old, str(out))
    except DiffError as exc:
        print(f"--compare: {exc}", file=sys.stderr)
        return None
    write_summary(summary, out)
    return summary["comparison"]


def _gate(summary: dict[str, Any], baseline, path: str, out: Path):
    """The run against its baseline (known failures pass, stale or expired entries fail),
    kept in results.json as `gate` so that every report shows the gate's verdict."""
    from datetime import date

    from conformance.reporting.baseline import apply_baseline
    from conformance.reporting.results import write_summary

    outcome = apply_baseline(summary, baseline, date.today())
    summary["gate"] = outcome.as_dict(path)
    write_summary(summary, out)
    return outcome


def _write_reports(summary: dict[str, Any], out: Path, catalog, allure: bool) -> None:
    from conformance.reporting import render_allure_report, spec_sources, write_reports

    write_reports(summary, out, spec_sources(catalog.specs.values()))
    print(f"report: {out / 'report.html'}  (also junit.xml, allure-results/)")
    if allure:
        render_allure_report(out)


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.reporting.results import (
        merge_streams,
        read_stream,
        run_verdict,
        summarize,
        write_summary,
    )

    out = Path(args.out)
    stream = out / "results.jsonl"
    parts = sorted((out / "workers").glob("*.jsonl"))
    newest = max((p.stat().st_mtime for p in parts), default=0.0)
    if parts and (not stream.is_file() or stream.stat().st_mtime < newest):
        # a parallel run ended before its controller merged what the workers wrote (killed):
        # every finished check is in the workers' streams, not in the older results.jsonl
        notes: list[str] = []
        merged = merge_streams(out, parts, notes=notes)
        for note in notes:
            print(note, file=sys.stderr)
        print(f"merged the streams of {merged['workers']} workers of an unfinished "
              "parallel run", file=sys.stderr)
    if not stream.is_file():
        print(f"{stream}: no results stream to build a report from", file=sys.stderr)
        return EXIT_USAGE
    skipped: list[str] = []
    header, methods, results = read_stream(stream, skipped)
    for note in skipped:
        print(note, file=sys.stderr)
    summary = summarize(header, methods, results)
    write_summary(summary, out)
    catalog = _catalog(args.specs)
    if catalog is None:
        return EXIT_USAGE
    _write_reports(summary, out, catalog, args.allure)
    verdict = run_verdict(summary)
    print(f"{len(results)} checks read back from {stream}; verdict {verdict}")
    return EXIT_FAILS if verdict == "fails" or not results else EXIT_OK


def print_summary(summary: dict[str, Any], verdict: str, out: Path) -> None:
    width = max((len(m) for m in summary["methods"]), default=10)
    failures = [c for m in summary["methods"].values() for c in m["checks"]
                if c["status"] in ("failed", "error")]
    failures += [c for f in summary.get("families", {}).values() for c in f["checks"]
                 if c["status"] in ("failed", "error")]
    for check in failures:
        print(f"FAILED {check['name']}\n  {check['message']}")
        if check.get("repro"):
            from conformance.engine.checks import slug

            path = out / "repro" / f"{slug(check['name'])}.yaml"
            provider = shlex.quote(str(summary.get("provider_path") or summary.get("provider")))
            print(f"  reproduce: conformance replay {path} --provider {provider}")
    print()
    unlisted = sorted(m for m, info in summary["methods"].items() if _not_listed(info))
    for method, info in sorted(summary["methods"].items()):
        if method in unlisted:
            continue
        codes = info["codes"]
        marks = " ".join(f"{c}={s}" for c, s in codes.items() if s != "pass")
        print(f"{method:<{width}}  {info['verdict']:<14} "
              f"{sum(s == 'pass' for s in codes.values())}/{len(codes)} codes pass"
              f"{'  ' + marks if marks else ''}")
    if unlisted:
        print(f"{len(unlisted)} method{'s' if len(unlisted) > 1 else ''} not in the provider's "
              f"capabilities()['methods'] (not applicable): {', '.join(unlisted)}")
    ops = summary.get("operations") or {}
    if ops:
        plan = summary.get("plan") or {}
        estimated = f"; the plan estimated {plan['operations']['total']}" \
            if plan.get("operations") else ""
        print(f"\noperations: {ops.get('total', 0)} (reset {ops.get('reset', 0)}, setup "
              f"{ops.get('setup', 0)}, call {ops.get('call', 0)}, observe "
              f"{ops.get('observe', 0)})"
              + (f" in {ops['batches']} round trips" if ops.get("batches") else "")
              + estimated)
        coverage = summary.get("coverage") or {}
        if coverage:
            print("coverage reached: " + ", ".join(f"{k} {v['covered']}/{v['total']}"
                                                   for k, v in coverage.items()
                                                   if v.get("total")))
        if plan.get("left_out"):
            print(f"left out by the budget ({plan.get('budget')}): {plan['left_out']} coverage "
                  "items (listed in report.html, and by conformance plan)")
    t = summary["totals"]
    print(f"\n{verdict.upper()}: {t['passed']} passed, {t['failed']} failed, "
          f"{t['not_applicable']} not applicable, {t['errors']} errors "
          f"(provider {summary.get('provider')}, profile {summary.get('profile')})")
    print(f"results: {out / 'results.json'}")
