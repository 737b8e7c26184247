"""A scenario that expects other codes than its rules predict is a spec error found with the
oracle alone: `conformance validate` lists it at its line, and its check is an error before
any provider operation, for one call and for each entry of a sequence of `calls`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from support import ROOT, cli, results

from conformance.engine.scenarios import scenario_problems
from conformance.spec.catalog import load_catalog

LOGOFF = "virtual-pc/IVMGuestOS.Logoff.yaml"
SECOND = "        expect: HRESULT_FROM_WIN32(ERROR_NO_SUCH_LOGON_SESSION)"
SINGLE = "    expect: VM_E_VM_NOT_RUNNING"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    root = tmp_path / "specs"
    shutil.copytree(
        ROOT / "specs", root, ignore=shutil.ignore_patterns("__pycache__", "*.py", "schema")
    )
    return root


def edit(root: Path, old: str, new: str, after: str = "scenarios:") -> int:
    """Replace the first line that is `old` after the line `after` in Logoff's spec; its line
    number."""
    file = root / LOGOFF
    lines = file.read_text(encoding="utf-8").split("\n")
    index = lines.index(old, lines.index(after))
    lines[index] = new
    file.write_text("\n".join(lines), encoding="utf-8")
    return index + 1


def virtual_pc_checks(tmp_path: Path, method: str, keyword: str, *options: str) -> list[Any]:
    """The checks of `method` in an in-process run of the virtual-pc family's `keyword`."""
    out = tmp_path / "out"
    cli(
        "run",
        *options,
        "--family",
        "virtual-pc",
        "-k",
        keyword,
        "--out",
        str(out),
        "--regressions",
        str(tmp_path / "r"),
        "--in-process",
    )
    return results(out)["methods"][method]["checks"]


def test_the_bundled_scenarios_agree_with_their_rules() -> None:
    assert scenario_problems(load_catalog()) == []


def test_validate_names_a_sequence_entry_the_rules_contradict(specs: Path) -> None:
    line = edit(specs, SECOND, "        expect: S_OK")
    code, out, _ = cli("validate", str(specs))
    assert code == 2
    name = "logs off Rail and RDP sessions alike, then finds no one"
    assert f"IVMGuestOS.Logoff.yaml:{line}: scenario {name!r} " in out
    assert "calls[1] expects S_OK but the rules predict" in out


def test_validate_names_a_single_call_the_rules_contradict(specs: Path) -> None:
    line = edit(specs, SINGLE, "    expect: S_OK")
    code, out, _ = cli("validate", str(specs))
    assert code == 2 and f"IVMGuestOS.Logoff.yaml:{line}: scenario " in out
    assert "expects S_OK but the rules predict VM_E_VM_NOT_RUNNING" in out


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (
            "    then: {logon_sessions: [L3]}",
            "    then: {logon_sessions: [L1, L3]}",
            "scenario 'logs off every user of the guest' then: logon_sessions after the call: "
            "expected ['L1', 'L3'], the rules leave ['L3'] (rule 8)",
        ),
        (
            "        then: {logon_sessions: []}",
            "        then: {logon_sessions: [{kind: rdp}]}",
            "calls[0] then: logon_sessions after the call: no object like {'kind': 'rdp'} in []",
        ),
    ],
    ids=["one call", "sequence"],
)
def test_validate_names_a_then_the_rules_contradict(
    specs: Path, old: str, new: str, said: str
) -> None:
    line = edit(specs, old, new)
    code, out, _ = cli("validate", str(specs))
    assert code == 2
    assert f"IVMGuestOS.Logoff.yaml:{line}: " in out and said in out


def test_validate_names_a_scenario_whose_world_the_invariants_forbid(specs: Path) -> None:
    login = specs / "vds" / "IVdsIscsiInitiatorAdapter.LoginToTarget.yaml"
    text = login.read_text(encoding="utf-8")
    twice = "      - {portal_group: G1, target: T1, portals: [P1, P1]}\n"
    marker = "  - name: a target portal whose portal group was deleted\n"
    head, tail = text.split(marker)
    tail = tail.replace("      - {portal_group: G1, target: T1, portals: [P1]}\n", twice, 1)
    login.write_text(head + marker + tail, encoding="utf-8")
    code, out, _ = cli("validate", str(specs))
    assert code == 2
    assert (
        "scenario 'a target portal whose portal group was deleted': invariant 'a portal group "
        "lists each portal at most once'"
    ) in out
    assert "does not hold on the state its given steps build" in out


def test_validate_names_a_rule_whose_effects_leave_a_world_the_invariants_forbid(
    specs: Path,
) -> None:
    effect = '      logon_sessions: "state.logon_sessions.filter(l, l.vm != args.this)"'
    edit(specs, effect, effect + '\n      virtual_machines: "[]"', after="rules:")
    code, out, _ = cli("validate", str(specs))
    assert code == 2
    assert (
        "scenario 'logs off every user of the guest': invariant 'a logon session lives in a "
        "known VM'"
    ) in out
    assert "does not hold on the state rule 8 leaves" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("old", "new", "selected", "said"),
    [
        (SECOND, "        expect: S_OK", "Rail", "calls[1] expects S_OK"),
        (SINGLE, "    expect: S_OK", "off", "expects S_OK but the rules predict VM_E_VM_NOT"),
    ],
    ids=["sequence", "one call"],
)
def test_a_scenario_the_rules_contradict_is_an_error_before_any_provider_operation(
    specs: Path, tmp_path: Path, old: str, new: str, selected: str, said: str
) -> None:
    edit(specs, old, new)
    checks = virtual_pc_checks(
        tmp_path, "IVMGuestOS::Logoff", f"Logoff and scenario and {selected}", "--specs", str(specs)
    )
    (check,) = [c for c in checks if c["status"] != "passed"]
    assert check["status"] == "error"
    assert check["message"].startswith("spec error: ") and said in check["message"]
    assert check["operations"]["total"] == 0


class NoLogonSessions(ReferenceProvider):
    """Declares every step but `logon_session`, and no fault: what a scenario needs of them is
    known not applicable from its capabilities, before any operation."""

    def capabilities(self) -> dict[str, Any]:
        declared = super().capabilities()
        declared["steps"] = [s for s in declared["steps"] if s != "logon_session"]
        declared["faults"] = []
        return declared


@pytest.mark.slow
def test_a_scenario_needing_what_the_provider_leaves_out_costs_no_operation(
    tmp_path: Path,
) -> None:
    found = virtual_pc_checks(
        tmp_path,
        "IVMGuestOS::Logoff",
        "Logoff and scenario",
        "--provider",
        f"{Path(__file__)}:NoLogonSessions",
    )
    checks = {c["name"].rpartition("::")[2]: c for c in found}
    for name, reason in [
        ("logs-off-rail-and-rdp-sessions-alike-then-finds-no-one", "step 'logon_session'"),
        ("the-configuration-cannot-be-read", "fault 'configuration_unknown'"),
    ]:
        assert checks[name]["status"] == "not_applicable"
        assert checks[name][
            "message"
        ] == f"unsupported by the provider: {reason} is not in its " + (
            "capabilities()['steps']" if "step" in reason else "capabilities()['faults']"
        )
        assert checks[name]["operations"]["total"] == 0
    assert any(c["status"] == "passed" for c in checks.values())


class NoLogoff(ReferenceProvider):
    """Lists every method but Logoff, which a scenario of IsUserLoggedOn calls first."""

    def capabilities(self) -> dict[str, Any]:
        declared = super().capabilities()
        declared["methods"] = [m for m in declared["methods"] if m != "IVMGuestOS::Logoff"]
        return declared


@pytest.mark.slow
def test_a_sequence_calling_a_method_the_provider_leaves_out_costs_no_operation(
    tmp_path: Path,
) -> None:
    checks = virtual_pc_checks(
        tmp_path,
        "IVMGuestOS::IsUserLoggedOn",
        "IsUserLoggedOn and scenario",
        "--provider",
        f"{Path(__file__)}:NoLogoff",
    )
    (check,) = [c for c in checks if c["name"].endswith("after-logoff")]
    assert check["status"] == "not_applicable"
    assert check["message"] == (
        "unsupported by the provider: method IVMGuestOS::Logoff is not in its "
        "capabilities()['methods']"
    )
    assert check["operations"]["total"] == 0
    assert sum(c["status"] == "passed" for c in checks) == len(checks) - 1


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["reference", f"{Path(__file__)}:NoLogonSessions"])
def test_the_plan_estimates_the_scenarios_operations_exactly(tmp_path: Path, provider: str) -> None:
    """What a run of scenarios will ask of the provider is known before it starts: one-call
    scenarios read what their `then` names, sequences their family's collections after every
    call, and those needing what the provider leaves out nothing."""
    out = tmp_path / "out"
    cli(
        "run",
        "--provider",
        provider,
        "--family",
        "virtual-pc",
        "-k",
        "scenario",
        "--out",
        str(out),
        "--regressions",
        str(tmp_path / "r"),
        "--in-process",
    )
    summary = results(out)
    estimated = dict(summary["plan"]["operations"])
    estimated.pop("batches", None)
    made = {k: v for k, v in summary["operations"].items() if k != "batches"}
    assert estimated == made
