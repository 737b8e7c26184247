"""The validation layer: bundled specs are clean; each kind of mistake is named at its line.

Malformed specs are made by copying the bundled specs and editing one line, so every expected
message below carries the exact `file:line: path: message` a spec author would read. Lines are
found by content, not hard-coded, so that editing a bundled spec does not break these tests
while a wrong line in a message still does.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from conformance.cli import main
from conformance.spec.catalog import load_catalog, spec_files
from conformance.spec.paths import default_specs_dir
from conformance.spec.schema import SCHEMA_KINDS, schema_problems
from conformance.spec.source import SourceError, load_file, load_text

SPECS = default_specs_dir()
LOGOUT = "vds/IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"
REMOVE_PORTAL = "vds/IVdsIscsiPortalGroup.RemovePortal.yaml"
LOGOFF = "virtual-pc/IVMGuestOS.Logoff.yaml"
REMOVE_A = "iscsi/RemoveIScsiPersistentTargetA.yaml"
REMOVE_W = "iscsi/RemoveIScsiPersistentTargetW.yaml"
VDS_DOMAIN = "domains/vds-iscsi.yaml"
LOCATED = re.compile(r"^[^\n:]+:\d+: \S")


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A private copy of the bundled specs (codes.yaml and domains/ included)."""
    root = tmp_path / "specs"
    shutil.copytree(SPECS, root, ignore=shutil.ignore_patterns("__pycache__", "*.py", "schema"))
    return root


def _find(lines: list[str], text: str, after: str | None) -> int:
    """Index of the line holding `text`: the only one, or the first after the line `after`."""
    start = _find(lines, after, None) + 1 if after else 0
    hits = [i for i in range(start, len(lines)) if text in lines[i]]
    assert hits and (after or len(hits) == 1), f"{text!r} is on lines {[h + 1 for h in hits]}"
    return hits[0]


def line_of(root: Path, rel: str, text: str, after: str | None = None) -> int:
    """The 1-based line of `text` in a spec file (found by content, so edits elsewhere in the
    bundled specs do not silently shift what these tests look at)."""
    return _find((root / rel).read_text(encoding="utf-8").splitlines(), text, after) + 1


def edit(root: Path, rel: str, old: str, new: str, after: str | None = None) -> int:
    """Replace `old` by `new` on the line that holds it; return that line's number."""
    file = root / rel
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    i = _find(lines, old, after)
    lines[i] = lines[i].replace(old, new, 1)
    file.write_text("".join(lines), encoding="utf-8")
    return i + 1


def _data(root: Path, rel: str) -> dict:
    return yaml.safe_load((root / rel).read_text(encoding="utf-8"))


def rule_index(root: Path, rel: str, when: str) -> int:
    """The index in `rules` of the one rule whose `when` is `when`."""
    rules = _data(root, rel)["rules"]
    hits = [i for i, rule in enumerate(rules) if rule["when"] == when]
    assert len(hits) == 1, f"{when!r} is in rules {hits}"
    return hits[0]


def last_rule(root: Path, rel: str) -> int:
    return len(_data(root, rel)["rules"]) - 1


def scenario_index(root: Path, rel: str, name: str) -> int:
    return [s["name"] for s in _data(root, rel)["scenarios"]].index(name)


def domain_names(root: Path, family: str, key: str) -> str:
    """The comma-separated names of a domain's collections, steps or faults, in file order."""
    domain = _data(root, f"domains/{family}.yaml")
    if key == "steps":
        return ", ".join(c["step"] for c in domain["collections"].values() if "step" in c)
    return ", ".join(domain[key])


def families(root: Path) -> str:
    return ", ".join(sorted(f.stem for f in (root / "domains").glob("*.yaml")))


def problems(root: Path) -> list[str]:
    """Every problem the catalog reports, with file names relative to `root`."""
    with pytest.raises(SourceError) as caught:
        load_catalog([root])
    text = [str(p) for p in caught.value.problems]
    assert text, "SourceError without problems"
    for line in text:
        assert LOCATED.match(line), line
    prefixes = sorted({f"{root}/", f"{root.resolve()}/"}, key=len, reverse=True)
    out = []
    for line in text:
        for prefix in prefixes:
            line = line.replace(prefix, "")
        out.append(line)
    return out


# --------------------------------------------------------------------------- clean data


def test_bundled_specs_have_no_problems() -> None:
    catalog = load_catalog()
    assert len(catalog.specs) >= 5
    assert set(catalog.domains) >= {"vds-iscsi", "iscsi-discovery", "virtual-pc"}


def test_copied_specs_have_no_problems(specs: Path) -> None:
    assert len(load_catalog([specs]).specs) >= 5


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_schemas_are_valid_json_schema_2020_12(kind: str) -> None:
    schema = json.loads((SPECS / "schema" / f"{kind}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_bundled_file_is_schema_valid() -> None:
    files = [(SPECS / "codes.yaml", "codes")]
    files += [(f, "domain") for f in sorted((SPECS / "domains").glob("*.yaml"))]
    files += [(f, "spec") for f in spec_files([SPECS])]
    assert len(files) >= 9
    for file, kind in files:
        assert schema_problems(load_file(file), kind) == [], file


def test_unknown_schema_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown schema kind"):
        schema_problems(load_text("a: 1", "x.yaml"), "specs")


# --------------------------------------------------------------------------- the brief's cases

RULE0 = '"!state.sessions.exists(s, s.target == args.targetId)"'
CATCH_ALL = 'when: "true"'
SCENARIO0 = "name: logs out of every session to the target"


def test_bad_yaml_syntax(specs: Path) -> None:
    line = edit(specs, LOGOUT, "summary: ", "summary: a: ")
    (found,) = problems(specs)
    # libyaml says "... in this context", the pure-Python parser "... here"
    assert found.startswith(f"{LOGOUT}:{line}: invalid YAML: mapping values are not allowed")


def test_wrong_type(specs: Path) -> None:
    line = edit(specs, LOGOUT, "value: 0x8004270A", "value: abc")
    assert problems(specs) == [
        f"{LOGOUT}:{line}: returns.codes[2].value: 'abc' is not of type 'integer'"
    ]


def test_unknown_top_level_key(specs: Path) -> None:
    line = edit(specs, LOGOUT, "rules:", "rulez:")
    (found,) = problems(specs)
    assert found.startswith(f"{LOGOUT}:{line}: unknown key 'rulez' (allowed: spec, id, family, ")
    assert "x-*" in found
    assert found.endswith("; did you mean 'rules'?")


def test_extension_keys_are_allowed(specs: Path) -> None:
    edit(specs, LOGOUT, "spec: 1", "spec: 1\nx-reviewed-by: someone\nobserved: []")
    assert len(load_catalog([specs]).specs) >= 5


def test_duplicate_key(specs: Path) -> None:
    line = edit(specs, LOGOUT, "kind: com-method", "kind: com-method\nkind: function")
    assert problems(specs) == [f"{LOGOUT}:{line + 1}: duplicate key 'kind'"]


def test_unknown_symbol_in_expect(specs: Path) -> None:
    line = edit(
        specs,
        LOGOUT,
        "expect: VDS_E_ISCSI_SESSION_NOT_FOUND",
        "expect: VDS_E_ISCSI_SESION_NOT_FOUND",
        after="rules:",
    )
    row = line_of(specs, LOGOUT, "- symbol: VDS_E_ISCSI_SESSION_NOT_FOUND")
    rule = 0
    found = problems(specs)
    (unknown,) = [f for f in found if f.startswith(f"{LOGOUT}:{line}: rules[{rule}].expect")]
    assert unknown.startswith(
        f"{LOGOUT}:{line}: rules[{rule}].expect: unknown code "
        "'VDS_E_ISCSI_SESION_NOT_FOUND' (returns.codes and returns.also: "
    )
    assert unknown.endswith("; did you mean 'VDS_E_ISCSI_SESSION_NOT_FOUND'?")
    # no rule is left that gives the documented code
    assert (
        f"{LOGOUT}:{row}: returns.codes[2]: unreachable: no rule expects "
        "VDS_E_ISCSI_SESSION_NOT_FOUND" in found
    )


def test_unknown_symbol_in_scenario_expect_list(specs: Path) -> None:
    line = edit(
        specs,
        REMOVE_PORTAL,
        "VDS_E_ANOTHER_CALL_IN_PROGRESS]",
        "VDS_E_NOPE]",
        after="name: another operation is pending on the group",
    )
    (found,) = problems(specs)
    assert found.startswith(
        f"{REMOVE_PORTAL}:{line}: scenarios[3].expect[1]: unknown code "
        "'VDS_E_NOPE' (returns.codes and returns.also: S_OK, "
    )


def test_expecting_a_code_family(specs: Path) -> None:
    line = edit(
        specs,
        REMOVE_PORTAL,
        "VDS_E_ANOTHER_CALL_IN_PROGRESS]",
        "VDS_HRESULT]",
        after="'operation_pending' && f.object == args.this",
    )
    assert problems(specs) == [
        f"{REMOVE_PORTAL}:{line}: rules[2].expect[1]: 'VDS_HRESULT' is "
        "a family of codes in returns.also, not one code"
    ]


def test_cel_syntax_error(specs: Path) -> None:
    rule = rule_index(specs, LOGOUT, RULE0.strip('"'))
    line = edit(specs, LOGOUT, RULE0, RULE0.replace('args.targetId)"', 'args.targetId"'))
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGOUT}:{line}: rules[{rule}].when: invalid CEL at 1:52: Syntax error"
    )
    assert "\n" not in found


def test_cel_syntax_error_in_effects(specs: Path) -> None:
    line = edit(specs, LOGOUT, "s.target != args.targetId)", "s.target !=)", after=CATCH_ALL)
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGOUT}:{line}: rules[{last_rule(specs, LOGOUT)}].effects.sessions: invalid CEL at "
    )


def test_rule_naming_an_unknown_collection(specs: Path) -> None:
    rule = rule_index(specs, LOGOUT, RULE0.strip('"'))
    line = edit(specs, LOGOUT, RULE0, RULE0.replace("state.sessions", "state.sesions"))
    assert problems(specs) == [
        f"{LOGOUT}:{line}: rules[{rule}].when: state.sesions: unknown collection 'sesions' "
        f"(collections of vds-iscsi: {domain_names(specs, 'vds-iscsi', 'collections')}); "
        "did you mean 'sessions'?"
    ]


def test_effect_on_an_unknown_collection(specs: Path) -> None:
    line = edit(specs, LOGOUT, "sessions:", "session:", after=CATCH_ALL)
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGOUT}:{line}: rules[{last_rule(specs, LOGOUT)}]"
        ".effects.session: unknown collection "
        "'session' (collections of vds-iscsi: "
    )


def test_arg_that_is_not_a_param(specs: Path) -> None:
    rule = rule_index(specs, LOGOUT, RULE0.strip('"'))
    line = edit(specs, LOGOUT, RULE0, RULE0.replace("args.targetId", "args.targetID"))
    assert problems(specs) == [
        f"{LOGOUT}:{line}: rules[{rule}].when: args.targetID: unknown parameter 'targetID' "
        "(parameters: targetId, ppAsync, this); did you mean 'targetId'?"
    ]


def test_this_in_a_function(specs: Path) -> None:
    line = edit(specs, REMOVE_W, "i.id == args.InitiatorInstance", "i.id == args.this")
    assert problems(specs) == [
        f"{REMOVE_W}:{line}: rules[0].when: args.this: a function has no 'this' "
        "(only com-methods do)"
    ]


def test_unknown_constant(specs: Path) -> None:
    text = "args.InitiatorPortNumber != constants.ISCSI_ALL_INITIATOR_PORTS"
    line = edit(specs, REMOVE_A, text, text.replace("ALL_INITIATOR_PORTS", "ALL_PORTS"))
    # The folded expression starts on the line after its `- when: >-` key.
    assert problems(specs) == [
        f"{REMOVE_A}:{line - 1}: rules[1].when: constants.ISCSI_ALL_PORTS: unknown constant "
        "'ISCSI_ALL_PORTS' (constants: ISCSI_ALL_INITIATOR_PORTS); "
        "did you mean 'ISCSI_ALL_INITIATOR_PORTS'?"
    ]


def test_unknown_variable(specs: Path) -> None:
    rule = rule_index(specs, LOGOUT, RULE0.strip('"'))
    line = edit(specs, LOGOUT, RULE0, RULE0.replace("args.targetId", "target"))
    assert problems(specs) == [
        f"{LOGOUT}:{line}: rules[{rule}].when: unknown variable 'target': expressions see only "
        "state, args, constants and their own comprehension variables"
    ]


def test_names_inside_cel_strings_are_not_references(specs: Path) -> None:
    edit(specs, LOGOUT, "'logout_fails'", "'state.nothing && args.nobody'", after=RULE0)
    assert len(load_catalog([specs]).specs) >= 5


def test_unreachable_code(specs: Path) -> None:
    edit(
        specs,
        LOGOUT,
        "expect: VDS_E_ISCSI_SESSION_NOT_FOUND",
        "expect: VDS_E_ISCSI_LOGOUT_FAILED",
        after="rules:",
    )
    row = line_of(specs, LOGOUT, "- symbol: VDS_E_ISCSI_SESSION_NOT_FOUND")
    assert problems(specs) == [
        f"{LOGOUT}:{row}: returns.codes[2]: unreachable: no rule expects "
        "VDS_E_ISCSI_SESSION_NOT_FOUND"
    ]


def test_missing_catch_all(specs: Path) -> None:
    edit(specs, LOGOUT, CATCH_ALL, 'when: "1 == 1"')
    rules = line_of(specs, LOGOUT, "rules:")
    assert problems(specs) == [
        f'{LOGOUT}:{rules}: rules: no catch-all: the last rule should be when: "true"'
    ]


def test_unquoted_true_is_a_schema_error(specs: Path) -> None:
    line = edit(specs, LOGOUT, CATCH_ALL, "when: true")
    assert problems(specs) == [
        f"{LOGOUT}:{line}: rules[{last_rule(specs, LOGOUT)}].when: True is not of type "
        "'string' (quote it)"
    ]


def test_two_specs_sharing_a_symbol_with_different_values(specs: Path) -> None:
    line = edit(specs, REMOVE_W, "value: 0xEFFF0029", "value: 0xEFFF002A")
    found = problems(specs)
    assert len(found) == 1, found
    # the first file read that holds the symbol (sorted order) is the one named
    assert found[0].startswith(
        f"{REMOVE_W}:{line}: returns.codes[3].value: "
        "ISDSC_TARGET_NOT_FOUND is 0xEFFF002A here but 0xEFFF0029 in "
    )


def test_spec_disagreeing_with_the_code_table(specs: Path) -> None:
    line = edit(specs, LOGOFF, "value: 0x80004003", "value: 0x80004004")
    table = line_of(specs, "codes.yaml", "E_POINTER:")
    assert problems(specs) == [
        f"{LOGOFF}:{line}: returns.codes[2].value: E_POINTER is "
        f"0x80004004 here but 0x80004003 in codes.yaml:{table}"
    ]


def test_severity_contradicting_the_symbol(specs: Path) -> None:
    line = edit(specs, LOGOUT, "value: 0x80042709", "value: 0x00042709")
    table = edit(specs, "codes.yaml", "S_FALSE: 0x00000001", "S_FALSE: 0x80000001")
    found = problems(specs)
    assert found[:1] == [
        f"codes.yaml:{table}: symbols.S_FALSE: S_FALSE names a success but 0x80000001 has the "
        "severity bit set"
    ]
    assert (
        f"{LOGOUT}:{line}: returns.codes[1].value: VDS_E_ISCSI_LOGOUT_FAILED names a failure "
        "but 0x00042709 has the severity bit clear"
    ) in found
    # specs that list S_FALSE now disagree with the (broken) table, and say so
    others = [f for f in found[1:] if not f.startswith(f"{LOGOUT}:")]
    assert all("S_FALSE is 0x00000001 here but 0x80000001 in codes.yaml" in f for f in others)


def test_hresult_from_win32_agrees_with_its_win32_code(specs: Path) -> None:
    edit(specs, "codes.yaml", "ERROR_SUCCESS:", "ERROR_ACCESS_DENIED: 0x00000006\n  ERROR_SUCCESS:")
    line = line_of(specs, LOGOFF, "value: 0x80070005")
    assert problems(specs) == [
        f"{LOGOFF}:{line}: returns.codes[3].value: HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED) is "
        "0x80070005 but ERROR_ACCESS_DENIED is 0x00000006, so it must be 0x80070006"
    ]


# --------------------------------------------------------------------------- domains and scenarios


def test_unknown_family(specs: Path) -> None:
    line = edit(specs, LOGOFF, "family: virtual-pc", "family: virtual-pcc")
    found = problems(specs)
    assert found[0] == (
        f"{LOGOFF}:{line}: family: unknown family 'virtual-pcc' (families with a domain: "
        f"{families(specs)}); did you mean 'virtual-pc'?"
    )
    # scenarios of other methods that call Logoff now cross a family boundary
    assert found[1:] and all(
        re.search(
            r"calls\[\d\]\.method: 'IVMGuestOS::\w+' is in family "
            r"virtual-pcc?, not virtual-pcc?$",
            f,
        )
        for f in found[1:]
    )


def test_param_refers_to_an_unknown_step(specs: Path) -> None:
    line = edit(specs, LOGOUT, "refers: target", "refers: targett")
    assert problems(specs) == [
        f"{LOGOUT}:{line}: params[0].refers: unknown step 'targett' (steps of vds-iscsi: "
        f"{domain_names(specs, 'vds-iscsi', 'steps')}); did you mean 'target'?"
    ]


def test_param_values_names_an_unknown_field(specs: Path) -> None:
    line = edit(specs, REMOVE_A, "persistent_target.target_name", "persistent_target.name")
    (found,) = problems(specs)
    assert found.startswith(
        f"{REMOVE_A}:{line}: params[2].values: unknown field 'name' "
        "(fields of persistent_target: id, initiator, port, target_name, "
    )


def test_special_names_an_unknown_constant(specs: Path) -> None:
    line = edit(specs, REMOVE_A, "special: [ISCSI_ALL_INITIATOR_PORTS]", "special: [ALL_PORTS]")
    found = problems(specs)
    assert found[0].startswith(
        f"{REMOVE_A}:{line}: params[1].special[0]: unknown constant 'ALL_PORTS'"
    )
    # Scenarios that pass the name are now passing an object nobody created.
    assert found[1:] and all(
        "call.InitiatorPortNumber: 'ISCSI_ALL_INITIATOR_PORTS' is not an "
        "object this scenario creates" in f
        for f in found[1:]
    )


def test_interface_object_is_a_step(specs: Path) -> None:
    line = edit(specs, LOGOUT, "object: initiator_adapter", "object: adapter")
    found = problems(specs)
    assert found[0].startswith(f"{LOGOUT}:{line}: interface.object: unknown step 'adapter'")


def test_given_step_of_unknown_kind(specs: Path) -> None:
    line = edit(specs, LOGOUT, "{session: S1", "{sesion: S1", after=SCENARIO0)
    assert problems(specs) == [
        f"{LOGOUT}:{line}: scenarios[0].given[2].sesion: unknown step 'sesion' (steps of "
        f"vds-iscsi: {domain_names(specs, 'vds-iscsi', 'steps')}, fault); "
        "did you mean 'session'?"
    ]


def test_given_unknown_fault(specs: Path) -> None:
    name = "the only session refuses to log out"
    line = edit(
        specs,
        LOGOUT,
        "{fault: logout_fails, session: S1}",
        "{fault: logout_fail, session: S1}",
        after=f"name: {name}",
    )
    (found,) = problems(specs)
    at = scenario_index(specs, LOGOUT, name)
    assert found.startswith(
        f"{LOGOUT}:{line}: scenarios[{at}].given[3].fault: unknown fault "
        "'logout_fail' (faults of vds-iscsi: logout_fails, "
    )


def test_given_undeclared_field(specs: Path) -> None:
    line = edit(
        specs, LOGOUT, "{session: S1, target: T1}", "{session: S1, targt: T1}", after=SCENARIO0
    )
    assert problems(specs) == [
        f"{LOGOUT}:{line}: scenarios[0].given[2].targt: unknown field 'targt' "
        "(fields of session: target); did you mean 'target'?"
    ]


def test_given_reference_to_the_wrong_kind_of_object(specs: Path) -> None:
    line = edit(
        specs, LOGOUT, "{session: S2, target: T1}", "{session: S2, target: S1}", after=SCENARIO0
    )
    assert problems(specs) == [
        f"{LOGOUT}:{line}: scenarios[0].given[3].target: 'S1' is a session, not a target"
    ]


def test_given_yaml_boolean_for_an_enum(specs: Path) -> None:
    power = _data(specs, "domains/virtual-pc.yaml")["collections"]["virtual_machines"]["fields"]
    choices = ", ".join(power["power"]["enum"])
    line = edit(
        specs,
        LOGOFF,
        "power: running",
        "power: off",
        after="name: logs off every user of the guest",
    )
    assert problems(specs) == [
        f"{LOGOFF}:{line}: scenarios[0].given[0].power: False is not one of "
        f"{choices} (quote YAML words like off, on, yes, no)"
    ]


def test_call_key_that_is_not_a_param(specs: Path) -> None:
    line = edit(specs, LOGOUT, "targetId: T1}", "targetID: T1}", after=SCENARIO0)
    assert problems(specs) == [
        f"{LOGOUT}:{line}: scenarios[0].call.targetID: unknown parameter 'targetID' "
        "(parameters: targetId, ppAsync, this); did you mean 'targetId'?"
    ]


def test_call_this_names_no_created_object(specs: Path) -> None:
    line = edit(specs, LOGOUT, "call: {this: A1", "call: {this: A9", after=SCENARIO0)
    assert problems(specs) == [
        f"{LOGOUT}:{line}: scenarios[0].call.this: 'A9' is not an object this scenario "
        "creates; use {unknown: initiator_adapter} for an id that exists nowhere"
    ]


def test_then_key_that_is_not_a_collection(specs: Path) -> None:
    line = edit(specs, LOGOUT, "then: {sessions:", "then: {sesions:", after=SCENARIO0)
    (found,) = problems(specs)
    assert found.startswith(f"{LOGOUT}:{line}: scenarios[0].then.sesions: unknown collection")


# A multi-call scenario: each `calls` entry is judged like a call, against the method it calls.
LOGGED_ON = "virtual-pc/IVMGuestOS.IsUserLoggedOn.yaml"
GET_PARAMETER = "virtual-pc/IVMGuestOS.GetParameter.yaml"
AFTER_LOGOFF = "name: nobody is logged on after Logoff"  # calls Logoff, then IsUserLoggedOn
OWN_CALL = "- call: {this: VM1, inRailSession: 1}"


def _sequence(root: Path) -> int:
    return scenario_index(root, LOGGED_ON, AFTER_LOGOFF.removeprefix("name: "))


def test_calls_entry_parameter_of_another_method(specs: Path) -> None:
    line = edit(
        specs, LOGGED_ON, "call: {this: VM1}", "call: {this: VM1, inRailSession: 1}", AFTER_LOGOFF
    )
    assert problems(specs) == [
        f"{LOGGED_ON}:{line}: scenarios[{_sequence(specs)}].calls[0].call.inRailSession: "
        "unknown parameter 'inRailSession' (parameters of IVMGuestOS::Logoff: "
        "outLogoffTask, this)"
    ]


def test_calls_entry_names_no_created_object(specs: Path) -> None:
    line = edit(specs, LOGGED_ON, OWN_CALL, OWN_CALL.replace("VM1", "VM2"), AFTER_LOGOFF)
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGGED_ON}:{line}: scenarios[{_sequence(specs)}].calls[1].call.this: 'VM2' is not "
        "an object this scenario creates; use {unknown: virtual_machine}"
    )


def test_calls_entry_given_step_of_unknown_kind(specs: Path) -> None:
    given = "- given: [{virtual_machin: VM2}]\n      "
    line = edit(specs, LOGGED_ON, OWN_CALL, given + OWN_CALL, AFTER_LOGOFF)
    assert problems(specs) == [
        f"{LOGGED_ON}:{line}: scenarios[{_sequence(specs)}].calls[1].given[0].virtual_machin: "
        f"unknown step 'virtual_machin' (steps of virtual-pc: "
        f"{domain_names(specs, 'virtual-pc', 'steps')}, fault); "
        "did you mean 'virtual_machine'?"
    ]


def test_calls_entry_given_undeclared_field(specs: Path) -> None:
    given = "- given: [{virtual_machine: VM2, powr: running}]\n      "
    line = edit(specs, LOGGED_ON, OWN_CALL, given + OWN_CALL, AFTER_LOGOFF)
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGGED_ON}:{line}: scenarios[{_sequence(specs)}].calls[1].given[0].powr: "
        "unknown field 'powr' (fields of virtual_machine: "
    )
    assert found.endswith("did you mean 'power'?")


def test_calls_entry_given_names_what_later_entries_call(specs: Path) -> None:
    given = "- given: [{virtual_machine: VM2, power: running, additions: true}]\n      "
    new = given + OWN_CALL.replace("VM1", "VM2")
    edit(specs, LOGGED_ON, OWN_CALL, new, AFTER_LOGOFF)
    assert load_catalog([specs]).specs["IVMGuestOS::IsUserLoggedOn"].scenarios[
        _sequence(specs)
    ].calls[1] == {"given": [{"virtual_machine": "VM2", "power": "running", "additions": True}]}


@pytest.mark.parametrize(
    ("code", "wrong"),
    [("E_INVALIDARG", True), ("HRESULT_FROM_WIN32(ERROR_NO_SUCH_LOGON_SESSION)", False)],
)
def test_calls_entry_expects_the_codes_of_the_method_it_calls(
    specs: Path, code: str, wrong: bool
) -> None:
    listed = {
        rel: {c["symbol"] for c in _data(specs, rel)["returns"]["codes"]}
        for rel in (LOGGED_ON, LOGOFF)
    }
    # the calling method lists the code and Logoff does not, or the other way round
    assert (code in listed[LOGGED_ON], code in listed[LOGOFF]) == (wrong, not wrong)
    line = edit(specs, LOGGED_ON, "expect: S_OK", f'expect: "{code}"', AFTER_LOGOFF)
    if not wrong:
        assert load_catalog([specs]).specs
        return
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGGED_ON}:{line}: scenarios[{_sequence(specs)}].calls[0].expect: unknown code "
        f"{code!r} (returns.codes and returns.also of IVMGuestOS::Logoff: S_OK, "
    )


def test_calls_entry_then_names_an_unknown_collection(specs: Path) -> None:
    name = "logs off Rail and RDP sessions alike, then finds no one"
    line = edit(specs, LOGOFF, "then: {logon_sessions:", "then: {logon_sesions:", f"name: {name}")
    (found,) = problems(specs)
    assert found.startswith(
        f"{LOGOFF}:{line}: scenarios[{scenario_index(specs, LOGOFF, name)}].calls[0].then."
        "logon_sesions: unknown collection 'logon_sesions' (collections of virtual-pc: "
    )


def test_calls_entry_judged_against_the_method_it_calls(specs: Path) -> None:
    name = "reads what SetParameter wrote"
    params = {p["name"] for p in _data(specs, GET_PARAMETER)["params"]}
    assert "inParameterValue" not in params  # SetParameter's, passed to SetParameter
    assert load_catalog([specs]).specs["IVMGuestOS::GetParameter"]
    edit(specs, GET_PARAMETER, "IVMGuestOS::SetParameter", "IVMGuestOS::GetParameter", name)
    line = line_of(specs, GET_PARAMETER, "inParameterValue:", after=f"name: {name}")
    (found,) = problems(specs)
    assert found.startswith(
        f"{GET_PARAMETER}:{line}: scenarios[{scenario_index(specs, GET_PARAMETER, name)}]"
        ".calls[0].call.inParameterValue: unknown parameter 'inParameterValue' (parameters: "
    )


def test_validate_finds_the_bundled_catalog_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SPECS)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d+ specs, \d+ documented codes, \d+ domains: valid", out)


def test_non_string_key(specs: Path) -> None:
    line = edit(specs, LOGOUT, "targetId: T1}", "targetId: T1, 1: x}", after=SCENARIO0)
    assert problems(specs) == [f"{LOGOUT}:{line}: scenarios[0].call: key 1 is not text: quote it"]


def test_domain_schema_error_is_located(specs: Path) -> None:
    line = edit(specs, VDS_DOMAIN, "{ref: targets}", "{reff: targets}", after="sessions:")
    assert problems(specs) == [
        f"{VDS_DOMAIN}:{line}: collections.sessions.fields.target: unknown key 'reff' "
        "(allowed: ref, same, list, string, bool, uint16, uint32, enum, struct); "
        "did you mean 'ref'?"
    ]


def test_code_table_schema_error_is_located(specs: Path) -> None:
    line = edit(specs, "codes.yaml", ", value: 0x80070000", "")
    assert problems(specs) == [
        f"codes.yaml:{line}: families.HRESULT_FROM_WIN32: 'mask' needs 'value' beside it"
    ]


def test_schema_problems_on_a_document() -> None:
    doc = load_text("codes: 1\nsymbols:\n  E_X: -1\n  E_Y: 0x80000000\n", "t.yaml")
    assert [str(p) for p in schema_problems(doc, "codes")] == [
        "t.yaml:3: symbols.E_X: -1 is less than the minimum of 0"
    ]
