"""`conformance run --record FILE`, also with `-n N`, and `--provider replay:FILE`.

Each xdist worker records its own exchanges into a part file; the controller merges the parts
into FILE, filed by check, in check-name order. A replay plays each check's exchanges whatever
order or process the checks run in, and takes the recorded seed, profile and code page from
the cassette's header. The proof: a run recorded with `-n 2` against the reference replays
with `-n 0` to the same verdicts, check by check.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from support import verdicts as concluded

from conformance.cli import main
from conformance.remote.cassette import (
    CassetteMismatch,
    CassetteProvider,
    RecordingProvider,
    parts_folder,
)

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

# Scenarios and property checks of one method, with state (portal groups) and strings drawn.
SELECTION = "RemovePortal and (scenario or oracle or repeat or closed)"


def run(out: Path, *argv: str) -> tuple[int, str]:
    """`conformance run` in-process, quick profile: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(["run", "--out", str(out), *argv])
    return code, stderr.getvalue()


def verdicts(out: Path) -> dict[str, Any]:
    """What a run concluded, the seed it drew from, and the checks that asked the provider
    for something (a check that judged cases another check executed asks nothing)."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    asked = {
        c["name"]
        for m in [*results["methods"].values(), *results["families"].values()]
        for c in m["checks"]
        if c.get("operations", {}).get("total")
    }
    return {**concluded(out), "seed": results["seed"], "asked": asked}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A run of the reference with -n 2, recorded without --seed: (cassette, verdicts)."""
    folder = tmp_path_factory.mktemp("record")
    cassette = folder / "run.jsonl"
    code, stderr = run(
        folder / "recorded",
        "--provider",
        "reference",
        "--profile",
        "quick",
        "-k",
        SELECTION,
        "-n",
        "2",
        "--record",
        str(cassette),
    )
    assert code == 0, stderr
    assert "recording with --seed " in stderr
    return cassette, verdicts(folder / "recorded")


def test_two_workers_record_one_cassette_filed_by_check(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    cassette, expected = recorded
    header, *exchanges = lines(cassette)
    assert header["cassette"] == 1 and header["parts"] == 2
    assert (header["profile"], header["seed"], header["code_page"]) == (
        "quick",
        expected["seed"],
        "cp1252",
    )
    assert isinstance(header["seed"], int)
    assert not parts_folder(cassette).exists(), "the parts are merged and removed"
    run_level = [e["op"] for e in exchanges if "check" not in e]
    assert run_level == ["capabilities", "close"]  # the controller's own
    checks = [e["check"] for e in exchanges if "check" in e]
    order = list(dict.fromkeys(checks))
    assert order == sorted(order), "checks in name order, each check's exchanges together"
    assert len(order) == 1 + sum(a != b for a, b in itertools.pairwise(checks))
    assert set(order) == expected["asked"], (
        "every check that made requests is filed, and only those"
    )
    assert expected["asked"] < set(expected["checks"]), "the planned cases ran once"


def test_a_two_worker_cassette_replays_in_one_process_to_the_same_verdicts(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    cassette, expected = recorded
    code, stderr = run(tmp_path, "--provider", f"replay:{cassette}", "-k", SELECTION)
    assert code == 0, stderr
    got = verdicts(tmp_path)
    assert got == expected  # statuses, messages, method verdicts and codes; seed and profile
    assert len(got["checks"]) >= 4


def test_a_replay_refuses_another_seed_or_profile(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    cassette, expected = recorded
    other = str(expected["seed"] + 1)
    code, stderr = run(tmp_path, "--provider", f"replay:{cassette}", "--seed", other)
    assert code == 2
    assert stderr.strip() == (
        f"--seed {other}: the cassette {cassette} was recorded with --seed {expected['seed']}, "
        "and a replay with another would ask for exchanges it does not hold; leave --seed out "
        "to use the recorded one"
    )
    code, stderr = run(tmp_path, "--provider", f"replay:{cassette}", "--profile", "ci")
    assert code == 2
    assert stderr.startswith("--profile ci: the cassette ") and "--profile quick" in stderr
    # the recorded ones, given again, are accepted
    code, _ = run(
        tmp_path / "same",
        "--provider",
        f"replay:{cassette}",
        "--seed",
        str(expected["seed"]),
        "--profile",
        "quick",
        "-k",
        "RemovePortal and scenario and removes",
    )
    assert code == 0


def test_a_check_the_cassette_does_not_hold_fails_clearly(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    cassette, _ = recorded
    code, _ = run(
        tmp_path,
        "--provider",
        f"replay:{cassette}",
        "-k",
        "LogoutFromTarget and scenario and unknown",
    )
    assert code == 1
    (check,) = verdicts(tmp_path)["checks"].values()
    assert check[0] == "failed"
    assert (
        f"cassette {cassette} holds no exchange of check "
        "IVdsIscsiInitiatorAdapter::LogoutFromTarget::scenario::an-unknown-target-id" in check[1]
    )


# -- the cassette, by hand --------------------------------------------------------------------


def record_part(path: Path, checks: dict[str, list[str]], header: dict[str, Any]) -> None:
    """A cassette with, per check, one setup of each named target."""
    recorder = RecordingProvider(ReferenceProvider(), path, header=header)
    recorder.capabilities()
    for check, targets in checks.items():
        recorder.begin_check(check)
        recorder.reset()
        for name in targets:
            recorder.setup({"target": name})
    recorder.begin_check(None)
    recorder.close()


def test_parts_merge_to_the_same_file_whatever_the_worker_split(tmp_path: Path) -> None:
    merged = []
    for split in (
        [{"b": ["T2"], "a": ["T1"]}, {"c": ["T3"]}],
        [{"c": ["T3"]}, {"a": ["T1"]}, {"b": ["T2"]}],
    ):
        folder = tmp_path / str(len(split))
        controller = RecordingProvider(
            ReferenceProvider(), folder / "c.jsonl", header={"seed": 7}, parts=True
        )
        controller.capabilities()
        for i, checks in enumerate(split):
            record_part(parts_folder(folder / "c.jsonl") / f"gw{i}.jsonl", checks, {"seed": 7})
        controller.close()
        header, *exchanges = lines(folder / "c.jsonl")
        assert header.pop("parts") == len(split)
        merged.append([header, *((e.get("check"), e["op"], e["args"]) for e in exchanges)])
    assert merged[0] == merged[1]  # the ids the reference made up aside
    assert [(check, op) for check, op, _ in merged[0][1:]] == [
        (None, "capabilities"),
        (None, "close"),
        ("a", "reset"),
        ("a", "setup"),
        ("b", "reset"),
        ("b", "setup"),
        ("c", "reset"),
        ("c", "setup"),
    ]


def test_a_cassette_by_check_plays_each_check_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    record_part(path, {"one": ["T1"], "two": ["T2", "T3"]}, {"seed": 3, "profile": "quick"})
    replay = CassetteProvider(path)
    assert replay.by_check and replay.header["seed"] == 3
    replay.capabilities()
    replay.capabilities()  # outside a check: the run's answer, as often as asked
    replay.begin_check("two")
    replay.reset()
    ids = [replay.setup({"target": "T2"}), replay.setup({"target": "T3"})]
    assert ids == [
        e["result"] for e in lines(path) if e.get("check") == "two" and e["op"] == "setup"
    ]
    replay.begin_check("one")
    replay.reset()
    with pytest.raises(
        CassetteMismatch, match=re.escape('step.target: asked "T9", the cassette holds "T1"')
    ):
        replay.setup({"target": "T9"})
    replay.begin_check("one")  # a check starts again from its first exchange
    replay.reset()
    replay.setup({"target": "T1"})
    assert replay.remaining == 0
    replay.begin_check("three")
    with pytest.raises(CassetteMismatch, match="holds no exchange of check three"):
        replay.reset()
    replay.begin_check(None)
    replay.close()
