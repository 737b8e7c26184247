"""Extraction accuracy: return codes right on pages the extractor was not written for.

    python benchmarks/extract_accuracy.py [--corpus ../shared/docs-wide] [--out FILE.json]

Scores `conformance extract` (the bundled specs as knowledge, as the command line uses them)
against the hand-checked `truth.yaml` of the development corpus (format in its README). A row
is right when its symbol is extracted as a code of the page's method with the value the page
prints or, where the page prints none, win32metadata's (`metadata_value`); a row the page
gives no symbol is right when a code has its value; a row with neither value is right when
the symbol is extracted with no value. A trap is a `not_returns` symbol extracted as a code.
Figures: rows right overall, per shape of the page, per format and per place (`where`); traps
taken; codes extracted that the truth does not list (extras); the misses, one line each.

Then the seed and family pages (../shared/seeds, ../shared/docs): each spec they produce is
compared with the bundled hand-checked spec of the same method (codes whose `source` is a page
we read), as the extraction tests do. Figures are printed and written as JSON; nothing is
asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from conformance.extract.command import extract  # noqa: E402

BUNDLED = ROOT / "specs"


@dataclass
class Score:
    """Right/total counters under one heading (overall, a shape, a format, a place)."""

    right: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)

    def add(self, key: str, ok: bool) -> None:
        self.total[key] += 1
        self.right[key] += ok

    def line(self, key: str) -> str:
        r, t = self.right[key], self.total[key]
        return f"{r:4d}/{t:<4d} {100 * r / t:5.1f} %" if t else "   -"

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            k: {
                "right": self.right[k],
                "total": self.total[k],
                "percent": round(100 * self.right[k] / self.total[k], 1),
            }
            for k in sorted(self.total)
        }


def expected_value(row: dict[str, Any]) -> int | None:
    """What the row's code must carry: the printed value, else win32metadata's, else None."""
    return row["value"] if row.get("value") is not None else row.get("metadata_value")


def row_right(row: dict[str, Any], codes: list[dict[str, Any]]) -> tuple[bool, str]:
    """Is the truth row among the extracted codes? With a one-line reason when it is not."""
    symbol, want = row.get("symbol"), expected_value(row)
    if symbol is None:
        ok = any(c.get("value") == want for c in codes)
        return ok, "" if ok else f"no code with value {_hex(want)}"
    found = [c for c in codes if c.get("symbol") == symbol]
    if not found:
        return False, "not extracted"
    got = found[0].get("value")
    if got != want:
        return False, f"value {_hex(got)}, want {_hex(want)}"
    return True, ""


def _hex(value: int | None) -> str:
    return "null" if value is None else f"0x{value:08X}"


def format_of(spec) -> str:
    return spec.pages[0].format if spec.pages else "?"


def score_corpus(corpus: Path) -> dict[str, Any]:
    truth = yaml.safe_load((corpus / "truth.yaml").read_text(encoding="utf-8"))
    overall, shapes, formats, places = Score(), Score(), Score(), Score()
    traps: list[str] = []
    refused: list[str] = []
    extras: list[str] = []
    misses: list[str] = []
    for entry in truth:
        path = corpus / entry["file"]
        result = extract([path], BUNDLED)
        specs = result.specs
        codes = [c for s in specs for c in s.data["returns"]["codes"]]
        fmt = format_of(specs[0]) if specs else "unreadable"
        for row in entry.get("returns") or []:
            ok, why = row_right(row, codes)
            overall.add("all", ok)
            formats.add(fmt, ok)
            places.add(row.get("where", "?"), ok)
            for shape in entry.get("shape") or []:
                shapes.add(shape, ok)
            if not ok:
                misses.append(f"{entry['file']}: {row.get('symbol')} ({row.get('where')}): {why}")
        trap_names = set(entry.get("not_returns") or [])
        listed = {r.get("symbol") for r in entry.get("returns") or []}
        for code in codes:
            if code.get("symbol") in trap_names:
                traps.append(f"{entry['file']}: {code['symbol']}")
            elif code.get("symbol") not in listed and not (
                code.get("symbol") is None
                and any(r.get("symbol") is None for r in entry.get("returns") or [])
            ):
                extras.append(f"{entry['file']}: {code.get('symbol')} {_hex(code.get('value'))}")
        refused.extend(
            f"{entry['file']}: {f.message}"
            for s in specs
            for f in s.findings
            if f.kind == "symbol-exists-nowhere"
        )
        for error in result.errors + result.skipped:
            misses.append(f"{entry['file']}: page not read: {error}")
    return {
        "rows": overall.as_dict()["all"],
        "per_shape": shapes.as_dict(),
        "per_format": formats.as_dict(),
        "per_place": places.as_dict(),
        "traps_taken": traps,
        "refused": refused,
        "extras": extras,
        "misses": misses,
        "_scores": (overall, shapes, formats, places),
    }


def score_family_pages() -> dict[str, Any] | None:
    """Seed and family pages against the hand-checked specs (as tests/extract/test_extract.py
    does)."""
    seeds, docs = SHARED / "seeds", SHARED / "docs"
    if not seeds.is_dir() or not docs.is_dir():
        return None
    pages = sorted(seeds.glob("*.txt")) + sorted(
        p for p in docs.glob("*.md") if p.name != "SOURCES.md"
    )
    result = extract(pages, BUNDLED)
    right = total = 0
    misses: list[str] = []
    for spec in result.specs:
        hand = _hand_codes(spec.id, {p.doc for p in spec.pages})
        if hand is None:
            continue
        got = [(c["symbol"], c["value"]) for c in spec.data["returns"]["codes"]]
        total += len(hand)
        right += sum(1 for h in hand if h in got)
        extra = [g for g in got if g not in hand]
        missing = [h for h in hand if h not in got]
        if extra or missing:
            misses.append(f"{spec.id}: missing {missing}, extra {extra}")
    return {
        "codes": {
            "right": right,
            "total": total,
            "percent": round(100 * right / total, 1) if total else 0.0,
        },
        "specs": len(result.specs),
        "errors": [str(e) for e in result.errors],
        "differences": misses,
    }


def _hand_codes(spec_id: str, docs_read: set[str]) -> list[tuple] | None:
    files = list(BUNDLED.rglob(spec_id.replace("::", ".") + ".yaml"))
    if len(files) != 1:
        return None
    data = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    return [
        (c["symbol"], c["value"])
        for c in data["returns"]["codes"]
        if c.get("source") is None or c["source"] in docs_read
    ]


def report(corpus: dict[str, Any], family: dict[str, Any] | None) -> None:
    overall, shapes, formats, places = corpus.pop("_scores")
    print(f"docs-wide rows right: {overall.line('all')}")
    for title, score in (("per shape", shapes), ("per format", formats), ("per place", places)):
        print(f"  {title}:")
        for key in sorted(score.total):
            print(f"    {key:20s} {score.line(key)}")
    for key, title, tag in (
        ("traps_taken", "trap rows taken as codes", "trap  "),
        ("refused", "symbols refused as defined nowhere (findings)", "refused "),
        ("extras", "codes the truth does not list", "extra "),
        ("misses", "misses", "miss  "),
    ):
        print(f"  {title}: {len(corpus[key])}")
        for line in corpus[key]:
            print(f"    {tag}{line}")
    if family is None:
        print("seed and family pages: not found, skipped")
        return
    codes = family["codes"]
    print(
        f"seed and family pages: {codes['right']}/{codes['total']} hand-checked codes "
        f"({codes['percent']} %), {family['specs']} specs, {len(family['errors'])} errors"
    )
    for line in family["differences"]:
        print(f"    differs {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(SHARED / "docs-wide"))
    parser.add_argument("--out", default=str(ROOT / "reports" / "extract_accuracy.json"))
    args = parser.parse_args(argv)
    corpus_dir = Path(args.corpus)
    if not (corpus_dir / "truth.yaml").is_file():
        print(f"no truth.yaml in {corpus_dir}: nothing to score", file=sys.stderr)
        return 2
    corpus = score_corpus(corpus_dir)
    family = score_family_pages()
    report(corpus, family)
    Path(args.out).write_text(
        json.dumps({"docs_wide": corpus, "seeds_and_docs": family}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
