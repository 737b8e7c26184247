"""Hostile specs: whatever bytes a spec file holds, loading it ends in a clear, located error.

A corpus of known nasty cases (alias bombs, deep nesting, huge files, invalid UTF-8, CEL that
recurses or allocates without bound) and a hypothesis fuzz over mutated real specs. Every
outcome must be a loaded catalog or a SourceError whose problems name the file: never another
exception, never unbounded time or memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT

from conformance.spec.catalog import load_catalog
from conformance.spec.source import MAX_BYTES, SourceError

SPECS = ROOT / "specs"
TARGET = "vds/IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"


def copy_specs(root: Path) -> Path:
    """The code table, the domains and the target's family: enough for every reference the
    target makes, and each load stays cheap (the fuzz loads it many times)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py")
    family = TARGET.split("/")[0]
    for part in ("domains", "schema", family):
        if (SPECS / part).is_dir():
            shutil.copytree(SPECS / part, root / part, ignore=ignore)
    shutil.copy(SPECS / "codes.yaml", root / "codes.yaml")
    return root


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    return copy_specs(tmp_path / "specs")


def load_outcome(root: Path) -> list[str]:
    """[] when the catalog loads; else the problems, each of which must name a file."""
    try:
        load_catalog([root])
    except SourceError as exc:
        assert exc.problems, "a SourceError without problems"
        for problem in exc.problems:
            assert problem.file and problem.line >= 1, problem
        return [str(p) for p in exc.problems]
    return []


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)

CORPUS = {
    "alias bomb": ALIAS_BOMB.encode(),
    "deep nesting": ("[" * 5000 + "]" * 5000).encode(),
    "deep mappings": ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 3000))).encode(),
    "invalid UTF-8": b"spec: 1\nid: \xff\xfe\xfa\n",
    "binary": bytes(range(256)) * 8,
    "empty": b"",
    "only a comment": b"# nothing\n",
    "a list": b"- 1\n- 2\n",
    "a scalar": b"42\n",
    "huge": b"spec: 1\nsummary: " + b"x" * (MAX_BYTES + 10) + b"\n",
    "tabs": b"spec: 1\n\tid: x\n",
    "python tag": b"!!python/object/apply:os.system ['echo pwned']\n",
    "unknown tag": b"spec: !custom 1\n",
    "NUL bytes": b"spec: 1\x00\x00\n",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_nasty_files_give_located_errors(specs: Path, name: str) -> None:
    (specs / TARGET).write_bytes(CORPUS[name])
    started = time.perf_counter()
    problems = load_outcome(specs)
    assert time.perf_counter() - started < 20
    assert problems and all(TARGET in p for p in problems), problems


def _rule(specs: Path, expression: str) -> list[str]:
    path = specs / TARGET
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        '  - when: "!state.sessions.exists(s, s.target == args.targetId)"',
        f"  - when: {expression!r}",
        1,
    )
    path.write_text(text, encoding="utf-8")
    return load_outcome(specs)


def test_cel_that_multiplies_work_is_refused(specs: Path) -> None:
    nested = (
        "[1,2,3,4,5,6,7,8,9].map(a, [1,2,3,4,5,6,7,8,9].map(b, [1,2,3,4,5,6,7,8,9].map("
        "c, [1,2,3,4,5,6,7,8,9].map(d, a + b + c + d)))).size() > 0"
    )
    problems = _rule(specs, nested)
    assert any("comprehensions nest 4 deep" in p for p in problems), problems


def test_cel_whose_work_grows_as_a_cube_is_warned_of(specs: Path) -> None:
    """Three comprehensions each over a world collection of their own: valid, but `validate`
    warns naming the rule's file:line and the bound; ranging over a part of an enclosing
    element (`g.portals` in the loop over `g`) takes that loop's place and is not warned of."""
    from conformance.spec.cel_checks import cost_warnings

    cubic = (
        "state.sessions.exists(a, state.sessions.exists(b, state.sessions.exists(c, "
        "a.target == b.target && b.target == c.target && a.id != c.id)))"
    )
    assert _rule(specs, cubic) == []
    warnings = cost_warnings(load_catalog([specs]))
    assert len(warnings) == 1 and TARGET in warnings[0], warnings
    assert re.search(
        r"\.yaml:\d+: rules\[\d+\]\.when: warning: comprehensions nest 3 deep", warnings[0]
    ), warnings
    assert "collections of 100 objects reach the bound of 1,000,000 visits" in warnings[0]
    parts = "state.sessions.all(s, s.portals.all(p, s.portals.filter(q, q == p).size() == 1))"
    assert _rule(copy_specs(specs.parent / "again"), parts) == []
    assert cost_warnings(load_catalog([specs.parent / "again"])) == []


def test_enormous_cel_is_refused(specs: Path) -> None:
    problems = _rule(specs, " || ".join(["args.targetId == 'x'"] * 400))
    assert any("characters; at most" in p for p in problems), problems


def test_python_tags_are_never_constructed(specs: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (specs / TARGET).write_text(
        f"!!python/object/apply:os.system ['touch {marker}']\n", encoding="utf-8"
    )
    assert load_outcome(specs)
    assert not marker.exists()


_MUTATION = st.tuples(
    st.integers(0, 10_000),
    st.integers(0, 40),
    st.text(
        alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#\n \t?,%@`")) | st.characters(), max_size=8
    ),
)


# The default run tries 60 inputs; CONFORMANCE_FUZZ_EXAMPLES=N tries N (a longer profile).
FUZZ_EXAMPLES = int(os.environ.get("CONFORMANCE_FUZZ_EXAMPLES", "60"))


def test_mutated_specs_load_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, record_property: Any
) -> None:
    tried: list[tuple[float, int]] = []  # (seconds, problems) per input

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(_MUTATION, min_size=1, max_size=4))
    def load_mutated(mutations: list[tuple[int, int, str]]) -> None:
        root = copy_specs(tmp_path_factory.mktemp("fuzz") / "specs")
        path = root / TARGET
        text = path.read_text(encoding="utf-8")
        for at, cut, insert in mutations:
            at %= len(text) + 1
            text = text[:at] + insert + text[at + cut :]
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        started = time.perf_counter()
        problems = load_outcome(root)  # anything but a located SourceError fails here
        tried.append((time.perf_counter() - started, len(problems)))
        shutil.rmtree(root.parent, ignore_errors=True)

    load_mutated()
    slowest = max(seconds for seconds, _ in tried)
    rejected = sum(1 for _, n in tried if n)
    print(
        f"\nfuzz: {len(tried)} inputs, {rejected} rejected with located errors, "
        f"{len(tried) - rejected} loaded, 0 crashes, slowest {slowest:.2f} s"
    )
    record_property("fuzz_inputs", len(tried))
    record_property("fuzz_slowest_seconds", round(slowest, 3))
    assert tried


# -- issue 18: what a broken disk, file or provider gives stays one clear line ---------------


def test_a_read_only_out_folder_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    import contextlib
    import io
    import os

    from conformance.cli import main

    out = tmp_path / "ro"
    out.mkdir()
    os.chmod(out, 0o555)
    err = io.StringIO()
    try:
        if os.access(out, os.W_OK):  # root writes anyway: nothing to show here
            pytest.skip("this user can write into a read-only folder")
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", "--in-process", "--out", str(out), "-k", "Logoff.yaml"])
    finally:
        os.chmod(out, 0o755)
    assert code == 2
    assert err.getvalue().strip().splitlines() == [
        f"--out {out}: cannot write there: Permission denied"
    ]


def test_a_torn_or_foreign_results_line_is_skipped_and_named(tmp_path: Path) -> None:
    from conformance.reporting.results import read_stream

    stream = tmp_path / "results.jsonl"
    good = json.dumps(
        {
            "event": "check",
            "name": "M::oracle::property",
            "method": "M",
            "kind": "oracle",
            "case": "property",
            "status": "passed",
        }
    )
    stream.write_bytes(
        b'{"event": "start", "provider": "p", "methods": {}}\n'
        + b"[1, 2, 3]\n"
        + b'{"event": "check", "bogus": 1}\n'
        + good.encode()
        + b"\n"
        + '{"event": "check", "name": "é'.encode()[:-1]
    )
    skipped: list[str] = []
    header, _, results = read_stream(stream, skipped)
    assert header["provider"] == "p" and [r.name for r in results] == ["M::oracle::property"]
    assert [s.split(": skipped")[0] for s in skipped] == [
        f"{stream}:2",
        f"{stream}:3",
        f"{stream}:5",
    ]


def test_a_huge_spec_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    from conformance.spec.source import MAX_BYTES, SourceError, load_file

    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.seek(64 * MAX_BYTES)  # a sparse 128 MiB file: cheap to make, costly to read
        handle.write(b"\n")
    read: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        original = handle.read

        def read_some(size: int = -1) -> bytes:
            data = original(size)
            read.append(len(data))
            return data

        handle.read = read_some  # type: ignore[method-assign]
        return handle

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "open", counting_open)
        with pytest.raises(SourceError, match="larger than"):
            load_file(big)
    assert sum(read) <= MAX_BYTES + 1


def test_control_characters_from_a_provider_are_shown_not_sent_raw() -> None:
    from conformance.reporting.html import render_html

    summary = {
        "provider": "p\x1b[31m",
        "totals": {"passed": 0, "failed": 1, "not_applicable": 0, "errors": 0},
        "methods": {
            "M": {
                "verdict": "fails",
                "family": "f",
                "codes": {},
                "checks": [
                    {
                        "name": "M::oracle::property",
                        "kind": "oracle",
                        "status": "failed",
                        "message": "got \x00\x1b[2J",
                    }
                ],
            }
        },
    }
    page = render_html(summary)
    assert "\x00" not in page and "\x1b" not in page
    assert "got \\x00\\x1b[2J" in page


def test_an_out_folder_that_cannot_be_made_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    import contextlib
    import io

    from conformance.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    out = blocker / "out"  # its parent is a file: no folder can be made there, root or not
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "--in-process", "--out", str(out), "-k", "Logoff.yaml"])
    assert code == 2
    assert err.getvalue().strip().splitlines() == [
        f"--out {out}: cannot write there: Not a directory"
    ]


def _result(name: str) -> Any:
    from conformance.reporting.results import CheckResult

    return CheckResult(name=name, method="M", kind="oracle", case="property", status="passed")


def test_a_full_disk_leaves_whole_lines_and_no_temporary_file(tmp_path: Path) -> None:
    from conformance.reporting.results import (
        ResultStream,
        ResultsWriteError,
        read_stream,
        write_summary,
    )

    stream = ResultStream(tmp_path, {"provider": "p"}, {})
    stream.add(_result("M::oracle::first"))

    class Full:
        """A disk that takes half of what is written, then is full."""

        def __init__(self, real: Any):
            self.real = real

        def write(self, data: bytes) -> int:
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    real = stream._jsonl
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream, "_jsonl", Full(real))
        with pytest.raises(
            ResultsWriteError,
            match=r"results\.jsonl: cannot write the "
            r"results: No space left on device",
        ):
            stream.add(_result("M::oracle::second"))
    real.flush()
    _, _, results = read_stream(tmp_path / "results.jsonl")
    assert [r.name for r in results] == ["M::oracle::first"]  # whole lines only
    assert (tmp_path / "results.jsonl").read_bytes().endswith(b"\n")

    def full(self: Path, *args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "write_text", full)
        with pytest.raises(ResultsWriteError, match=r"results\.json: cannot write: No space"):
            write_summary({"totals": {}}, tmp_path)
    assert not (tmp_path / "results.json.tmp").exists()


def test_a_run_stops_in_one_line_when_the_disk_is_full(tmp_path: Path) -> None:
    import contextlib
    import io

    from conformance.cli import main
    from conformance.reporting import results as results_module

    real_add = results_module.ResultStream.add
    count = [0]

    def add(self: Any, result: Any) -> None:
        count[0] += 1
        if count[0] == 3:
            raise results_module.ResultsWriteError(
                f"{tmp_path}/out/results.jsonl: cannot write the results: No space left on "
                "device; every check finished before this one is in it"
            )
        real_add(self, result)

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(results_module.ResultStream, "add", add)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(
                [
                    "run",
                    "--in-process",
                    "--out",
                    str(tmp_path / "out"),
                    "-k",
                    "Logoff.yaml",
                    "--regressions",
                    str(tmp_path / "r"),
                ]
            )
    assert code == 2
    assert (
        err.getvalue()
        .strip()
        .splitlines()[-1]
        .endswith("No space left on device; every check finished before this one is in it")
    )
    _, _, kept = results_module.read_stream(tmp_path / "out" / "results.jsonl")
    assert len(kept) == 2
