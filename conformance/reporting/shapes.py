"""The shapes of results.json (stable, `schema` 1): what `results.summarize` writes and every
report reads.

The top level (`Summary`) is the run's header (`Header`: what the session knew before the
first check) with the totals, the operations, the coverage reached, each method
(`MethodEntry`: its verdict, its codes, its checks, its plan) and each family (`FamilyEntry`:
its family-level checks and its planned sequences). After the run, `cli` may add the
baseline's `gate` (`Gate`, from `baseline.BaselineOutcome.as_dict`) and the `comparison` with
an older run (`Comparison`, from `diff.compare`). A check's `repro` is a reproduction
(`conformance.engine.repro`). The plans are made by the engine (`SpecPlan.summary`,
`FamilyPlan.summary`, `RunPlan.summary`), which cannot import this module: the shapes of
what they give are here, beside the rest of the file.

A reader still checks what it reads (a results.json from an older run, or written by hand,
may lack a key); tests/reporting/test_shapes.py holds a real run's results.json to these.
"""

# No `from __future__ import annotations` here: a TypedDict tells its optional keys
# (`__optional_keys__`) only from annotations it can evaluate.

from typing import Any, NotRequired, TypedDict

from conformance.engine.repro import Repro

# -- the parts --------------------------------------------------------------------------------


class Operations(TypedDict):
    """Provider operations by kind (`Tally.as_dict`), and the round trips (`batches`)."""

    total: int
    reset: int
    setup: int
    call: int
    observe: int
    batches: int


class Covered(TypedDict):
    """How many coverage items of one kind the plan's cases reach, of how many."""

    covered: int
    total: int


class Missing(TypedDict):
    """A coverage item no case reaches (or the budget left out), and why."""

    item: str
    kind: str
    why: str


# goal kind (`rules`, `codes`, ..., `pairs`, `steps`, `transitions`) -> Covered; `unreachable`
# and `left_out` -> the Missing items
PlanCoverage = dict[str, Covered | list[Missing]]


class MethodPlanSummary(TypedDict):
    """A method's planned cases (`SpecPlan.summary`), with the coverage its cases reached."""

    cases: int
    candidates: int
    calls_per_case: int
    observe: list[str]
    operations: Operations
    seconds: float
    coverage: PlanCoverage
    error: NotRequired[str]  # the rules could not be evaluated on some case


class FamilyPlanSummary(TypedDict):
    """A family's planned sequences (`FamilyPlan.summary`)."""

    sequences: int
    candidates: int
    observe: list[str]
    operations: Operations
    seconds: float
    coverage: PlanCoverage


class RunPlanSummary(TypedDict):
    """The run's plan (`RunPlan.summary`): its size, its estimate, what the budget left out."""

    cases: int
    sequences: int
    operations: Operations
    seconds: float
    coverage: dict[str, Covered]
    budget: str | None
    left_out: int
    families: dict[str, FamilyPlanSummary]


class Actual(TypedDict):
    """What the provider gave (`judging.details`): codes as `SYMBOL (0x...)`."""

    hresult: str
    completion: str | None
    outputs: dict[str, Any]


class Details(TypedDict):
    """What a person needs beside a failure's message (`judging.details`)."""

    expected: list[str]
    actual: NotRequired[Actual]
    state_before: NotRequired[dict[str, Any]]
    state_expected_after: NotRequired[dict[str, Any]]


class RegressionOutcome(TypedDict):
    """A saved regression a check replayed first (`checks.replay_regressions`)."""

    file: str
    status: str  # fixed | fails | not applicable
    message: str


class ObservedHit(TypedDict):
    """An `observed` entry that excused results of one check (`ObservedPolicy.note`)."""

    method: str
    entry: int
    windows: str
    code: str
    instead_of: str | None
    expected: list[str]
    source: str
    note: str
    provider_windows: str | None
    times: int


class ObservedUse(TypedDict):
    """An `observed` entry that stood in for a documented code of a method, over the run
    (`results.observed_codes`)."""

    entry: int
    windows: str
    code: str
    source: str
    checks: list[str]
    times: int


# -- checks, methods, families ----------------------------------------------------------------


class CheckEntry(TypedDict):
    """One check, as a family-level check is written under `families` (a method's has
    `codes` too: `MethodCheckEntry`)."""

    name: str  # stable: <method id or family>::<kind>::<case>
    kind: str
    status: str  # passed | failed | not_applicable | error
    message: str
    repro: Repro | None
    details: Details | None
    duration: float
    operations: NotRequired[Operations]
    regressions: NotRequired[list[RegressionOutcome]]
    observed: NotRequired[list[ObservedHit]]


class MethodCheckEntry(CheckEntry):
    """One check of a method, with the codes it touched (code -> its status)."""

    codes: dict[str, str]


class MethodEntry(TypedDict):
    """One method of the run (`results.method_verdict` gives its verdict)."""

    verdict: str  # conforms | fails | partial | not-applicable
    family: str
    codes: dict[str, str]  # documented code -> pass | fail | untested | not-applicable
    checks: list[MethodCheckEntry]
    plan: NotRequired[MethodPlanSummary]
    observed: NotRequired[dict[str, list[ObservedUse]]]  # documented code -> what stood in


class FamilyEntry(TypedDict):
    """One family of the run: its family-level checks and its planned sequences."""

    verdict: str
    checks: list[CheckEntry]  # those that passed or blamed no selected method
    plan: NotRequired[FamilyPlanSummary]


# -- added after the run ----------------------------------------------------------------------


class GateEntry(TypedDict):
    check: str
    reason: str
    expires: str | None  # YYYY-MM-DD


class Gate(TypedDict):
    """The baseline's verdict on the run (`BaselineOutcome.as_dict`)."""

    baseline: str  # the baseline file
    passed: bool
    line: str  # GATE PASSED: ... / GATE FAILED: ...
    known: list[GateEntry]
    flaky: list[GateEntry]
    new: list[str]
    stale: list[GateEntry]
    expired: list[GateEntry]
    not_run: list[GateEntry]


class StatusChange(TypedDict):
    check: str
    old: str
    new: str


class MethodChange(TypedDict):
    verdict: list[str | None]  # [old, new]
    codes: dict[str, list[str | None]]  # code -> [old, new]


class Comparison(TypedDict):
    """What changed from an older run (`diff.compare`)."""

    old: str
    new: str
    newly_failing: list[str]
    newly_passing: list[str]
    changed: list[StatusChange]
    added: list[str]
    removed: list[str]
    methods: dict[str, MethodChange]
    operations: dict[str, list[int | None]]  # total and each kind -> [old, new]


# -- the whole file ---------------------------------------------------------------------------


class Totals(TypedDict):
    passed: int
    failed: int
    not_applicable: int
    errors: int


class Header(TypedDict):
    """What the session knows before the first check (the first line of results.jsonl)."""

    run: str  # the run's id: results.jsonl lines of another run are left out
    provider: str
    provider_path: str  # as a command run from any folder names it
    profile: str
    seed: int | None
    versions: dict[str, str]
    differential: bool
    observed: str  # the --observed policy
    capabilities: dict[str, Any]  # as the provider declares them
    plan: RunPlanSummary | None
    checks_selected: int
    workers: NotRequired[int]  # a parallel run: the workers whose results were merged


class Summary(Header):
    """results.json."""

    schema: int
    totals: Totals
    operations: Operations
    coverage: dict[str, Covered]  # goal kind -> reached over every method and family
    methods: dict[str, MethodEntry]
    families: dict[str, FamilyEntry]
    gate: NotRequired[Gate]
    comparison: NotRequired[Comparison]
