"""The plan: chosen with the oracle before the provider is touched, the same whatever the seed,
each case executed once for every check, within a budget, priced by the provider's costs.

Runs go through `conformance.cli.main.main` in-process and read what a user reads: the exit code,
what was printed, results.json and report.html.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broken_providers import SHUTDOWN
from support import TESTS, catalog_parsed_once, cli, results, verdicts

from conformance.engine.candidates import Context
from conformance.engine.goals import goals_of
from conformance.engine.kinds import KINDS, kinds_for
from conformance.engine.operations import Budget, Costs, CostsError, parse_budget
from conformance.engine.plan import plan_spec
from conformance.engine.runplan import rule_warnings
from conformance.engine.strategies import Allowed
from conformance.engine.verdict import Settings
from conformance.spec.catalog import load_catalog
from conformance.spec.paths import default_specs_dir

HERE = TESTS
BROKEN = HERE / "broken_providers.py"
LOGOUT_SPEC = "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"
COSTLY = HERE / "costly_provider.py"


@pytest.fixture(scope="module", autouse=True)
def _catalog_parsed_once() -> Iterator[None]:
    with catalog_parsed_once():
        yield


def every_check(summary: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [*summary["methods"].values(), *summary.get("families", {}).values()]
    return [c for g in groups for c in g["checks"]]


# -- the whole catalog, planned and run ----------------------------------------------------


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, Path, str]]:
    """Two default (ci) runs of the whole catalog on the reference, with different seeds."""
    runs = []
    for seed in ("1", "987654"):
        out = tmp_path_factory.mktemp(f"seed{seed}")
        code, stdout, stderr = cli(
            "run", "--provider", "reference", "--out", str(out), "--seed", seed, "--in-process"
        )
        assert code == 0, stdout + stderr
        runs.append((code, out, stdout))
    return runs


@pytest.mark.slow
def test_a_ci_run_covers_the_catalog_with_every_method_conforming(
    seeded_runs: list[tuple[int, Path, str]], record_property: Callable[[str, object], None]
) -> None:
    _, out, stdout = seeded_runs[0]
    summary = results(out)
    assert {m["verdict"] for m in summary["methods"].values()} == {"conforms"}
    for method, info in summary["methods"].items():
        assert set(info["codes"].values()) == {"pass"}, method
    coverage = summary["plan"]["coverage"]
    for kind in ("rules", "codes", "effects", "arguments", "faults"):
        assert coverage[kind]["covered"] == coverage[kind]["total"] > 0, kind
    # what no case reaches is listed with a reason, method by method
    unreachable = [
        e for m in summary["methods"].values() for e in m["plan"]["coverage"]["unreachable"]
    ]
    assert len(unreachable) == coverage["conditions"]["total"] - coverage["conditions"]["covered"]
    assert all(e["kind"] == "conditions" and e["why"] for e in unreachable)
    operations = summary["operations"]
    record_property("operations", operations["total"])
    assert operations["total"] <= 20_000, operations  # 1,313,209 before the plan
    assert operations["total"] == sum(c["operations"]["total"] for c in every_check(summary))
    assert stdout.index("plan: ") < stdout.index("CONFORMS")  # printed before the checks ran


@pytest.mark.slow
def test_two_seeds_give_the_same_plan_operations_and_verdicts(
    seeded_runs: list[tuple[int, Path, str]],
) -> None:
    (_, first, _), (_, second, _) = seeded_runs
    a, b = results(first), results(second)
    assert a["seed"] != b["seed"]
    assert a["plan"] == b["plan"]
    assert a["operations"] == b["operations"]
    assert verdicts(first) == verdicts(second)
    ops = {c["name"]: c["operations"] for c in every_check(a)}
    assert ops == {c["name"]: c["operations"] for c in every_check(b)}
    for method in a["methods"]:
        assert a["methods"][method]["plan"] == b["methods"][method]["plan"], method


def test_each_planned_case_runs_once_for_every_judge(tmp_path: Path) -> None:
    """The first property check of a spec executes the plan; the others judge the same
    observations and ask the provider nothing."""
    code, _, _ = cli(
        "run",
        "--provider",
        "reference",
        "--out",
        str(tmp_path),
        "--in-process",
        "-k",
        f"{LOGOUT_SPEC} and not scenario",
    )
    assert code == 0
    summary = results(tmp_path)
    (method,) = summary["methods"].values()
    by_kind = {c["kind"]: c["operations"] for c in method["checks"]}
    assert set(by_kind) == {"oracle", "closed-world", "out-params", "repeat"}
    plan = method["plan"]
    assert by_kind["oracle"]["reset"] == plan["cases"]
    assert by_kind["oracle"]["call"] == 2 * plan["cases"]  # repeat's second call, same case
    for kind in ("closed-world", "out-params", "repeat"):
        assert by_kind[kind]["total"] == 0, kind
    assert {c["message"] for c in method["checks"]} == {f"{plan['cases']} planned cases"}


def test_isolated_and_in_process_runs_make_the_same_operations(tmp_path: Path) -> None:
    keyword = f"{LOGOUT_SPEC}"
    inside, worker = tmp_path / "in", tmp_path / "worker"
    assert cli("run", "--out", str(inside), "--in-process", "-k", keyword)[0] == 0
    assert cli("run", "--out", str(worker), "-k", keyword)[0] == 0
    a, b = results(inside)["operations"], results(worker)["operations"]
    assert {k: v for k, v in a.items() if k != "batches"} == {
        k: v for k, v in b.items() if k != "batches"
    }
    assert a["batches"] == 0 < b["batches"] <= b["reset"] * 2  # one round trip a case, or so


# -- what the plan covers catches what a smaller plan does not -----------------------------


def _forced(repro: dict[str, Any]) -> bool:
    return repro["call"]["isForced"] is True


def _longest(repro: dict[str, Any]) -> bool:
    return len(repro["call"]["TargetName"]) == 223


@pytest.mark.parametrize(
    ("provider", "spec_file", "goal", "reproduces"),
    [
        ("IgnoresForce", "IVMGuestOS.Shutdown.yaml", "condition:9:1", _forced),  # MC/DC
        (
            "LongNameRefused",
            "AddIScsiStaticTargetW.yaml",
            "arg:TargetName:longest allowed (223)",
            _longest,
        ),  # an argument class
    ],
)
def test_the_ci_plan_has_a_case_for_the_item_that_catches_it(
    provider: str,
    spec_file: str,
    goal: str,
    reproduces: Callable[[dict[str, Any]], bool],
    tmp_path: Path,
) -> None:
    """`quick` plans for every rule and code only; `ci` also for each operand of a rule
    deciding it alone (MC/DC) and every argument class, which is what finds a provider that
    skips one condition or mishandles one boundary."""
    keyword = f"{spec_file} and oracle"
    plans = {
        profile: json.loads(cli("plan", "--json", "--profile", profile, "-k", keyword)[1])
        for profile in ("quick", "ci")
    }
    covers = {
        profile: {k for m in plan["methods"].values() for c in m["planned"] for k in c["covers"]}
        for profile, plan in plans.items()
    }
    assert goal not in covers["quick"] and goal in covers["ci"]
    cli(
        "run",
        "--provider",
        f"{BROKEN}:{provider}",
        "--out",
        str(tmp_path),
        "--in-process",
        "-k",
        keyword,
    )
    (check,) = [c for m in results(tmp_path)["methods"].values() for c in m["checks"]]
    assert check["status"] == "failed"
    assert reproduces(check["repro"]), check["repro"]


def test_a_failure_is_shrunk_to_what_breaks(tmp_path: Path) -> None:
    cli(
        "run",
        "--provider",
        f"{BROKEN}:IgnoresForce",
        "--out",
        str(tmp_path),
        "--in-process",
        "-k",
        "IVMGuestOS.Shutdown.yaml and oracle",
    )
    (method,) = [m for m in results(tmp_path)["methods"].values()]
    (check,) = method["checks"]
    assert check["status"] == "failed"
    repro = check["repro"]
    assert repro["given"] == [
        {"virtual_machine": "VM1", "screen_locked": True, "additions": True, "execute_access": True}
    ]
    assert repro["call"] == {"this": "VM1", "isForced": True}
    assert repro["expect"] == "S_OK"
    assert method["checks"][0]["name"] == f"{SHUTDOWN}::oracle::property"


# -- budgets and costs -------------------------------------------------------------------


def test_parse_budget() -> None:
    assert parse_budget("10m") == Budget(seconds=600.0, source="10m")
    assert parse_budget("90s").seconds == 90.0
    assert parse_budget("5000ops").operations == 5000
    assert parse_budget("1.5h").seconds == 5400.0
    for bad in ("", "ten minutes", "5000 bananas", "0.5ops", "-3s"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_costs_are_read_and_checked() -> None:
    costs = Costs.of({"costs": {"reset": 2, "setup": {"portal_group": 1.5, "*": 0.2}, "call": 0.1}})
    assert costs.of_op("reset") == 2.0
    assert costs.of_op("setup", "portal_group") == 1.5
    assert costs.of_op("setup", "target") == 0.2
    assert costs.of_op("call", "anything") == 0.1
    assert costs.of_op("observe", "sessions") == Costs().of_op("observe")
    for bad, place in (
        ({"costs": []}, "not a map"),
        ({"costs": {"rest": 1}}, "['rest']"),
        ({"costs": {"setup": {"target": -1}}}, "['setup']['target']"),
        ({"costs": {"call": float("nan")}}, "['call']"),
        ({"costs": {"reset": True}}, "['reset']"),
    ):
        with pytest.raises(CostsError, match=place.replace("[", r"\[").replace("]", r"\]")):
            Costs.of(bad)


def test_a_provider_with_malformed_costs_is_unavailable(tmp_path: Path) -> None:
    code, _, err = cli(
        "run",
        "--provider",
        f"{COSTLY}:MalformedCosts",
        "--out",
        str(tmp_path),
        "--in-process",
        "-k",
        LOGOUT_SPEC,
    )
    assert code == 3
    assert "capabilities()['costs']['setup']" in err


def test_a_budget_of_operations_keeps_rules_and_codes_first(tmp_path: Path) -> None:
    code, stdout, _ = cli(
        "plan", "--json", "-k", f"{LOGOUT_SPEC} and not scenario", "--budget", "60ops"
    )
    assert code == 0
    plan = json.loads(stdout)
    assert plan["operations"]["total"] <= 60
    assert plan["budget"] == "60 operations" and plan["left_out"] > 0
    (method,) = plan["methods"].values()
    left = method["coverage"]["left_out"]
    assert left and all("budget" in e["why"] for e in left)
    kinds_left = {e["kind"] for e in left}
    # tier 0 (rules, codes, effects) before tier 1: nothing of tier 0 left out unless all of
    # tier 1 was
    if kinds_left & {"rules", "codes", "effects"}:
        assert method["coverage"]["conditions"]["covered"] == 0
    # the run keeps to the plan
    out = tmp_path / "run"
    code, _, _ = cli(
        "run",
        "--out",
        str(out),
        "--in-process",
        "-k",
        f"{LOGOUT_SPEC} and not scenario",
        "--budget",
        "60ops",
    )
    summary = results(out)
    assert summary["operations"]["total"] <= 60
    assert summary["plan"]["left_out"] == plan["left_out"]


def test_a_time_budget_uses_the_declared_costs() -> None:
    code, stdout, _ = cli(
        "plan",
        "--json",
        "--provider",
        f"{COSTLY}:SlowSetups",
        "--in-process",
        "-k",
        "LogoutFromTarget and not scenario",
    )
    assert code == 0
    full = json.loads(stdout)
    (method,) = full["methods"].values()
    setups = method["operations"]["setup"]
    others = method["operations"]["total"] - setups
    assert method["seconds"] == pytest.approx(0.2 * setups + 0.0002 * others, abs=1e-3)
    budget = full["seconds"] / 2
    code, stdout, _ = cli(
        "plan",
        "--json",
        "--provider",
        f"{COSTLY}:SlowSetups",
        "--in-process",
        "-k",
        "LogoutFromTarget and not scenario",
        "--budget",
        f"{budget:.3f}s",
    )
    halved = json.loads(stdout)
    assert halved["seconds"] <= budget
    assert 0 < halved["cases"] < full["cases"]


# -- conformance plan ------------------------------------------------------------------------


def test_plan_asks_the_provider_for_its_capabilities_only() -> None:
    """A provider that fails every operation still gets a plan: nothing is executed."""
    code, stdout, stderr = cli(
        "plan",
        "--provider",
        f"{COSTLY}:EveryOperationFails",
        "--in-process",
        "-k",
        LOGOUT_SPEC,
        "--cases",
    )
    assert code == 0, stderr
    assert "IVdsIscsiInitiatorAdapter::LogoutFromTarget" in stdout
    assert "plan: " in stdout and "operations" in stdout
    assert '"expect": "VDS_E_ISCSI_SESSION_NOT_FOUND"' in stdout  # a planned case, as a scenario


def test_plan_json_is_the_same_whatever_the_seed() -> None:
    plans = [cli("plan", "--json", "--seed", seed, "-k", "IVMGuestOS")[1] for seed in ("1", "2")]
    assert plans[0] == plans[1]
    data = json.loads(plans[0])
    assert data["cases"] == sum(m["cases"] for m in data["methods"].values())
    case = next(iter(data["methods"].values()))["planned"][0]
    assert set(case) >= {"given", "call", "expect", "rule", "covers", "operations"}


def test_plan_follows_the_provider_capabilities() -> None:
    """What the provider cannot build is not planned; what only that reaches is unreachable,
    and says why."""
    code, stdout, _ = cli(
        "plan", "--json", "--provider", f"{COSTLY}:NoFaults", "--in-process", "-k", LOGOUT_SPEC
    )
    assert code == 0
    (method,) = json.loads(stdout)["methods"].values()
    for case in method["planned"]:
        assert all("fault" not in step for step in case["given"])
    why = {e["item"]: e["why"] for e in method["coverage"]["unreachable"]}
    assert why.get("fault logout_fails", "").startswith("the provider cannot inject")


# -- the registry ----------------------------------------------------------------------------


def test_every_kind_is_declared_once_with_what_it_needs() -> None:
    for name, kind in KINDS.items():
        assert kind.name == name and kind.scope in ("scenario", "spec", "family")
        assert kind.repro in ("call", "calls")
        assert callable(kind.run) and callable(kind.replay_judge())
    catalog = load_catalog()
    spec = catalog.specs["RemoveIScsiPersistentTargetA"]
    assert [k.name for k in kinds_for(spec, Settings(tier=0))] == [
        "oracle",
        "closed-world",
        "out-params",
    ]
    assert [k.name for k in kinds_for(spec, Settings(tier=1))] == [
        "oracle",
        "closed-world",
        "out-params",
        "repeat",
        "variants",
    ]
    assert "differential" in [
        k.name for k in kinds_for(spec, Settings(), frozenset({"differential"}))
    ]


# -- coverage of the spec itself -------------------------------------------------------------


def test_goals_of_a_spec() -> None:
    catalog = load_catalog()
    spec = catalog.specs["IVdsIscsiInitiatorAdapter::LogoutFromTarget"]
    domain = catalog.domain_of(spec)
    quick = goals_of(spec, domain, 0)
    assert {g.kind for g in quick.values()} == {"rules", "codes", "effects"}
    full = goals_of(spec, domain, 1)
    assert {g.kind for g in full.values()} == {
        "rules",
        "codes",
        "effects",
        "conditions",
        "arguments",
        "faults",
    }
    assert "arg:targetId:unknown object" in full and "fault:logout_fails" in full
    plan = plan_spec(spec, Context(domain, catalog.codes, Allowed(), Costs(), (), 1))
    assert plan.covered == set(full)
    again = plan_spec(spec, Context(domain, catalog.codes, Allowed(), Costs(), (), 1))
    assert [c.case for c in again.cases] == [c.case for c in plan.cases]


def _without_scenarios(text: str) -> str:
    """A spec's text without its top-level `scenarios:` section."""
    lines = text.splitlines(keepends=True)
    start = lines.index("scenarios:\n")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n", "#")),
        len(lines),
    )
    return "".join(lines[:start] + lines[end:])


def test_validate_warns_of_a_rule_no_case_makes_first(tmp_path: Path) -> None:
    root = tmp_path / "specs"
    source = default_specs_dir()
    shutil.copytree(source / "domains", root / "domains")
    shutil.copy(source / "codes.yaml", root / "codes.yaml")
    text = (source / "vds" / LOGOUT_SPEC).read_text(encoding="utf-8")
    shadowed = text.replace(
        "  # No session to the target, named or opened by LoginToTarget: nothing to log out of.\n",
        "  - when: \"args.targetId != ''\"\n    expect: S_OK\n",
        1,
    )
    assert shadowed != text
    (root / "vds").mkdir()
    spec_path = root / "vds" / LOGOUT_SPEC
    spec_path.write_text(shadowed, encoding="utf-8")
    login = "IVdsIscsiInitiatorAdapter.LoginToTarget.yaml"  # a scenario of it calls this one
    shutil.copy(source / "vds" / login, root / "vds" / login)
    code, stdout, _ = cli("validate", str(root))
    assert code == 2  # the scenarios the new rule contradicts say so first, with the oracle
    assert f"{spec_path}:" in stdout and "but the rules predict S_OK (rule 0)" in stdout
    root = shutil.copytree(root, tmp_path / "without-scenarios")  # (a catalog is parsed once)
    spec_path = root / "vds" / LOGOUT_SPEC
    spec_path.write_text(_without_scenarios(shadowed), encoding="utf-8")
    code, stdout, _ = cli("validate", str(root))
    assert code == 0, stdout
    warnings = [line for line in stdout.splitlines() if "warning:" in line]
    assert warnings, stdout
    assert all(line.startswith(f"{spec_path}:") for line in warnings)
    assert any("rules[1]" in line for line in warnings)
    assert "warning(s)" in stdout
    assert [w for w in rule_warnings(load_catalog()) if w] == []  # the bundled specs: none


def test_the_report_shows_operations_and_coverage(tmp_path: Path) -> None:
    cli("run", "--out", str(tmp_path), "--in-process", "-k", LOGOUT_SPEC)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'id="operations"' in html and 'id="coverage-table"' in html
    summary = results(tmp_path)
    assert f"<b>{summary['operations']['total']}</b> asked of the provider" in html


def test_coverage_reached_leaves_out_what_the_provider_could_not_run(tmp_path: Path) -> None:
    """The report's coverage is what the executed cases reached: an item whose cases the
    provider called Unsupported is listed as unreachable, with the provider's reason."""
    cli(
        "run",
        "--provider",
        f"{BROKEN}:UnsupportedEverything",
        "--out",
        str(tmp_path),
        "--in-process",
        "-k",
        "IVMGuestOS.Logoff.yaml",
    )
    summary = results(tmp_path)
    planned = summary["plan"]["coverage"]["rules"]
    assert planned["covered"] == planned["total"] > 0
    assert summary["coverage"]["rules"] == {"covered": 0, "total": planned["total"]}
    (method,) = summary["methods"].values()
    reasons = {e["why"] for e in method["plan"]["coverage"]["unreachable"]}
    assert reasons == {"the provider could not run its case: step 'virtual_machine'"}


def test_declared_costs_reach_the_plan_through_a_worker_process() -> None:
    """Isolated (the default), the capabilities come through the agent: costs included."""
    code, stdout, _ = cli(
        "plan",
        "--json",
        "--provider",
        f"{COSTLY}:SlowSetups",
        "-k",
        "LogoutFromTarget and not scenario",
    )
    assert code == 0
    (method,) = json.loads(stdout)["methods"].values()
    assert method["seconds"] >= 0.2 * method["operations"]["setup"]
