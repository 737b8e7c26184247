"""Known deviations: the checks a provider is allowed to fail, each with a reason.

Like Wine's `todo_wine` and Samba's `knownfail`, a baseline lets a CI pipeline gate on *new*
failures while a provider still has old ones, without hiding them: each entry names a check
by its stable name (`<method id>::<kind>::<case>`), says why, and may expire. An entry that
starts passing is *stale* and fails the run, so the baseline only ever shrinks; an entry past
its expiry fails the run, so nobody forgets it. Flaky checks are listed apart: the run tries
each again when it fails (`RunOptions.flaky`, in every worker), and a flaky check that still
fails is reported, not gated.

File format (YAML):

    baseline: 1
    known:
      - check: IVMGuestOS::Logoff::scenario::the-guest-does-not-answer-in-time
        reason: firmware 2.1 answers E_FAIL; fixed in 2.2
        expires: 2025-09-30          # optional, YYYY-MM-DD; the entry is valid through that day
    flaky:
      - check: IVdsIscsiPortalGroup::RemovePortal::oracle::property
        reason: the array's cache refresh races the second call

Exit codes of a run gated by a baseline (`BaselineOutcome.exit_code`):

    | the run                                                       | exit |
    | ------------------------------------------------------------- | ---- |
    | every selected check passed (not-applicable ones aside)       | 0    |
    | the only failures are listed under `known` (or `flaky`)       | 0    |
    | a failed or errored check not in the baseline (a new failure) | 1    |
    | a `known` entry whose check now passes (stale)                | 1    |
    | a `known` or `flaky` entry past its `expires` date            | 1    |
    | no check ran (nothing selected, or all not applicable)        | 1    |

A baseline only forgives what it lists: with an empty one the gate is exactly that of
`conformance run` without a baseline (a partial run, with checks not applicable or codes
untested but nothing failed, exits 0 either way). A `known` entry whose check is not
applicable this run is neither failing nor stale: it is kept and shown as known. Entries whose
check was not selected this run (`-k`) are reported as not run and do not affect the exit code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import EXIT_FAILS, EXIT_OK
from conformance.reporting.shapes import (
    CheckEntry,
    FamilyEntry,
    Gate,
    GateEntry,
    MethodEntry,
    Summary,
)
from conformance.spec.source import Document, Problem, SourceError, load_file

FORMAT = 1
ENTRY_KEYS = {"check", "reason", "expires"}
FAILING = ("failed", "error")
TODO_REASON = "TODO: why"


@dataclass(frozen=True)
class Entry:
    """One listed check: why it deviates, until when, and where it is written."""

    check: str
    reason: str
    expires: dt.date | None = None
    line: int = 0


@dataclass(frozen=True)
class Baseline:
    file: str
    known: tuple[Entry, ...] = ()
    flaky: tuple[Entry, ...] = ()

    def entry(self, check: str) -> Entry | None:
        return next((e for e in (*self.known, *self.flaky) if e.check == check), None)


@dataclass
class BaselineOutcome:
    """A run's checks sorted against a baseline, and the exit code that follows."""

    new_failures: list[str] = field(default_factory=list)
    known_failures: list[Entry] = field(default_factory=list)
    stale: list[Entry] = field(default_factory=list)
    expired: list[Entry] = field(default_factory=list)
    flaky_failures: list[Entry] = field(default_factory=list)
    not_run: list[Entry] = field(default_factory=list)
    checks_run: int = 0

    @property
    def exit_code(self) -> int:
        """0 when the run passes the gate, 1 otherwise (table in the module docstring)."""
        blocking = self.new_failures or self.stale or self.expired or not self.checks_run
        return EXIT_FAILS if blocking else EXIT_OK

    def headline(self) -> str:
        """The gate's verdict in one line: the last line a run prints, and what the reports
        show (`GATE PASSED: 13 known failures, 0 new`)."""
        known = len(self.known_failures) + len(self.flaky_failures)
        parts = [
            f"{known} known failure{'' if known == 1 else 's'}",
            f"{len(self.new_failures)} new",
        ]
        if self.stale:
            parts.append(f"{len(self.stale)} stale")
        if self.expired:
            parts.append(f"{len(self.expired)} expired")
        if not self.checks_run:
            parts.append("no check ran")
        return f"GATE {'PASSED' if self.exit_code == 0 else 'FAILED'}: {', '.join(parts)}"

    def as_dict(self, file: str = "") -> Gate:
        """results.json's `gate` (a compatible addition): what every report shows of it."""

        def entries(items: list[Entry]) -> list[GateEntry]:
            return [
                {
                    "check": e.check,
                    "reason": e.reason,
                    "expires": e.expires.isoformat() if e.expires else None,
                }
                for e in items
            ]

        return {
            "baseline": file,
            "passed": self.exit_code == 0,
            "line": self.headline(),
            "known": entries(self.known_failures),
            "flaky": entries(self.flaky_failures),
            "new": list(self.new_failures),
            "stale": entries(self.stale),
            "expired": entries(self.expired),
            "not_run": entries(self.not_run),
        }

    def lines(self, file: str = "") -> list[str]:
        """What to print: every reason for the exit code, each naming what to change."""
        at = f"{file}:" if file else "line "
        out = [f"new failure: {n}" for n in self.new_failures]
        out += [
            f"stale baseline entry ({at}{e.line}): {e.check} now passes; remove it"
            for e in self.stale
        ]
        out += [
            f"expired baseline entry ({at}{e.line}): {e.check} expired on "
            f"{e.expires}; fix the provider or renew the entry with a reason"
            for e in self.expired
        ]
        out += [f"known failure: {e.check} ({e.reason})" for e in self.known_failures]
        out += [f"flaky, failed after retries: {e.check} ({e.reason})" for e in self.flaky_failures]
        out += [f"baseline entry not run this time ({at}{e.line}): {e.check}" for e in self.not_run]
        if not self.checks_run:
            out.append("no check ran: nothing was tested")
        return out


# -- loading --------------------------------------------------------------------------------


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline file; raise SourceError listing every problem as file:line."""
    doc = load_file(path)
    problems: list[Problem] = []
    data = doc.data
    if not isinstance(data, dict):
        raise SourceError(
            [doc.problem((), "a baseline is a mapping with `baseline: 1`, `known:` and `flaky:`")]
        )
    if data.get("baseline") != FORMAT:
        problems.append(
            doc.problem(
                ("baseline",) if "baseline" in data else (),
                f"`baseline: {FORMAT}` is required (got {data.get('baseline')!r})",
            )
        )
    for key in sorted(set(data) - {"baseline", "known", "flaky"}, key=str):
        problems.append(
            doc.problem((key,), f"unknown key {key!r} (expected baseline, known, flaky)")
        )
    known = _entries(doc, "known", problems)
    flaky = _entries(doc, "flaky", problems)
    _duplicates(doc, known, flaky, problems)
    if problems:
        raise SourceError(problems)
    return Baseline(doc.file, tuple(known), tuple(flaky))


def _entries(doc: Document, key: str, problems: list[Problem]) -> list[Entry]:
    raw = doc.data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(
            doc.problem((key,), f"`{key}` must be a list of {{check, reason, expires}} entries")
        )
        return []
    out = []
    for index, item in enumerate(raw):
        entry = _entry(doc, (key, index), item, problems)
        if entry is not None:
            out.append(entry)
    return out


def _entry(
    doc: Document, path: tuple[str, int], item: Any, problems: list[Problem]
) -> Entry | None:
    if not isinstance(item, dict):
        problems.append(doc.problem(path, "an entry is a mapping with `check` and `reason`"))
        return None
    before = len(problems)
    for key in sorted(set(item) - ENTRY_KEYS, key=str):
        problems.append(
            doc.problem((*path, key), f"unknown key {key!r} (expected check, reason, expires)")
        )
    check = item.get("check")
    if not isinstance(check, str) or check.count("::") < 2:
        problems.append(
            doc.problem(
                (*path, "check") if "check" in item else path,
                f"`check` must be a check's stable name "
                f"`<method id>::<kind>::<case>`, got {check!r}",
            )
        )
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append(
            doc.problem(
                (*path, "reason") if "reason" in item else path,
                "`reason` is required: say why the check deviates",
            )
        )
    expires = _date(doc, path, item.get("expires"), problems)
    if len(problems) > before or not (isinstance(check, str) and isinstance(reason, str)):
        return None  # (either not a string: a problem above)
    return Entry(check, reason, expires, doc.line(path))


def _date(
    doc: Document, path: tuple[str, int], value: Any, problems: list[Problem]
) -> dt.date | None:
    """`expires` as a date: YAML reads an unquoted 2025-09-30 as one, a quoted one as text."""
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(
        doc.problem((*path, "expires"), f"`expires` must be a date YYYY-MM-DD, got {value!r}")
    )
    return None


def _duplicates(
    doc: Document, known: list[Entry], flaky: list[Entry], problems: list[Problem]
) -> None:
    seen: dict[str, Entry] = {}
    for entry in (*known, *flaky):
        if entry.check in seen:
            problems.append(
                Problem(
                    doc.file,
                    entry.line,
                    "",
                    f"{entry.check} is listed twice (first at line {seen[entry.check].line})",
                )
            )
        else:
            seen[entry.check] = entry


# -- applying -------------------------------------------------------------------------------


def apply_baseline(
    summary: Summary, baseline: Baseline, today: dt.date | None = None
) -> BaselineOutcome:
    """Sort a run's checks against the baseline (module docstring: the exit-code table)."""
    today = today or dt.date.today()
    statuses = _statuses(summary)
    known = {e.check: e for e in baseline.known}
    flaky = {e.check: e for e in baseline.flaky}
    outcome = BaselineOutcome(checks_run=_checks_run(summary))
    for name, status in statuses.items():
        listed = known.get(name) or flaky.get(name)
        if status in FAILING and listed is None:
            outcome.new_failures.append(name)
        elif status != "passed" and name in known:
            outcome.known_failures.append(known[name])
        elif status in FAILING and name in flaky:
            outcome.flaky_failures.append(flaky[name])
        elif status == "passed" and name in known:
            outcome.stale.append(known[name])
    outcome.expired = [
        e for e in (*baseline.known, *baseline.flaky) if e.expires is not None and e.expires < today
    ]
    outcome.not_run = [e for e in baseline.known if e.check not in statuses]
    return outcome


def _checks(summary: Summary) -> list[CheckEntry]:
    """Every check in results.json: the methods' and the family-level ones (stateful)."""
    groups: list[MethodEntry | FamilyEntry] = [
        *summary.get("methods", {}).values(),
        *(summary.get("families") or {}).values(),
    ]
    return [c for info in groups for c in info.get("checks", [])]


def _statuses(summary: Summary) -> dict[str, str]:
    return {str(c.get("name")): str(c.get("status")) for c in _checks(summary)}


def _checks_run(summary: Summary) -> int:
    """Checks that ran to a verdict that proves something: passed, failed or errored."""
    totals = summary.get("totals", {})
    return (
        int(totals.get("passed", 0)) + int(totals.get("failed", 0)) + int(totals.get("errors", 0))
    )


# -- writing --------------------------------------------------------------------------------


def write_baseline(summary: Summary, path: str | Path, keep: Baseline | None = None) -> Path:
    """Write the run's failures as a baseline, so that the same run then passes the gate.

    Each failed or errored check gets the reason "TODO: why" (a person must fill it in) and
    no expiry. Entries of `keep` (the baseline being refreshed) keep their reason and
    expiry while their check still fails; its flaky list is kept as it is.
    """
    previous = {e.check: e for e in keep.known} if keep else {}
    flaky = {e.check for e in keep.flaky} if keep else set()
    known = []
    for check in _checks(summary):
        name, status = str(check.get("name")), check.get("status")
        if status not in FAILING or name in flaky:
            continue
        old = previous.get(name)
        known.append(
            _entry_data(name, old.reason if old else TODO_REASON, old.expires if old else None)
        )
    data: dict[str, Any] = {"baseline": FORMAT, "known": known}
    if keep and keep.flaky:
        data["flaky"] = [_entry_data(e.check, e.reason, e.expires) for e in keep.flaky]
    out = Path(path)
    header = (
        "# Known deviations of this provider (conformance baseline). Each entry names a\n"
        "# check, says why it deviates and may expire (YYYY-MM-DD). Replace every\n"
        f"# '{TODO_REASON}' with the reason.\n"
    )
    out.write_text(
        header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100),
        encoding="utf-8",
    )
    return out


def _entry_data(check: str, reason: str, expires: dt.date | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"check": check, "reason": reason}
    if expires is not None:
        entry["expires"] = expires
    return entry
