"""`conformance run`, `plan` and `report`: a run from its options to its verdict, the plan
without the run, and the reports rebuilt from a run's stream.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.cli.loading import pytest_selection, selected_catalog, unavailable_reason
from conformance.errors import EXIT_FAILS, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE

if TYPE_CHECKING:
    from conformance.reporting.baseline import Baseline, BaselineOutcome
    from conformance.reporting.shapes import CheckEntry, Comparison, MethodEntry, Summary
    from conformance.spec.catalog import Catalog

DEFAULT_CHECK_TIMEOUT = 300.0  # as conformance.engine.budget (not imported: keep `--help` light)


def budget_option(text: str) -> Any:
    """--budget: a time or a number of operations (conformance.engine.operations.parse_budget)."""
    from conformance.engine.operations import parse_budget

    try:
        return parse_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    from conformance.provider import ProviderUnavailable, load
    from conformance.remote.client import is_local, isolated
    from conformance.reporting.results import run_verdict
    from conformance.runner.options import RunOptions
    from conformance.runner.start import open_session

    if args.isolate and args.in_process:
        print(
            "--isolate and --in-process contradict each other (isolation is the default)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    isolate = not args.in_process
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"--out {args.out}: exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    problem = _unwritable(Path(args.out))
    if problem:
        print(f"--out {args.out}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    catalog = selected_catalog(args.specs, args.family)
    baseline = _load_baseline(args.baseline)
    first = args.provider.split(",")[0]
    try:
        provider = load(
            isolated(first, args.call_timeout, args.worker_memory) if isolate else first,
            token_file=args.token_file,
        )
        problem = _run_settings(args, provider)
        if problem:
            print(problem, file=sys.stderr)
            return EXIT_USAGE
        if args.record:
            from conformance.remote.cassette import RecordingProvider

            provider = RecordingProvider(
                provider,
                args.record,
                parts=bool(args.workers),
                header={"profile": args.profile, "seed": args.seed, "code_page": args.code_page},
            )
        options = RunOptions(
            provider=args.provider,
            out=args.out,
            profile=args.profile,
            seed=args.seed,
            code_page=args.code_page,
            differential=args.differential,
            token_file=args.token_file,
            isolate=isolate,
            call_timeout=args.call_timeout,
            worker_memory=args.worker_memory,
            check_timeout=args.check_timeout,
            observed=args.observed,
            budget=args.budget.source if args.budget else None,
            explore=args.explore,
            regressions=args.regressions,
            rerun_failed=args.rerun_failed,
            record=args.record,
            flaky=tuple(e.check for e in baseline.flaky) if baseline is not None else (),
        )
        session = open_session(
            options, catalog, provider, parallel=bool(args.workers), provider_name=args.provider
        )
    except ProviderUnavailable as exc:
        print(
            f"provider unavailable: {unavailable_reason(exc, isolate and is_local(first))}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    if args.rerun_failed:
        print(
            f"re-running {len(session.only or ())} check(s) that failed in "
            f"{args.rerun_failed} or have saved regressions",
            file=sys.stderr,
        )
    pytest_args = pytest_selection(catalog, args.keyword, args.verbose)
    session.show_progress = None if not args.verbose else False
    session.show_plan = True
    if args.workers:
        shutil.rmtree(Path(args.out) / "workers", ignore_errors=True)
        pytest_args += [
            "-p",
            "xdist",
            "-n",
            str(args.workers),
            "--dist",
            "loadfile",
            "--no-loadscope-reorder",
        ]  # the options go to the workers whole
    code = pytest.main(pytest_args, plugins=[session])
    if session.write_error is not None:
        print(session.write_error, file=sys.stderr)
        return EXIT_USAGE
    if session.summary is None:
        print(f"the run did not start (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_USAGE if code == pytest.ExitCode.USAGE_ERROR else EXIT_FAILS
    out = Path(args.out)
    gate = _gate(session.summary, baseline, args.baseline, out) if baseline is not None else None
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


def cmd_plan(args: argparse.Namespace) -> int:
    """`conformance plan`: the run's plan, made with the oracle alone; nothing is executed
    (the provider is asked for its capabilities only)."""
    import pytest

    from conformance.provider import ProviderUnavailable, load
    from conformance.remote.client import is_local, isolated
    from conformance.runner.options import RunOptions
    from conformance.runner.start import open_session

    catalog = selected_catalog(args.specs, args.family)
    isolate = not args.in_process
    try:
        provider = load(
            isolated(args.provider, 30.0) if isolate else args.provider, token_file=args.token_file
        )
        import tempfile

        with tempfile.TemporaryDirectory(prefix="conformance-plan-") as out:
            options = RunOptions(
                provider=args.provider,
                out=out,
                profile=args.profile,
                seed=args.seed,
                budget=args.budget.source if args.budget else None,
                differential=args.differential,
            )
            session = open_session(options, catalog, provider, provider_name=args.provider)
            session.planning_only = True
            code = pytest.main(
                [*pytest_selection(catalog, args.keyword), "--collect-only"], plugins=[session]
            )
            provider.close()
    except ProviderUnavailable as exc:
        reason = unavailable_reason(exc, isolate and is_local(args.provider))
        print(f"provider unavailable: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if session.plan is None:
        print(f"no plan was made (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_USAGE
    from conformance.engine.runplan import render_plan

    if args.json:
        print(
            json.dumps(
                {"provider": args.provider, "profile": args.profile, **session.plan.as_json()},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(render_plan(session.plan, args.provider, args.profile, args.cases))
    return EXIT_OK if session.plan.specs or session.plan.fixed.total else EXIT_FAILS


def _not_listed(info: MethodEntry) -> bool:
    """Whether a method's every check was not applicable for want of it in capabilities."""
    checks = info.get("checks") or []
    return bool(checks) and all(
        c.get("status") == "not_applicable"
        and str(c.get("message", "")).endswith("is not in its capabilities")
        for c in checks
    )


def _run_settings(args: argparse.Namespace, provider: Any) -> str | None:
    """Settle the seed, profile and code page: a replayed cassette gives those it was recorded
    with (a different one given here is an error: the run would ask for exchanges the cassette
    does not hold); a recorded run without --seed draws one, so that it can be replayed."""
    from conformance.remote.cassette import CassetteProvider, cassette_of

    cassette = cassette_of(provider)
    if isinstance(cassette, CassetteProvider):
        for option in ("seed", "profile", "code_page"):
            recorded, given = cassette.header.get(option), getattr(args, option)
            flag = "--" + option.replace("_", "-")
            if recorded is None or given == recorded:
                continue
            if given is not None:
                return (
                    f"{flag} {given}: the cassette {cassette.path} was recorded with "
                    f"{flag} {recorded}, and a replay with another would ask for exchanges "
                    f"it does not hold; leave {flag} out to use the recorded one"
                )
            setattr(args, option, recorded)
    args.profile = args.profile if args.profile in ("quick", "ci", "thorough") else "ci"
    args.code_page = args.code_page or "cp1252"
    if args.record and args.seed is None:
        import random

        args.seed = random.SystemRandom().randrange(1 << 31)
        print(
            f"recording with --seed {args.seed} (the cassette keeps it for its replay)",
            file=sys.stderr,
        )
    exploring = (
        args.explore if args.explore is not None else (200 if args.profile == "thorough" else 0)
    )
    if exploring:
        if args.seed is None:
            import random

            args.seed = random.SystemRandom().randrange(1 << 31)
        print(
            f"exploring with --seed {args.seed}: {exploring} drawn cases per method and the "
            "family machines after the plan; what fails is saved as a regression",
            file=sys.stderr,
        )
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


def _load_baseline(path: str | None) -> Baseline | None:
    if path is None:
        return None
    from conformance.reporting.baseline import load_baseline

    return load_baseline(path)


def _compare(summary: Summary, old: str, out: Path) -> Comparison | None:
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


def _gate(summary: Summary, baseline: Baseline, path: str, out: Path) -> BaselineOutcome:
    """The run against its baseline (known failures pass, stale or expired entries fail),
    kept in results.json as `gate` so that every report shows the gate's verdict."""
    from datetime import date

    from conformance.reporting.baseline import apply_baseline
    from conformance.reporting.results import write_summary

    outcome = apply_baseline(summary, baseline, date.today())
    summary["gate"] = outcome.as_dict(path)
    write_summary(summary, out)
    return outcome


def _write_reports(summary: Summary, out: Path, catalog: Catalog, allure: bool) -> None:
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
        print(
            f"merged the streams of {merged['workers']} workers of an unfinished parallel run",
            file=sys.stderr,
        )
    if not stream.is_file():
        print(f"{stream}: no results stream to build a report from", file=sys.stderr)
        return EXIT_USAGE
    skipped: list[str] = []
    header, methods, results = read_stream(stream, skipped)
    for note in skipped:
        print(note, file=sys.stderr)
    summary = summarize(header, methods, results)
    write_summary(summary, out)
    catalog = selected_catalog(args.specs)
    _write_reports(summary, out, catalog, args.allure)
    verdict = run_verdict(summary)
    print(f"{len(results)} checks read back from {stream}; verdict {verdict}")
    return EXIT_FAILS if verdict == "fails" or not results else EXIT_OK


def print_summary(summary: Summary, verdict: str, out: Path) -> None:
    width = max((len(m) for m in summary["methods"]), default=10)
    failures: list[CheckEntry] = [
        c
        for m in summary["methods"].values()
        for c in m["checks"]
        if c["status"] in ("failed", "error")
    ]
    failures += [
        c
        for f in summary.get("families", {}).values()
        for c in f["checks"]
        if c["status"] in ("failed", "error")
    ]
    for check in failures:
        print(f"FAILED {check['name']}\n  {check['message']}")
        if check.get("repro"):
            from conformance.engine.verdict import slug

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
        print(
            f"{method:<{width}}  {info['verdict']:<14} "
            f"{sum(s == 'pass' for s in codes.values())}/{len(codes)} codes pass"
            f"{'  ' + marks if marks else ''}"
        )
    if unlisted:
        print(
            f"{len(unlisted)} method{'s' if len(unlisted) > 1 else ''} not in the provider's "
            f"capabilities()['methods'] (not applicable): {', '.join(unlisted)}"
        )
    ops = summary.get("operations") or {}
    if ops:
        plan = summary.get("plan")
        estimated = (
            f"; the plan estimated {plan['operations']['total']}"
            if plan and plan.get("operations")
            else ""
        )
        print(
            f"\noperations: {ops.get('total', 0)} (reset {ops.get('reset', 0)}, setup "
            f"{ops.get('setup', 0)}, call {ops.get('call', 0)}, observe "
            f"{ops.get('observe', 0)})"
            + (f" in {ops['batches']} round trips" if ops.get("batches") else "")
            + estimated
        )
        coverage = summary.get("coverage") or {}
        if coverage:
            print(
                "coverage reached: "
                + ", ".join(
                    f"{k} {v['covered']}/{v['total']}"
                    for k, v in coverage.items()
                    if v.get("total")
                )
            )
        if plan and plan.get("left_out"):
            print(
                f"left out by the budget ({plan.get('budget')}): {plan['left_out']} coverage "
                "items (listed in report.html, and by conformance plan)"
            )
    t = summary["totals"]
    print(
        f"\n{verdict.upper()}: {t['passed']} passed, {t['failed']} failed, "
        f"{t['not_applicable']} not applicable, {t['errors']} errors "
        f"(provider {summary.get('provider')}, profile {summary.get('profile')})"
    )
    print(f"results: {out / 'results.json'}")
