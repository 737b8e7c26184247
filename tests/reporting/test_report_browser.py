"""report.html as a browser renders it: headless Chromium loads the page, dumps the DOM it
built, and takes a screenshot.

The HTML tests in test_reporting.py read the file; this one proves a real browser builds the
same matrix from it and never turns a provider's string into an element. Needs Debian's
`chromium` (apt-get install -y chromium); skipped with that reason when it is absent.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_reporting import HOSTILE, LOGOUT, Tags, broken_run

from conformance.reporting import write_html

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)
WINDOW = (1400, 2000)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed: apt-get install -y chromium chromium-driver",
    ),
]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on a local file, with nothing that reaches the network."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A broken provider's real run, its report, the DOM Chromium built and a screenshot."""
    tmp = tmp_path_factory.mktemp("browser")
    summary, out = broken_run(tmp)
    page = write_html(summary, out)
    dom = chromium(page, tmp / "profile-dom", "--dump-dom")
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    screenshot = tmp / "report.png"
    shot = chromium(page, tmp / "profile-shot", f"--screenshot={screenshot}")
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    return {"summary": summary, "dom": dom.stdout, "screenshot": screenshot}


def test_the_browser_builds_the_matrix(rendered: dict[str, Any]) -> None:
    summary, tags = rendered["summary"], Tags()
    tags.feed(rendered["dom"])
    assert any(t == "table" and a.get("id") == "matrix" for t, a in tags.tags)
    assert tags.count("tr", "method-row") == len(summary["methods"]) == 2
    failed = sum(s == "fail" for m in summary["methods"].values() for s in m["codes"].values())
    assert failed >= 1, "the broken provider fails VDS_E_ISCSI_SESSION_NOT_FOUND"
    assert tags.count("a", "code-fail") + tags.count("span", "code-fail") == failed
    cells = sum(len(m["codes"]) for m in summary["methods"].values())
    statuses = ("code-pass", "code-fail", "code-untested", "code-not-applicable")
    assert sum(tags.count(t, s) for t in ("a", "span") for s in statuses) == cells
    assert LOGOUT in rendered["dom"]


def test_a_provider_script_stays_text_in_the_dom(rendered: dict[str, Any]) -> None:
    dom, tags = rendered["dom"], Tags()
    tags.feed(dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom, "the provider's output is shown"
    assert HOSTILE not in dom
    assert not [t for t, _ in tags.tags if t == "script"], "no element came from a string"
    assert not [k for _, a in tags.tags for k in a if k.startswith("on")]


def test_the_screenshot_is_a_full_page_png(rendered: dict[str, Any]) -> None:
    data = rendered["screenshot"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == WINDOW
    assert len(data) > 50_000, "a blank page compresses far smaller than a rendered report"
