"""The other commands: `validate`, `replay`, `doctor`, `init-provider`, `providers`, `diff`
and `regressions`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.cli.loading import catalog_and_provider
from conformance.errors import EXIT_FAILS, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    import argparse


def cmd_validate(args: argparse.Namespace) -> int:
    from conformance.engine.scenarios import scenario_problems
    from conformance.spec.catalog import load_catalog
    from conformance.spec.source import SourceError

    try:
        catalog = load_catalog(args.paths or None)
        problems = scenario_problems(catalog)  # what the rules predict, with the oracle alone
    except SourceError as exc:
        problems = [str(p) for p in exc.problems]
    if problems:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    codes = sum(len(s.codes) for s in catalog.specs.values())
    from conformance.spec.cel_checks import cost_warnings

    warnings = cost_warnings(catalog)
    if not args.no_reach:
        from conformance.engine.runplan import rule_warnings

        warnings += rule_warnings(catalog)
    for warning in warnings:
        print(warning)
    print(
        f"{len(catalog.specs)} specs, {codes} documented codes, "
        f"{len(catalog.domains)} domains: valid"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from conformance.engine.replay import load_repro, replay
    from conformance.engine.verdict import Settings

    repro = load_repro(args.file)
    catalog, provider = catalog_and_provider(
        args.specs, args.family, args.provider, args.token_file
    )
    try:
        result = replay(repro, catalog, provider, Settings(code_page=args.code_page))
    finally:
        provider.close()
    print(("FIXED: " if result.passed else "STILL FAILS: ") + result.message)
    return EXIT_OK if result.passed else EXIT_FAILS


def cmd_doctor(args: argparse.Namespace) -> int:
    from conformance.cli.doctor import RAISED, diagnose, render

    catalog, provider = catalog_and_provider(args.specs, args.family, args.provider, None)
    try:
        rows = diagnose(provider, catalog)
    finally:
        provider.close()
    print(f"provider {args.provider}")
    print(render(rows))
    return EXIT_FAILS if any(r.status == RAISED for r in rows) else EXIT_OK


def cmd_init_provider(args: argparse.Namespace) -> int:
    from conformance.cli.scaffold import write_skeleton
    from conformance.spec.catalog import load_catalog

    where = write_skeleton(args.name, Path(args.out), load_catalog(), args.family)
    print(f"wrote {where}")
    print(f"next: pip install -e {where} && conformance run --provider {args.name}")
    return EXIT_OK


def cmd_providers(args: argparse.Namespace) -> int:
    from conformance.provider import available, load

    listing: dict[str, Any] = {}
    for name, target in sorted(available().items()):
        try:
            provider = load(name)
            listing[name] = {"target": target, "capabilities": provider.capabilities()}
            provider.close()
        except Exception as exc:  # a listing names every provider, loadable or not
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


def cmd_diff(args: argparse.Namespace) -> int:
    """`conformance diff OLD NEW`: exit 1 when a check is newly failing, else 0."""
    from conformance.reporting.diff import compare, load_run, render

    diff = compare(load_run(Path(args.old)), load_run(Path(args.new)), args.old, args.new)
    print(json.dumps(diff, indent=2, ensure_ascii=False) if args.json else render(diff))
    return EXIT_FAILS if diff["newly_failing"] else EXIT_OK


def cmd_regressions(args: argparse.Namespace) -> int:
    """`conformance regressions`: each saved case, its check, where and when it was found;
    with --provider, whether it still fails (exit 1 while one does)."""
    from conformance.engine.regressions import DEFAULT_FOLDER, load

    folder = Path(args.regressions) if args.regressions else Path.cwd() / DEFAULT_FOLDER
    saved = load(folder)
    statuses: dict[str, str] = {}
    if args.provider and saved:
        _replay_all(args, saved, statuses)
    rows = [
        {
            "file": str(r.path),
            "check": r.check,
            "found": r.found,
            "seed": r.seed,
            "provider": r.provider,
            "message": r.message,
            **({"status": statuses[r.name]} if r.name in statuses else {}),
        }
        for r in saved
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(f"{len(rows)} regression(s) in {folder}")
        for row in rows:
            status = f"  [{row['status']}]" if "status" in row else ""
            print(
                f"{row['file']}{status}\n  {row['check']}  found {row['found'] or '?'} "
                f"by {row['provider'] or '?'} with --seed {row['seed']}\n  {row['message']}"
            )
    return EXIT_FAILS if "still fails" in statuses.values() else EXIT_OK


def _replay_all(args: argparse.Namespace, saved: list[Any], statuses: dict[str, str]) -> None:
    from conformance.engine.replay import ReproError, replay
    from conformance.engine.verdict import Settings

    catalog, provider = catalog_and_provider(args.specs, None, args.provider, args.token_file)
    try:
        for regression in saved:
            try:
                result = replay(regression.repro, catalog, provider, Settings())
                statuses[regression.name] = "fixed" if result.passed else "still fails"
            except ReproError as exc:
                statuses[regression.name] = f"cannot replay: {exc}"
    finally:
        provider.close()
