"""Every benchmark of the harness, each figure beside its goal, measured in one run.

    python benchmarks/run.py [--quick | --full] [--only NAME ...]

--quick: smaller samples (the quick profile, 200 and 1,000 specs); --full: also 10,000 specs.

Figures are ratios taken in the same run wherever possible, so a loaded or slower machine
moves both sides alike. They are reported, never asserted: nothing here gates CI. The table is
printed and written as JSON to reports/benchmarks.json:
{"figures": [{"name", "value", "unit", "goal", "met"}], "machine": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from conformance.engine.case_space import enumerate_cases  # noqa: E402
from conformance.engine.scenarios import check_scenario, scenario_args  # noqa: E402
from conformance.engine.strategies import state_of  # noqa: E402
from conformance.engine.subject import Subject  # noqa: E402
from conformance.engine.values import OUT  # noqa: E402
from conformance.engine.verdict import Settings  # noqa: E402
from conformance.engine.world import Unknown, unknown_id  # noqa: E402
from conformance.provider import load  # noqa: E402
from conformance.spec.catalog import load_catalog  # noqa: E402
from conformance.spec.expression import compiled  # noqa: E402


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str
    met: bool
    note: str = ""


def _subjects(max_examples: int):
    catalog = load_catalog()
    provider = load("reference")
    caps = provider.capabilities()
    out = []
    for spec in catalog.specs.values():
        domain = catalog.domain_of(spec)
        observable = tuple(c for c in caps["observe"] if c in domain.collections)
        out.append(
            Subject(
                spec,
                domain,
                catalog.codes,
                provider,
                observable,
                Settings(max_examples=max_examples),
            )
        )
    return catalog, out


# Figures of the run before it was planned (commit 4b756a0, the same machine): one `ci` run
# over the catalog on the reference sent 1,313,209 operations (counted from a --record
# cassette) and took 77 s isolated on a quiet machine.
BEFORE_OPERATIONS = 1_313_209
BEFORE_WALL = 77.0
# The family checks' share before they were planned: the hypothesis machines of the ci profile
# (50 runs of up to 25 steps each), counted from a cassette recorded at 4b756a0 with --seed 1.
BEFORE_FAMILY_OPERATIONS = 18_184


def _results(out: str) -> dict[str, Any]:
    return json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))


def planned_run(quick: bool) -> list[Figure]:
    """One default run (ci, isolated) over the whole catalog on the reference: the operations
    it asks of the provider and its wall time, each against the run before planning; the
    planning itself; and a provider that declares 0.2 s per setup, its estimate beside the
    time measured."""
    rounds = 1 if quick else 3
    walls, out = [], ""
    for _ in range(rounds):
        out = tempfile.mkdtemp(prefix="bench-plan-")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--out", out],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        walls.append(time.perf_counter() - started)
    summary = _results(out)
    ops = summary["operations"]["total"]
    by_kind: dict[str, int] = {}
    for group in [*summary["methods"].values(), *summary["families"].values()]:
        for check in group["checks"]:
            kind = check["kind"]
            by_kind[kind] = by_kind.get(kind, 0) + check["operations"]["total"]
    family = by_kind.get("stateful", 0)
    planned = sum(
        by_kind.get(k, 0) for k in ("oracle", "closed-world", "out-params", "repeat", "variants")
    )
    wall = sorted(walls)[len(walls) // 2]
    planning = _planning_seconds()
    estimate, measured, plain, setups = _declared_costs()
    return [
        Figure(
            "operations of one ci run over the catalog (reference)",
            ops,
            "ops",
            "<= 20000",
            ops <= 20_000,
            f"before planning {BEFORE_OPERATIONS:,}; {summary['plan']['cases']} planned "
            f"cases; {ops / BEFORE_OPERATIONS:.4f} of before",
        ),
        Figure(
            "  of which the family checks' planned sequences",
            family,
            "ops",
            "-",
            True,
            f"{summary['plan']['sequences']} sequences; before planning "
            f"{BEFORE_FAMILY_OPERATIONS:,} (the machines); the planned single calls: "
            f"{planned}; the scenarios: {by_kind.get('scenario', 0)}",
        ),
        Figure(
            "wall time of that run, isolated (the default)",
            round(wall, 2),
            "s",
            "<= 15",
            wall <= 15,
            f"median of {rounds}; before planning {BEFORE_WALL:g} s",
        ),
        Figure(
            "  planning the catalog (ci coverage, one core)",
            round(planning, 2),
            "s",
            "-",
            True,
            "the oracle alone: candidates, search, cover",
        ),
        Figure(
            "a provider declaring 0.2 s per setup: estimated vs measured provider time",
            round(estimate / max(measured - plain, 1e-9), 2),
            "x",
            "-",
            True,
            f"plan estimate {estimate:.1f} s for {setups} setups; the run took "
            f"{measured:.1f} s, {measured - plain:.1f} s more than the same plan without "
            f"the delay ({plain:.1f} s)",
        ),
    ]


def _planning_seconds() -> float:
    from conformance.engine.candidates import Context
    from conformance.engine.operations import Costs
    from conformance.engine.plan import plan_spec
    from conformance.engine.strategies import Allowed

    catalog = load_catalog()
    caps = load("reference").capabilities()
    started = time.process_time()
    for spec in catalog.specs.values():
        domain = catalog.domain_of(spec)
        observable = tuple(c for c in caps["observe"] if c in domain.collections)
        plan_spec(
            spec,
            Context(
                domain,
                catalog.codes,
                Allowed(),
                Costs(),
                observable,
                1,
                any(r.effects for r in spec.rules),
            ),
        )
    return time.process_time() - started


def _declared_costs() -> tuple[float, float, float, int]:
    """(estimated seconds, measured wall seconds, the same run's wall seconds without the
    delay, setups) of one method's property checks on tests/costly_provider.py:SlowSetups
    (0.2 s per setup, declared and slept) and on DeclaresSlowSetups (declared, not slept: the
    same plan)."""
    walls, summary = [], {}
    for provider in (
        "tests/costly_provider.py:SlowSetups",
        "tests/costly_provider.py:DeclaresSlowSetups",
    ):
        out = tempfile.mkdtemp(prefix="bench-costs-")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "conformance",
                "run",
                "--provider",
                provider,
                "--out",
                out,
                "-k",
                "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml and not scenario",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        walls.append(time.perf_counter() - started)
        summary = summary or _results(out)
    return summary["plan"]["seconds"], walls[0], walls[1], summary["operations"]["setup"]


def _prediction_seconds(subjects: list[Subject], rounds: int) -> float:
    """CPU seconds to predict every enumerated case of every spec `rounds` times."""
    work = []
    for subject in subjects:
        for case in enumerate_cases(subject.spec, subject.domain, 40):
            work.append((subject.oracle, state_of(subject.domain, case.given), case.args))
    started = time.process_time()
    for _ in range(rounds):
        for oracle, state, args in work:
            oracle.predict(state, args)
    return (time.process_time() - started) / (rounds * len(work))


def cel_translation(quick: bool) -> list[Figure]:
    """The oracle's predictions with each rule's Python translation, and with `cel` alone: the
    measured reason the translation exists (conformance/spec/expression.py)."""
    _, subjects = _subjects(10)
    rounds = 3 if quick else 10
    translated = _prediction_seconds(subjects, rounds)
    saved = {}
    for subject in subjects:  # the same expressions, run by cel only
        for rule in subject.spec.rules:
            for source in (rule.when, *rule.effects.values(), *rule.outputs.values()):
                saved.setdefault(source, compiled(source).fast)
                compiled(source).fast = None
    try:
        reference = _prediction_seconds(subjects, rounds)
    finally:
        for source, fast in saved.items():
            compiled(source).fast = fast
    return [
        Figure(
            "oracle prediction with the CEL translation",
            round(translated * 1e6, 1),
            "us",
            "-",
            True,
        ),
        Figure("  the same with cel alone", round(reference * 1e6, 1), "us", "-", True),
        Figure(
            "CEL translation speed-up per prediction",
            round(reference / translated, 1),
            "x",
            "-",
            True,
        ),
    ]


def _direct(provider: Any, spec: Any, scenario: Any, domain: Any) -> None:
    """The same calls as a scenario, made on the provider by hand: the least work possible."""
    provider.reset()
    ids: dict[str, str] = {}
    for raw in scenario.given:
        step = domain.complete(raw)
        kind, name = next(iter(step.items()))
        sent = {k: (v if k == kind else _ids(v, ids)) for k, v in step.items()}
        ids[name] = provider.setup(sent)
    args = scenario_args(spec, scenario)
    sent = {}
    for key, value in args.items():
        if isinstance(value, Unknown):
            coll = domain.by_step(value.step)
            value = unknown_id(coll.id if coll else "string", value)
        if isinstance(value, str) and value in ids:
            value = ids[value]
        if value != OUT:
            sent[key] = int(value) if key.endswith("PortNumber") and str(value).isdigit() else value
    provider.call(spec.id, sent)
    for coll in scenario.then:
        provider.observe(coll)


def _ids(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [ids.get(v, v) if isinstance(v, str) else v for v in value]
    return ids.get(value, value) if isinstance(value, str) else value


def harness_overhead(quick: bool) -> list[Figure]:
    rounds = 60 if quick else 200
    _, subjects = _subjects(10)
    single = [(s, sc) for s in subjects for sc in s.spec.scenarios if not sc.calls]
    started = time.process_time()
    for _ in range(rounds):
        for subject, scenario in single:
            check_scenario(subject, scenario)
    engine = time.process_time() - started
    started = time.process_time()
    for _ in range(rounds):
        for subject, scenario in single:
            _direct(subject.provider, subject.spec, scenario, subject.domain)
    bare = time.process_time() - started
    ratio = engine / bare
    return [
        Figure(
            "scenario through the engine vs the same calls on the provider",
            round(ratio, 2),
            "x",
            "<= 3",
            ratio <= 3,
            f"{len(single) * rounds} scenarios; engine {engine:.2f}s, bare {bare:.2f}s",
        )
    ]


def _run_wall(args: list[str]) -> tuple[float, float]:
    """Wall seconds of one `conformance run`, and the cores it kept busy on average (CPU
    seconds of the run and its worker processes over wall seconds)."""
    out = tempfile.mkdtemp(prefix="bench-")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--out", out, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(
            f"conformance run {' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu / wall


def parallel(quick: bool) -> list[Figure]:
    """-n 2 against -n 0: on the reference, where a whole ci run is a few seconds of the
    harness's own work (planning is most of it, and with -n the controller and the workers
    each plan), and on a provider whose every operation takes 2 ms on its side, as a real
    system's operations take time: what -n is for."""
    profile = "quick" if quick else "ci"
    figures = []
    sides = (
        ("the reference, isolated", []),
        ("the reference, in-process", ["--in-process"]),
        ("2 ms per operation, isolated", ["--provider", "tests/costly_provider.py:SlowEverything"]),
    )
    for mode, extra in sides:
        serial, serial_cores = _run_wall(["--profile", profile, *extra])
        two, two_cores = _run_wall(["--profile", profile, "-n", "2", *extra])
        speedup = serial / two
        figures.append(
            Figure(
                f"-n 2 vs -n 0 wall time ({profile} profile, {mode})",
                round(speedup, 2),
                "x faster",
                ">= 1.7" if "ms per" in mode else "-",
                speedup >= 1.7 if "ms per" in mode else True,
                f"-n 0 {serial:.1f}s on {serial_cores:.2f} busy cores, -n 2 {two:.1f}s on "
                f"{two_cores:.2f}; {os.cpu_count()} cores",
            )
        )
    return figures


def remote(quick: bool) -> list[Figure]:
    try:
        import remote_ratio  # benchmarks/remote_ratio.py
    except ImportError:
        return [
            Figure(
                "remote vs in-process",
                0,
                "x",
                "<= 1.5",
                False,
                "benchmarks/remote_ratio.py is missing",
            )
        ]
    return [Figure(**f) for f in remote_ratio.figures(quick)]


def extraction(quick: bool) -> list[Figure]:
    import extract_throughput

    with tempfile.TemporaryDirectory() as tmp:
        paths = extract_throughput.generate(500 if quick else 3000, Path(tmp))
        extract_throughput.measure(paths[:50], extract_throughput.FIXTURES / "specs")
        got = extract_throughput.measure(paths, extract_throughput.FIXTURES / "specs")
    rate = got["extract_pages_per_s"]
    return [
        Figure(
            "extraction pages per second (one core, CPU time)",
            rate,
            "pages/s",
            ">= 500",
            rate >= 500,
            f"{got['pages']} pages, {got['specs']} specs",
        )
    ]


SCALE_SCRIPT = """
import resource, sys, time
sys.path.insert(0, {root!r})
started, cpu = time.perf_counter(), time.process_time()
from conformance.spec.catalog import load_catalog
catalog = load_catalog([{specs!r}])
loaded, loaded_cpu = time.perf_counter() - started, time.process_time() - cpu
import pytest
from conformance.runner.session import ConformanceSession
from conformance.provider import load
from pathlib import Path
session = ConformanceSession(catalog, load("reference"), "reference", Path({out!r}))
from conformance.cli.loading import collection_args
files = sorted({{s.file for s in catalog.specs.values()}})
started, cpu = time.perf_counter(), time.process_time()
code = pytest.main([*collection_args(files), "--collect-only", "-p", "no:terminal",
                    "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", {specs!r}],
                   plugins=[session])
collected, collected_cpu = time.perf_counter() - started, time.process_time() - cpu
assert code == 0 and session.stream is not None, f"collection failed: pytest exit {{code}}"
items = session.stream.header["checks_selected"]
print(len(catalog.specs), items, round(loaded, 2), round(collected, 2),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, round(loaded_cpu, 2),
      round(collected_cpu, 2))
"""


def _generate_specs(count: int, folder: Path) -> Path:
    """`count` specs: the bundled ones copied in groups, each group's ids made unique (Gen{g}_)
    and its references to other specs (`method:` of multi-call scenarios, `twin:`) pointing
    into the same group, or into group 0 for the part of the last group that is not copied."""
    import re
    import shutil

    src = ROOT / "specs"
    shutil.copytree(src / "domains", folder / "domains")
    shutil.copy(src / "codes.yaml", folder / "codes.yaml")
    (folder / "gen").mkdir()
    bundled = sorted(
        p
        for p in src.rglob("*.yaml")
        if "domains" not in p.parts and "schema" not in p.parts and p.name != "codes.yaml"
    )
    texts = [p.read_text(encoding="utf-8") for p in bundled]
    ids = [re.search(r"^id: *['\"]?([^'\"\n]+?)['\"]? *$", t, re.M) for t in texts]
    index = {m.group(1): i for i, m in enumerate(ids) if m}
    reference = re.compile(r"(\b(?:method|twin|id): *)(['\"]?)([^\s'\",{}\[\]]+)\2")
    per_group = len(texts)
    for i in range(count):
        group = i // per_group

        def renamed(match: re.Match[str], group: int = group) -> str:
            name = match.group(3)
            if name not in index:
                return match.group(0)
            g = group if group * per_group + index[name] < count else 0
            return f"{match.group(1)}{match.group(2)}Gen{g}_{name}{match.group(2)}"

        text = reference.sub(renamed, texts[i % per_group])
        (folder / "gen" / f"s{i:05d}.yaml").write_text(text, encoding="utf-8")
    return folder


def scale(quick: bool) -> list[Figure]:
    figures = []
    for count in (200, 1000) if quick else (1000, 10000) if FULL else (1000,):
        with tempfile.TemporaryDirectory() as tmp:
            specs = _generate_specs(count, Path(tmp) / "specs")
            script = SCALE_SCRIPT.format(root=str(ROOT), specs=str(specs), out=str(Path(tmp)))
            done = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-800:])
            n, items, loaded, collected, rss_kb, load_cpu, collect_cpu = done.stdout.split()[
                -7:
            ]  # wall times, then CPU times: others share the cores
            figures.append(
                Figure(
                    f"load + check {n} specs", float(loaded), "s", "-", True, f"{load_cpu} s CPU"
                )
            )
            figures.append(
                Figure(
                    f"collect the {items} checks of {n} specs",
                    float(collected),
                    "s",
                    "-",
                    True,
                    f"{collect_cpu} s CPU",
                )
            )
            figures.append(
                Figure(
                    f"peak memory with {n} specs", round(int(rss_kb) / 1024, 1), "MiB", "-", True
                )
            )
    return figures


FULL = False  # --full: also the 10,000-spec scale (a few minutes: generating and loading)

BENCHMARKS: dict[str, Callable[[bool], list[Figure]]] = {
    "plan": planned_run,
    "cel": cel_translation,
    "overhead": harness_overhead,
    "remote": remote,
    "parallel": parallel,
    "extraction": extraction,
    "scale": scale,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples, a few minutes")
    parser.add_argument(
        "--full", action="store_true", help="also scale to 10,000 specs (a few minutes)"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS))
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks.json"))
    args = parser.parse_args(argv)
    global FULL
    FULL = args.full and not args.quick
    figures: list[Figure] = []
    for name in args.only or BENCHMARKS:
        try:
            figures += BENCHMARKS[name](args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            figures.append(Figure(name, 0, "-", "-", False, f"{type(exc).__name__}: {exc}"))
    width = max(len(f.name) for f in figures)
    for f in figures:
        mark = "" if f.goal == "-" else ("  met" if f.met else "  NOT MET")
        print(
            f"{f.name:<{width}}  {f.value:>10} {f.unit:<9} goal {f.goal:<7}{mark}"
            f"{'  (' + f.note + ')' if f.note else ''}"
        )
    machine = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"figures": [asdict(f) for f in figures], "machine": machine}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out} (load average {machine['load_average_1m']} on {machine['cores']} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
