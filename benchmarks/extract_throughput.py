"""Extraction throughput: pages per second on one core, from pages generated off the fixtures.

    python benchmarks/extract_throughput.py [--pages 3000] [--no-shapes] [--out FILE.json]

Each fixture page (tests/extract/fixtures: sdk-api source, win32 source, rendered English and
localized text; with the pages of every shape in tests/extract/fixtures/shapes unless
`--no-shapes`) is copied many times with its method renamed and its code values shifted, so
no two pages are alike and the groups merge as real ones do. Two figures, measured in one run:
`parse` (read one page into facts) and `extract` (read from disk, group, merge, find defects:
what `conformance extract` does before writing). The goal is >= 500 pages/s for `extract`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "extract" / "fixtures"
SHAPES = FIXTURES / "shapes"
sys.path.insert(0, str(ROOT))

from conformance.extract.command import extract  # noqa: E402
from conformance.extract.formats import parse_page  # noqa: E402

_NAMES = re.compile(
    r"IContosoWidget|IContosoGadget|ContosoReset|Frob|Spin|Stop|"
    r"\bI?Fabrikam[A-Z][A-Za-z]*"
)
_VALUES = re.compile(r"0x8004(10[0-9A-F]{2})")


def variant(text: str, i: int) -> str:
    """The page with method names made unique and its codes moved to their own range."""
    text = _NAMES.sub(lambda m: f"{m.group(0)}{i}", text)
    return _VALUES.sub(lambda m: f"0x80{(0x41000 + i * 16 + int(m.group(1), 16) % 16):06X}", text)


def generate(count: int, folder: Path, shapes: bool = True) -> list[Path]:
    templates = sorted(p for p in FIXTURES.glob("*.*") if p.is_file())
    if shapes:
        templates += sorted(p for p in SHAPES.glob("*.*") if p.is_file())
    paths = []
    for i in range(count):
        template = templates[i % len(templates)]
        path = folder / f"{i:05d}_{template.name}"
        path.write_text(
            variant(template.read_text(encoding="utf-8"), i // len(templates)), encoding="utf-8"
        )
        paths.append(path)
    return paths


def measure(paths: list[Path], specs: Path | None) -> dict[str, float]:
    """CPU seconds of this process (robust when other work shares the machine) and wall."""
    texts = [(p.read_bytes(), p.name) for p in paths]
    cpu, wall = time.process_time(), time.perf_counter()
    for raw, name in texts:
        parse_page(raw, name)
    parse_cpu, parse_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    result = extract(paths, specs)
    extract_cpu, extract_wall = time.process_time() - cpu, time.perf_counter() - wall
    assert not result.errors, result.errors[:3]
    n = len(paths)
    return {
        "pages": n,
        "specs": len(result.specs),
        "parse_pages_per_s": round(n / parse_cpu, 1),
        "extract_pages_per_s": round(n / extract_cpu, 1),
        "parse_pages_per_wall_s": round(n / parse_wall, 1),
        "extract_pages_per_wall_s": round(n / extract_wall, 1),
        "parse_ms_per_page": round(1000 * parse_cpu / n, 3),
        "extract_ms_per_page": round(1000 * extract_cpu / n, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument(
        "--no-shapes",
        action="store_true",
        help="only the original fixtures (the figures before issue 19)",
    )
    parser.add_argument("--out", default=str(ROOT / "reports" / "extract_throughput.json"))
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as promised
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(args.pages, Path(tmp), shapes=not args.no_shapes)
        measure(paths[:50], FIXTURES / "specs")  # warm up imports and caches
        figures = measure(paths, FIXTURES / "specs")
    figures.update(
        {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cores_used": 1,
            "goal_pages_per_s": 500,
            "shapes": not args.no_shapes,
            "clock": "process CPU time",
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(
        f"parse:   {figures['parse_pages_per_s']:8.1f} pages/s of CPU "
        f"({figures['parse_ms_per_page']} ms/page; {figures['parse_pages_per_wall_s']} wall)"
    )
    print(
        f"extract: {figures['extract_pages_per_s']:8.1f} pages/s of CPU "
        f"({figures['extract_ms_per_page']} ms/page; {figures['extract_pages_per_wall_s']} wall;"
        f" {figures['specs']} specs from {figures['pages']} pages; goal 500)"
    )
    print(f"load average during the run: {figures['load_average_1m']} (2 cores)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
