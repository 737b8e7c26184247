"""The `conformance` command: run, validate, providers.

Exit codes of `run` (stable): 0 the provider conforms, 1 it does not (or no check ran),
2 usage or spec error, 3 provider unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILS, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


DELEGATED = {"extract": "conformance.extract", "verify-metadata": "conformance.metadata",
             "agent": "conformance.agent"}


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
    run.add_argument("--profile", default="ci", choices=("quick", "ci", "thorough"))
    run.add_argument("-k", dest="keyword", default=None,
                     help="only checks whose name matches this pytest -k expression")
    run.add_argument("--seed", type=int, default=None, help="make the drawn cases reproducible")
    run.add_argument("--specs", nargs="+", default=None,
                     help="spec files or folders (default: the bundled specs)")
    run.add_argument("--code-page", default="cp1252",
                     help="the ANSI code page of A entry points (default: cp1252)")
    run.add_argument("--isolate", action="store_true",
                     help="run the provider in a worker process (the agent over stdio): a hang "
                          "or crash fails only the check in flight, and the worker restarts")
    run.add_argument("--call-timeout", type=float, default=30.0, metavar="S",
                     help="with --isolate: seconds a provider call may take (default 30)")
    run.add_argument("--token-file", default=None,
                     help="the agent's token, for remote+tcp:// and remote+stdio: providers")
    run.add_argument("--record", default=None, metavar="FILE",
                     help="write every exchange with the provider to a JSONL cassette "
                          "(play it back with --provider replay:FILE)")
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

    val = sub.add_parser("validate", help="check spec files; exit 2 listing every problem")
    val.add_argument("paths", nargs="*", help="spec files or folders (default: bundled specs)")
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
    rep.add_argument("--specs", nargs="+", default=None)
    rep.add_argument("--code-page", default="cp1252")
    rep.set_defaults(handler=cmd_replay)

    doc = sub.add_parser("doctor", help="try a provider's capabilities, steps and observe on "
                                        "an empty world, before a run")
    doc.add_argument("--provider", default="reference")
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
    from conformance.catalog import load_catalog
    from conformance.source import SourceError

    try:
        catalog = load_catalog(args.paths or None)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    codes = sum(len(s.codes) for s in catalog.specs.values())
    print(f"{len(catalog.specs)} specs, {codes} documented codes, "
          f"{len(catalog.domains)} domains: valid")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.catalog import load_catalog
    from conformance.checks import Settings
    from conformance.provider import ProviderUnavailable, load
    from conformance.replay import ReproError, load_repro, replay
    from conformance.source import SourceError

    try:
        repro = load_repro(args.file)
        catalog = load_catalog(args.specs)
    except ReproError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        provider = load(args.provider, token_file=args.token_file)
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
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
    from conformance.catalog import load_catalog
    from conformance.doctor import RAISED, diagnose, render
    from conformance.provider import ProviderUnavailable, load
    from conformance.source import SourceError

    try:
        catalog = load_catalog(args.specs)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        provider = load(args.provider)
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        rows = diagnose(provider, catalog)
    finally:
        provider.close()
    print(f"provider {args.provider}")
    print(render(rows))
    return EXIT_FAILS if any(r.status == RAISED for r in rows) else EXIT_OK


def cmd_init_provider(args: argparse.Namespace) -> int:
    from conformance.catalog import load_catalog
    from conformance.scaffold import ScaffoldError, write_skeleton

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

    from conformance.catalog import load_catalog
    from conformance.plugin import ConformanceSession
    from conformance.provider import ProviderUnavailable, load
    from conformance.results import run_verdict
    from conformance.source import SourceError

    if args.isolate and "://" not in args.provider and not args.provider.startswith(
            ("remote+", "replay:")):
        args.provider = isolated(args.provider, args.call_timeout)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"--out {args.out}: exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        catalog = load_catalog(args.specs)
        baseline = _load_baseline(args.baseline)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        provider = load(args.provider.split(",")[0], token_file=args.token_file)
        if args.record:
            from conformance.remote import RecordingProvider

            provider = RecordingProvider(provider, args.record)
        session = ConformanceSession(catalog, provider, args.provider, Path(args.out),
                                     args.profile, args.seed, args.code_page, args.differential)
    except ProviderUnavailable as exc:
        print(f"provider unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if baseline is not None:
        session.retry = {e.check for e in baseline.flaky}
    families = {s.family for s in catalog.specs.values()}
    files = sorted({s.file for s in catalog.specs.values()}) + sorted(
        d.file for d in catalog.domains.values() if d.family in families)
    pytest_args = [*files, "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:benchmark",
                   "--rootdir",
                   str(catalog.root or Path.cwd()), "-c", os.devnull,
                   "-o", "python_files=", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest_args += ["-v", "--no-header", "-rN"] if args.verbose else ["-p", "no:terminal"]
    session.show_progress = None if not args.verbose else False
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.workers:
        shutil.rmtree(Path(args.out) / "workers", ignore_errors=True)
        pytest_args += ["-p", "xdist", "-n", str(args.workers), "--conformance-provider",
                        args.provider, "--conformance-out", args.out, "--conformance-profile",
                        args.profile, "--conformance-code-page", args.code_page]
        pytest_args += ["--conformance-seed", str(args.seed)] if args.seed is not None else []
        pytest_args += ["--conformance-differential"] if args.differential else []
        pytest_args += ["--conformance-token-file", args.token_file] if args.token_file else []
    code = pytest.main(pytest_args, plugins=[session])
    if session.summary is None:
        print(f"the run did not start (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_USAGE if code == pytest.ExitCode.USAGE_ERROR else EXIT_FAILS
    out = Path(args.out)
    _write_reports(session.summary, out, catalog, args.allure)
    verdict = run_verdict(session.summary)
    print_summary(session.summary, verdict, out)
    if args.write_baseline:
        from conformance.baseline import write_baseline

        print(f"baseline: {write_baseline(session.summary, args.write_baseline, keep=baseline)}")
    if baseline is not None:
        return _gate(session.summary, baseline, args.baseline)
    t = session.summary["totals"]
    if t["passed"] + t["failed"] + t["errors"] == 0:
        print("no check ran: nothing was tested", file=sys.stderr)
        return EXIT_FAILS
    if args.strict and verdict != "conforms":
        return EXIT_FAILS
    return EXIT_FAILS if verdict == "fails" else EXIT_OK


def isolated(provider: str, call_timeout: float) -> str:
    """The provider served by an agent in a child process over stdio."""
    command = [sys.executable, "-m", "conformance", "agent", "--provider", provider, "--stdio",
               "--call-timeout", str(call_timeout), "--log-level", "WARNING"]
    return "remote+stdio:" + " ".join(shlex.quote(part) for part in command)


def _load_baseline(path: str | None):
    if path is None:
        return None
    from conformance.baseline import load_baseline

    return load_baseline(path)


def _gate(summary: dict[str, Any], baseline, path: str) -> int:
    """The exit code with a baseline: known failures pass, stale or expired entries fail."""
    from datetime import date

    from conformance.baseline import apply_baseline

    outcome = apply_baseline(summary, baseline, date.today())
    for line in outcome.lines(path):
        print(line, file=sys.stderr)
    return outcome.exit_code


def _write_reports(summary: dict[str, Any], out: Path, catalog, allure: bool) -> None:
    from conformance.reporting import render_allure_report, spec_sources, write_reports

    write_reports(summary, out, spec_sources(catalog.specs.values()))
    print(f"report: {out / 'report.html'}  (also junit.xml, allure-results/)")
    if allure:
        render_allure_report(out)


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.catalog import load_catalog
    from conformance.results import read_stream, run_verdict, summarize, write_summary
    from conformance.source import SourceError

    out = Path(args.out)
    stream = out / "results.jsonl"
    if not stream.is_file():
        print(f"{stream}: no results stream to build a report from", file=sys.stderr)
        return EXIT_USAGE
    header, methods, results = read_stream(stream)
    summary = summarize(header, methods, results)
    write_summary(summary, out)
    try:
        catalog = load_catalog(args.specs)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
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
            from conformance.checks import slug

            path = out / "repro" / f"{slug(check['name'])}.yaml"
            provider = shlex.quote(str(summary.get("provider")))
            print(f"  reproduce: conformance replay {path} --provider {provider}")
    print()
    for method, info in sorted(summary["methods"].items()):
        codes = info["codes"]
        marks = " ".join(f"{c}={s}" for c, s in codes.items() if s != "pass")
        print(f"{method:<{width}}  {info['verdict']:<14} "
              f"{sum(s == 'pass' for s in codes.values())}/{len(codes)} codes pass"
              f"{'  ' + marks if marks else ''}")
    t = summary["totals"]
    print(f"\n{verdict.upper()}: {t['passed']} passed, {t['failed']} failed, "
          f"{t['not_applicable']} not applicable, {t['errors']} errors "
          f"(provider {summary.get('provider')}, profile {summary.get('profile')})")
    print(f"results: {out / 'results.json'}")
