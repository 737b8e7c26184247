"""Observed behaviour: a spec's `observed:` entries and the `--observed strict|lenient` policy.

No documented departure of Windows from these pages is known to the project, so the example
here is made up for the test and says so in its `source`: with an empty target name, "Windows
10.0.19045" gives ERROR_INVALID_PARAMETER instead of ISDSC_TARGET_NOT_FOUND. The spec is the
bundled RemoveIScsiPersistentTargetW (its multi-call scenario and twin left out, so that it
stands alone) with that entry and one scenario added; the providers are the reference
simulator taught to give the observed code, declaring a Windows version or not.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformance_providers.reference import ReferenceProvider

from conformance.cli import main
from conformance.engine.judging import code_mismatch
from conformance.engine.strategies import state_of
from conformance.engine.subject import Subject
from conformance.engine.verdict import Settings
from conformance.provider import Outcome
from conformance.spec.catalog import load_catalog
from conformance.spec.observed import LENIENT, STRICT, ObservedPolicy, version_matches
from conformance.spec.paths import default_specs_dir
from conformance.spec.source import SourceError

METHOD = "RemoveIScsiPersistentTargetW"
EMPTY = "an-empty-target-name"  # the scenario the entry excuses (its `when` holds)
UNKNOWN = "a-target-with-no-persistent-login"  # the same departure where `when` does not hold

OBSERVED = {
    "windows": "10.0.19045",
    "when": "args.TargetName == ''",
    "code": "ERROR_INVALID_PARAMETER",
    "instead_of": "ISDSC_TARGET_NOT_FOUND",
    "source": "illustrative: made up for tests/spec/test_observed.py; no Windows host was asked",
    "note": "an empty target name refused before the persistent login list is searched",
}
EMPTY_SCENARIO = {
    "name": "an empty target name",
    "given": [
        {"initiator": "I1"},
        {"port": "N1", "initiator": "I1"},
        {
            "persistent_target": "PT1",
            "initiator": "I1",
            "port": "N1",
            "target_name": "iqn.1991-05.com.example:disk1",
            "portal": {"SymbolicName": "", "Address": "192.0.2.10", "Socket": 3260},
        },
    ],
    "call": {
        "InitiatorInstance": "I1",
        "InitiatorPortNumber": "N1",
        "TargetName": "",
        "Portal": None,
    },
    "expect": "ISDSC_TARGET_NOT_FOUND",
    "then": {"persistent_targets": ["PT1"]},
}

PROVIDERS = '''
from conformance.provider import Outcome
from conformance_providers.reference import ReferenceProvider

TARGET_NOT_FOUND, INVALID_PARAMETER = 0xEFFF0029, 0x57


class Windows19045(ReferenceProvider):
    """The reference, but "Windows 10.0.19045": any target it cannot find is an invalid
    parameter (the entry excuses this only for an empty name)."""

    windows = "10.0.19045"

    def capabilities(self):
        caps = super().capabilities()
        if self.windows:
            caps["windows_version"] = self.windows
        return caps

    def call(self, method_id, args):
        out = super().call(method_id, args)
        if method_id == "RemoveIScsiPersistentTargetW" and out.hresult == TARGET_NOT_FOUND:
            return Outcome(INVALID_PARAMETER, out.outputs, out.completion)
        return out


class Windows10(Windows19045):
    windows = "10.0.22631.2861"   # 10.0 prefixes it, 10.0.19045 does not


class Undeclared(Windows19045):
    windows = None               # the same results, no Windows version: never excused
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec (with its observed entry) and the providers, written once for the module."""
    root = tmp_path_factory.mktemp("observed")
    bundled = next(default_specs_dir().rglob(f"{METHOD}.yaml"))
    data = yaml.safe_load(bundled.read_text(encoding="utf-8"))
    data.pop("twin", None)
    data["scenarios"] = [s for s in data["scenarios"] if "calls" not in s] + [EMPTY_SCENARIO]
    assert any(s["name"] == "a target with no persistent login" for s in data["scenarios"])
    data["observed"] = [OBSERVED]
    write_spec(root / "spec.yaml", data)
    (root / "providers.py").write_text(PROVIDERS, encoding="utf-8")
    return root


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8"
    )
    return path


def run(
    folder: Path, out: str, provider: str, *extra: str, keyword: str = "scenario"
) -> tuple[int, dict[str, Any]]:
    """`conformance run` in-process on the spec's scenarios: (exit code, results.json)."""
    target = provider if provider == "reference" else f"{folder / 'providers.py'}:{provider}"
    argv = [
        "run",
        "--provider",
        target,
        "--specs",
        str(folder / "spec.yaml"),
        "--out",
        str(folder / out),
        "--profile",
        "quick",
        "--seed",
        "1",
        "-k",
        keyword,
        "--in-process",
        *extra,
    ]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    return code, json.loads((folder / out / "results.json").read_text(encoding="utf-8"))


def checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check case -> its entry in results.json."""
    return {c["name"].split("::")[-1]: c for c in results["methods"][METHOD]["checks"]}


# -- the spec: schema and validate -------------------------------------------------------------


def line_of(path: Path, key: str) -> int:
    """The line of `key` in the spec's `observed` section."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("observed:")
    return next(i for i, line in enumerate(lines[start:], start + 1) if f"{key}:" in line)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "code",
            "ERROR_INVALID_PARAMETRE",
            "observed[0].code: unknown code 'ERROR_INVALID_PARAMETRE' (returns.codes and "
            "codes.yaml: ",
        ),
        (
            "instead_of",
            "ISDSC_TARGET_NOT_FOUNDD",
            "observed[0].instead_of: unknown code 'ISDSC_TARGET_NOT_FOUNDD' (returns.codes and "
            "returns.also: ",
        ),
        ("when", "args.TargetName ==", "observed[0].when: invalid CEL at 1:"),
        ("when", "args.Target == ''", "observed[0].when: args.Target: unknown parameter 'Target'"),
        ("windows", "Windows 10", "observed[0].windows: 'Windows 10' is not a Windows version"),
        ("windows", 10.0, "observed[0].windows: 10.0 is not of type 'string' (quote it)"),
    ],
)
def test_a_bad_entry_is_reported_at_its_line(
    folder: Path, tmp_path: Path, key: str, value: Any, message: str
) -> None:
    data = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    data["observed"] = [{**OBSERVED, key: value}]
    path = write_spec(tmp_path / "spec.yaml", data)
    with pytest.raises(SourceError) as error:
        load_catalog([path])
    line = line_of(path, key)
    (problem,) = [str(p) for p in error.value.problems]
    assert problem.startswith(f"{path}:{line}: {message}"), problem
    if key == "code":
        assert problem.endswith("; did you mean 'ERROR_INVALID_PARAMETER'?")
    assert main(["validate", str(path)]) == 2


def test_a_valid_entry_loads_into_the_model(folder: Path) -> None:
    spec = load_catalog([folder / "spec.yaml"]).specs[METHOD]
    (entry,) = spec.observed
    assert (entry.windows, entry.code, entry.instead_of, entry.when, entry.index) == (
        "10.0.19045",
        "ERROR_INVALID_PARAMETER",
        "ISDSC_TARGET_NOT_FOUND",
        "args.TargetName == ''",
        0,
    )
    assert entry.source.startswith("illustrative:")


def test_an_entry_that_replaces_its_own_code_is_refused(folder: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    data["observed"] = [{**OBSERVED, "code": "ISDSC_TARGET_NOT_FOUND"}]
    path = write_spec(tmp_path / "spec.yaml", data)
    with pytest.raises(
        SourceError,
        match=re.escape("observed[0].instead_of: ISDSC_TARGET_NOT_FOUND replaces itself"),
    ):
        load_catalog([path])


@pytest.mark.parametrize(
    ("prefix", "version", "matches"),
    [
        ("10.0.19045", "10.0.19045", True),
        ("10.0", "10.0.19045.3803", True),
        ("10", "10.0", True),
        ("10.0.19045", "10.0.22631", False),
        ("10.0", "10.01", False),
        ("6.3", "10.0", False),
        ("10.0.19045", "10.0", False),
    ],
)
def test_a_version_matches_by_whole_components(prefix: str, version: str, matches: bool) -> None:
    assert version_matches(prefix, version) is matches


# -- the policy ---------------------------------------------------------------------------------


def test_strict_fails_a_departure_like_any_wrong_code(folder: Path) -> None:
    code, results = run(folder, "strict", "Windows19045")
    assert code == 1
    assert results["observed"] == "strict"
    assert results["capabilities"]["windows_version"] == "10.0.19045"
    by_case = checks(results)
    assert by_case[EMPTY]["status"] == "failed"
    assert "expected ISDSC_TARGET_NOT_FOUND" in by_case[EMPTY]["message"]
    assert "observed" not in by_case[EMPTY] and "observed" not in results["methods"][METHOD]


def test_lenient_passes_it_only_where_the_entry_applies(folder: Path) -> None:
    code, results = run(folder, "lenient", "Windows19045", "--observed", "lenient")
    by_case = checks(results)
    excused = by_case[EMPTY]
    assert excused["status"] == "passed"
    assert excused["message"].startswith(
        "passed as observed (--observed lenient): ERROR_INVALID_PARAMETER instead of "
        "ISDSC_TARGET_NOT_FOUND once (RemoveIScsiPersistentTargetW observed[0], Windows "
        "10.0.19045)"
    )
    (hit,) = excused["observed"]
    assert hit == {
        "method": METHOD,
        "entry": 0,
        "windows": "10.0.19045",
        "code": "ERROR_INVALID_PARAMETER",
        "instead_of": "ISDSC_TARGET_NOT_FOUND",
        "expected": ["ISDSC_TARGET_NOT_FOUND"],
        "source": OBSERVED["source"],
        "note": OBSERVED["note"],
        "provider_windows": "10.0.19045",
        "times": 1,
    }
    # the same departure where the entry's `when` does not hold still fails
    assert by_case[UNKNOWN]["status"] == "failed"
    assert "observed" not in by_case[UNKNOWN]
    assert code == 1
    # per code: the documented code the entry stood in for, and which checks it excused
    method = results["methods"][METHOD]
    assert method["observed"] == {
        "ISDSC_TARGET_NOT_FOUND": [
            {
                "entry": 0,
                "windows": "10.0.19045",
                "code": "ERROR_INVALID_PARAMETER",
                "source": OBSERVED["source"],
                "checks": [excused["name"]],
                "times": 1,
            }
        ]
    }
    assert results["observed"] == "lenient"
    # the report marks the code as observed, and says which policy the run had
    html = (folder / "lenient" / "report.html").read_text(encoding="utf-8")
    assert '<span class="obs">(observed)</span>' in html  # beside `fail`: UNKNOWN failed it
    assert "code-fail code-observed" not in html  # the mark is for a pass
    assert "ERROR_INVALID_PARAMETER on Windows 10.0.19045 (observed[0], once in 1 check;" in html
    assert '<dd id="observed-policy"><code>--observed lenient</code>' in html
    assert '<span class="st-observed">(observed)</span>' in html


def test_lenient_excuses_a_version_the_entry_prefixes_and_no_other(
    folder: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    data["observed"] = [{**OBSERVED, "windows": "10.0"}, OBSERVED]  # 10.0 prefixes 10.0.22631
    write_spec(tmp_path / "spec.yaml", data)
    (tmp_path / "providers.py").write_text(PROVIDERS, encoding="utf-8")
    _, results = run(tmp_path, "prefix", "Windows10", "--observed", "lenient", keyword="empty")
    (excused,) = checks(results).values()
    assert excused["status"] == "passed"
    assert [h["entry"] for h in excused["observed"]] == [0]
    assert results["methods"][METHOD]["codes"]["ISDSC_TARGET_NOT_FOUND"] == "pass"
    html = (tmp_path / "prefix" / "report.html").read_text(encoding="utf-8")
    assert 'class="code code-pass code-observed"' in html, "a pass, marked as observed"
    data["observed"] = [OBSERVED]  # 10.0.19045 only
    write_spec(tmp_path / "spec.yaml", data)
    code, results = run(tmp_path, "other", "Windows10", "--observed", "lenient", keyword="empty")
    (failed,) = checks(results).values()
    assert (code, failed["status"]) == (1, "failed")


def test_never_for_a_provider_that_declares_no_windows_version(folder: Path) -> None:
    code, results = run(
        folder, "undeclared", "Undeclared", "--observed", "lenient", keyword="empty"
    )
    (failed,) = checks(results).values()
    assert (code, failed["status"]) == (1, "failed")
    assert "windows_version" not in results["capabilities"]
    html = (folder / "undeclared" / "report.html").read_text(encoding="utf-8")
    assert "the provider declares no Windows version, so nothing is excused" in html


def test_never_for_the_reference(folder: Path) -> None:
    code, results = run(folder, "reference", "reference", "--observed", "lenient")
    assert code == 0
    assert all(c["status"] == "passed" and "observed" not in c for c in checks(results).values())
    assert "observed" not in results["methods"][METHOD]


def test_the_one_judge_reads_the_rules_last_call_where_none_is_passed(folder: Path) -> None:
    """The stateful machine passes no state to `code_mismatch`: the entry's `when` is read
    against the call the rules were last asked about."""
    catalog = load_catalog([folder / "spec.yaml"])
    spec = catalog.specs[METHOD]
    policy = ObservedPolicy(LENIENT, "10.0.19045")
    subject = Subject(
        spec,
        catalog.domain_of(spec),
        catalog.codes,
        ReferenceProvider(),
        (),
        Settings(observed=policy),
    )
    given = [{"initiator": "I1"}, {"port": "N1", "initiator": "I1"}]
    for name, excused in (("", True), ("iqn.1991-05.com.example:disk9", False)):
        args = {
            "InitiatorInstance": "I1",
            "InitiatorPortNumber": "N1",
            "TargetName": name,
            "Portal": None,
        }
        predicted = subject.oracle.predict(state_of(subject.domain, given), args)
        assert predicted.codes == ("ISDSC_TARGET_NOT_FOUND",)
        problem = code_mismatch(subject, predicted.codes, Outcome(0x57))
        assert (problem is None) is excused, problem
    (hit,) = policy.take()
    assert (hit["entry"], hit["times"]) == (0, 1)
    assert (
        code_mismatch(
            Subject(
                spec,
                subject.domain,
                catalog.codes,
                ReferenceProvider(),
                (),
                Settings(observed=ObservedPolicy(STRICT, "10.0.19045")),
            ),
            ("ISDSC_TARGET_NOT_FOUND",),
            Outcome(0x57),
        )
        is not None
    )
