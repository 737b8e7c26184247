"""conformance.extract on the shapes real pages take: prose, lists, decimal values, codes in
Remarks and Parameters, values resolved from win32metadata and code pages, and the traps
(flag tables, input-code lists, other functions' codes, misspelled symbols).

The fixtures under tests/extract/fixtures/shapes/ are pages written for this project (an
invented Fabrikam cabinet API) in the four formats, one page per group of shapes. The corpus
test reads ../shared/docs-wide and is skipped, saying so, where it is absent.
"""

from __future__ import annotations

import importlib.util
import sys
import time

import pytest
from support import TESTS

from conformance.extract.command import extract, main
from conformance.extract.formats import parse_page
from conformance.extract.mentions import code_shaped, symbol_like, value_of
from conformance.extract.resolve import win32metadata
from conformance.spec.source import load_file

HERE = TESTS
SHAPES = TESTS / "extract" / "fixtures" / "shapes"
FIXTURE_SPECS = TESTS / "extract" / "fixtures" / "specs"
CODE_PAGE = SHAPES / "win32_fabrikam_hresult_codes.md"
REPO = HERE.parent
CORPUS = REPO.parent / "shared" / "docs-wide"

needs_metadata = pytest.mark.skipif(
    win32metadata() is None, reason="win32metadata is not installed (the `metadata` extra)"
)
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "truth.yaml").is_file(), reason=f"no development corpus at {CORPUS}"
)


def spec_of(name: str, *more: str, code_pages=(CODE_PAGE,)):
    result = extract([SHAPES / name, *(SHAPES / m for m in more)], FIXTURE_SPECS, code_pages)
    assert not result.errors, result.errors
    (spec,) = result.specs
    return spec


def codes(spec) -> dict[str | None, dict]:
    return {c["symbol"]: c for c in spec.data["returns"]["codes"]}


def kinds(spec) -> set[tuple[str, str | None]]:
    return {(f.kind, f.code) for f in spec.findings}


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("token", "table", "prose"),
    [
        ("S_OK", True, True),
        ("SEC_I_CONTINUE_NEEDED", True, True),
        ("NERR_Success", True, True),
        ("MMSYSERR_NOERROR", True, True),
        ("CR_SUCCESS", True, True),
        ("NO_ERROR", True, True),
        ("D3DDDIERR_DEVICEREMOVED", True, True),
        ("HRESULT_FROM_WIN32(ERROR_BUSY)", True, True),
        ("IDOK", True, False),
        ("WSAEFAULT", True, False),
        ("WAIT_TIMEOUT", True, False),
        ("DXGI_ERROR", True, False),
        ("FORMAT_MESSAGE_FROM_SYSTEM", True, False),
        ("CR_Xxx", True, False),
        ("TRUE", False, False),
        ("HRESULT", False, False),
        ("Zero", False, False),
    ],
)
def test_which_names_are_codes_where(token, table, prose):
    """A table or list may lead with any symbol; prose must spell a status code."""
    assert (symbol_like(token), code_shaped(token)) == (table, prose)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("87", 87),
        ("0x00000080L", 0x80),
        ("(DWORD)0xFFFFFFFF", 0xFFFFFFFF),
        ("(0x5)", 5),
        ("0x80070057:", 0x80070057),
        ("2147942405", 0x80070005),
        ("0x1FFFFFFFF", None),
        ("E_FAIL", None),
    ],
)
def test_values_in_hex_decimal_and_casts(text, value):
    assert value_of(text) == value


# --------------------------------------------------------------------------- sdk-api source


@needs_metadata
def test_prose_codes_remarks_and_parameters_with_traps_refused():
    spec = spec_of("sdkapi_fabrikam_open.md")
    found = codes(spec)
    assert {s: (c["value"], c["x-from"]) for s, c in found.items()} == {
        "ERROR_SUCCESS": (0, "prose"),
        "ERROR_NO_MORE_ITEMS": (0x103, "remarks"),
        "ERROR_INVALID_PARAMETER": (0x57, "parameters"),
    }
    assert found["ERROR_SUCCESS"]["x-value"] == "win32metadata (Foundation)"
    assert all("x-confirm" in c for c in found.values()), "none came from a table or list"
    assert any("ERROR_NO_MORE_ITEMS: named only in the Remarks" in c for c in spec.confirm)
    # The flag table has a return table's layout; FORMAT_MESSAGE_FROM_SYSTEM is a flag; another
    # function's code, a code the call does *not* fail with, and a code sample are not codes.
    named = {f.message.split()[0] for f in spec.findings if f.kind == "code-in-prose-not-in-table"}
    assert {"CO_E_NOTINITIALIZED", "ERROR_PRIVILEGE_NOT_HELD"} <= named
    for trap in (
        "FABRIKAM_OPEN_GENTLY",
        "FABRIKAM_OPEN_FULLY",
        "FORMAT_MESSAGE_FROM_SYSTEM",
        "CO_E_NOTINITIALIZED",
        "ERROR_PRIVILEGE_NOT_HELD",
        "E_FAIL",
    ):
        assert trap not in found


@needs_metadata
def test_list_with_nonzero_success_and_unknown_values():
    spec = spec_of("sdkapi_fabrikam_pump.md")
    found = codes(spec)
    assert [(s, c["value"], c["x-from"]) for s, c in found.items()] == [
        ("S_OK", 0, "list"),
        ("S_FALSE", 1, "list"),
        ("E_OUTOFMEMORY", 0x8007000E, "list"),
        ("FABRIKAM_E_PUMP_STUCK", None, "list"),
        ("FABRIKAM_STATUS_DRY", None, "prose"),
    ]
    assert found["S_FALSE"]["doc"] == "If the pump was already running."
    assert found["FABRIKAM_E_PUMP_STUCK"]["x-value"] == "unknown"
    assert {
        ("value-not-found", "FABRIKAM_E_PUMP_STUCK"),
        ("value-not-found", "FABRIKAM_STATUS_DRY"),
    } <= kinds(spec)
    for trap in (
        "FABRIKAM_ERROR",
        "FABRIKAM_STATUS",
        "FABRIKAM_START_PRIME",
        "FABRIKAM_E_TANK_FULL",
    ):
        assert trap not in found, "a code-list link, a flag, another interface's code"


@needs_metadata
def test_decimal_table_misspelled_symbol_and_value_disagreeing_with_metadata():
    spec = spec_of("sdkapi_fabrikam_policy.md")
    found = codes(spec)
    assert [(s, c["value"]) for s, c in found.items()] == [
        ("ERROR_ACCESS_DENIED", 5),
        ("ERROR_INVALID_PARAMETER", 87),
        ("ERROR_NO_SUCH_USER", 1318),
        ("WAIT_TIMEOUT", 0x102),
    ]
    assert all(c["x-value"] == "printed" and "x-confirm" not in c for c in found.values())
    assert ("value-disagrees-with-symbol", "ERROR_NO_SUCH_USER") in kinds(spec)
    (wrong,) = [f for f in spec.findings if f.kind == "symbol-exists-nowhere"]
    assert wrong.code == "E_ACCESS_DENIED" and "did you mean E_ACCESSDENIED" in wrong.message
    assert not {"FABRIKAM_POLICY_LOCK", "FABRIKAM_POLICY_UNLOCK"} & set(found)


# --------------------------------------------------------------------------- win32 source


@needs_metadata
def test_two_pipe_tables_a_variant_title_and_a_remark_about_later_calls():
    spec = spec_of("win32_fabrikam_negotiate.md")
    assert spec.id == "FabrikamNegotiate"
    found = codes(spec)
    assert list(found) == [
        "SEC_E_OK",
        "SEC_I_CONTINUE_NEEDED",
        "SEC_E_INVALID_HANDLE",
        "SEC_E_LOGON_DENIED",
        "SEC_E_CONTEXT_EXPIRED",
    ]
    assert found["SEC_I_CONTINUE_NEEDED"]["value"] == 0x00090312
    assert found["SEC_E_CONTEXT_EXPIRED"]["x-from"] == "remarks"
    assert not any(k == "severity-contradicts-name" for k, _ in kinds(spec)), (
        "SEC_E_OK is a success by its name's end, and its value is not the page's"
    )
    for trap in (
        "FABRIKAM_REQ_CONFIDENTIAL",
        "FABRIKAM_REQ_MUTUAL",
        "FABRIKAM_E_NO_CACHED_REPLY",
        "FABRIKAM_E_NOT_INITIALIZED",
    ):
        assert trap not in found


@needs_metadata
def test_bullets_values_first_and_a_code_page_for_the_rest():
    spec = spec_of("win32_fabrikam_format.md")
    rows = [(c["symbol"], c["value"], c["x-from"]) for c in spec.data["returns"]["codes"]]
    assert rows == [
        ("ERROR_INSUFFICIENT_BUFFER", 0x7A, "list"),
        ("ERROR_INVALID_FLAGS", 0x3EC, "list"),
        ("FABRIKAM_E_LABEL_TOO_LONG", 0xA0041002, "list"),
        ("E_INVALIDARG", 0x80070057, "list"),
        (None, 0x80073B39, "list"),
        ("HRESULT_FROM_WIN32(ERROR_BAD_FORMAT)", 0x8007000B, "list"),
        ("ERROR_SUCCESS", 0, "remarks"),
    ]
    label = codes(spec)["FABRIKAM_E_LABEL_TOO_LONG"]
    assert label["x-value"] == "code page win32_fabrikam_hresult_codes.md"
    assert not {"FABRIKAM_LABEL_SHORT", "FABRIKAM_LABEL_LONG"} & set(codes(spec))


@needs_metadata
def test_definition_list_returns_and_an_out_parameter_s_codes_refused():
    spec = spec_of("win32_fabrikam_ticket.md")
    assert [(s, c["value"], c["x-from"]) for s, c in codes(spec).items()] == [
        ("RPC_S_OK", 0, "list"),
        ("RPC_S_INVALID_ARG", 0x57, "list"),
        ("FABRIKAM_E_CABINET_GONE", 0xA0041001, "list"),
    ]


def test_without_a_code_page_the_value_stays_null_with_a_finding():
    result = extract([SHAPES / "win32_fabrikam_ticket.md"], FIXTURE_SPECS, metadata=False)
    (spec,) = result.specs
    gone = codes(spec)["FABRIKAM_E_CABINET_GONE"]
    assert gone["value"] is None and gone["x-value"] == "unknown"
    assert ("value-not-found", "FABRIKAM_E_CABINET_GONE") in kinds(spec)


def test_code_pages_named_in_codes_yaml(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "codes.yaml").write_text(
        f"codes: 1\nsymbols: {{}}\nx-code-pages:\n  fabrikam: {CODE_PAGE}\n"
        "  gone: missing-page.md\n",
        encoding="utf-8",
    )
    result = extract([SHAPES / "win32_fabrikam_ticket.md"], specs, metadata=False)
    assert codes(result.specs[0])["FABRIKAM_E_CABINET_GONE"]["value"] == 0xA0041001
    assert any("missing-page.md" in p for p in result.resolver.pages.problems)


def test_codes_option_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(
        [
            str(SHAPES / "win32_fabrikam_ticket.md"),
            "--out",
            str(out),
            "--no-specs",
            "--codes",
            str(CODE_PAGE),
        ]
    ) in (0, 1)
    data = load_file(out / "FabrikamGetTicket.yaml").data
    gone = next(c for c in data["returns"]["codes"] if c["symbol"] == "FABRIKAM_E_CABINET_GONE")
    assert gone["value"] == 0xA0041001
    assert (
        main(
            [
                str(SHAPES / "win32_fabrikam_ticket.md"),
                "--out",
                str(out),
                "--codes",
                str(tmp_path / "nope.md"),
            ]
        )
        == 2
    )


# --------------------------------------------------------------------------- rendered text


@needs_metadata
def test_rendered_english_prose_bullets_decimal_table_and_remarks():
    spec = spec_of("rendered_en_fabrikam_sort.txt")
    found = codes(spec)
    assert [(s, c["value"], c["x-from"]) for s, c in found.items()] == [
        ("ERROR_SUCCESS", 0, "prose"),
        ("FABRIKAM_S_PARTIAL", 0x41005, "prose"),
        ("ERROR_NOT_ENOUGH_MEMORY", 8, "list"),
        ("ERROR_BUSY", 0xAA, "list"),
        ("ERROR_ACCESS_DENIED", 5, "table"),
        ("WAIT_TIMEOUT", 258, "table"),
        ("ERROR_ALREADY_EXISTS", 0xB7, "remarks"),
        ("ERROR_INVALID_HANDLE", 6, "parameters"),
    ]
    assert found["FABRIKAM_S_PARTIAL"]["x-value"] == "printed"
    for trap in (
        "FABRIKAM_SORT_ASCENDING",
        "FABRIKAM_SORT_DESCENDING",
        "ERROR_CANCELLED",
        "FABRIKAM_E_UNSORTED",
    ):
        assert trap not in found


@needs_metadata
def test_rendered_localized_page_reads_its_prose_lists_and_remarks():
    result = extract([SHAPES / "rendered_ru_fabrikam_sort.txt"], FIXTURE_SPECS)
    (spec,) = result.specs
    found = codes(spec)
    assert spec.pages[0].lang == "ru"
    for symbol, where in (
        ("ERROR_SUCCESS", "prose"),
        ("FABRIKAM_S_PARTIAL", "prose"),
        ("ERROR_NOT_ENOUGH_MEMORY", "list"),
        ("ERROR_BUSY", "list"),
        ("ERROR_ALREADY_EXISTS", "remarks"),
    ):
        assert found[symbol]["x-from"] == where, symbol
    assert "ERROR_CANCELLED" not in found, "the function does not return it (не возвращает)"


@needs_metadata
def test_english_and_localized_pages_merge_the_stripped_rows():
    spec = spec_of("rendered_en_fabrikam_sort.txt", "rendered_ru_fabrikam_sort.txt")
    assert None not in codes(spec)
    assert codes(spec)["WAIT_TIMEOUT"]["value"] == 258


# --------------------------------------------------------------------------- hostile pages


_ADVERSARIAL = [
    "If the function succeeds, it returns S_OK" + " " * 2000 + "(0x0" + " " * 500 + ").\n\n",
    "<ul>" * 300 + "<li>E_FAIL if" + "\t \n" * 300 + "it fails</li>" + "</ul>" * 300 + "\n\n",
    "<table><tr><td><dl><dt><b>"
    + "<b>" * 200
    + "ERROR_X_Y"
    + "</b>" * 201
    + "</dt><dt>"
    + " " * 1000
    + "87</dt></dl></td><td>"
    + "  \n" * 200
    + "Text.</td></tr></table>\n\n",
    "| " + " " * 3000 + "| " + "-" * 3000 + " |\n\n",
    "S_OK " * 300 + "returns " * 300 + "\n\n",
    "> " * 100 + "E_X_Y returns such as " + "E_A_B, " * 200 + "\n\n",
    "*" * 500 + "_" * 500 + "\\_" * 300 + "\n\n",
    "the function does not " + " " * 2000 + "return E_Q_R.\n\n",
]


def adversarial_page(size: int) -> str:
    """An sdk-api page whose Return value and Remarks are `size` characters of long blank
    runs, deep nesting, padded table cells, emphasis runs and symbols without end."""
    body, length, i = [], 0, 0
    while length < size:
        chunk = _ADVERSARIAL[i % len(_ADVERSARIAL)]
        body.append(chunk)
        length += len(chunk)
        i += 1
    text = "".join(body)
    half = len(text) // 2
    return (
        "---\ntitle: X\n---\n\n# IFabrikamPump::Start\n\n## -description\n\nStarts.\n\n"
        f"## -returns\n\n{text[:half]}\n\n## -remarks\n\n{text[half:]}"
    )[:size]


def _best_time(text: str, runs: int = 3) -> float:
    """The least CPU time of a few parses: CPU time, so that other work on a shared machine
    does not count, and the least, so that a pause does not either."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        parse_page(text, "adversarial.md")
        best = min(best, time.process_time() - start)
    return best


def test_a_megabyte_of_adversarial_whitespace_and_nesting_reads_in_linear_time():
    """Four times the page (256 KB -> 1 MB) must take about four times the time, not the
    sixteen a quadratic reading would: the bound sits between the two."""
    small = adversarial_page(256 * 1024)
    big = adversarial_page(1024 * 1024 - 64)
    page = parse_page(big, "adversarial.md")
    assert page.method == "IFabrikamPump::Start"
    ratio = _best_time(big) / _best_time(small)
    assert ratio < 8, f"4x the page took {ratio:.1f}x the time"


# --------------------------------------------------------------------------- the corpus


def _accuracy_module():
    path = REPO / "benchmarks" / "extract_accuracy.py"
    spec = importlib.util.spec_from_file_location("extract_accuracy", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@needs_corpus
@needs_metadata
def test_the_development_corpus_is_read_at_98_percent_with_no_trap_taken():
    scored = _accuracy_module().score_corpus(CORPUS)
    rows = scored["rows"]
    assert rows["right"] / rows["total"] >= 0.98, scored["misses"]
    assert scored["traps_taken"] == []
