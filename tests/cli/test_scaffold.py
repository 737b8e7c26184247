"""`conformance init-provider`: the skeleton installs and runs as it is, and its generated test
can fail: skipped while nothing is implemented, green on a conforming provider, red as soon as
one method deviates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main

# A filled-in provider: the bundled reference, for the virtual-pc family only (what a vendor
# would have written), and the same with Logoff answering a wrong code.
FILLED = """\
from conformance_providers.reference import ReferenceProvider
from conformance.provider import Outcome

FAMILY = "IVMGuestOS::"


class Provider(ReferenceProvider):
    name = "contoso"

    def capabilities(self):
        caps = super().capabilities()
        return {**caps, "methods": [m for m in caps["methods"] if m.startswith(FAMILY)]}
"""
BROKEN = (
    FILLED
    + """
    def call(self, method_id, args):
        outcome = super().call(method_id, args)
        if method_id == "IVMGuestOS::Logoff" and outcome.hresult == 0:
            return Outcome(0x8000FFFF, {"outLogoffTask": None})
        return outcome
"""
)


def generated_test(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env=env,
    )


@pytest.fixture
def skeleton(tmp_path: Path) -> Path:
    assert main(["init-provider", "contoso", "--family", "virtual-pc", "--out", str(tmp_path)]) == 0
    return tmp_path / "contoso"


@pytest.mark.slow
def test_the_generated_test_is_skipped_then_green_then_red(skeleton: Path) -> None:
    module = skeleton / "contoso_provider" / "__init__.py"
    done = generated_test(skeleton)
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout + done.stderr
    module.write_text(FILLED, encoding="utf-8")
    done = generated_test(skeleton)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    module.write_text(BROKEN, encoding="utf-8")
    done = generated_test(skeleton)
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout + done.stderr
