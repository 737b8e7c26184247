"""The page formats, declared once: each format's reader, and reading a page file of any of them.

`page.detect_format` names the format from the text; `READERS` maps it to the module that cuts
that format into a `Page`. A new format is one more reader module and one more entry here.
"""

from __future__ import annotations

from pathlib import Path

from conformance.extract import rendered, sdkapi, win32md
from conformance.extract.page import (
    MAX_BYTES,
    RENDERED,
    SDK_API,
    WIN32_MD,
    Page,
    PageError,
    decode,
    detect_format,
)

READERS = {SDK_API: sdkapi.parse, WIN32_MD: win32md.parse, RENDERED: rendered.parse}


def read_page(path: str | Path) -> Page:
    """Read one page file of any supported format; raise PageError naming what is wrong."""
    path = Path(path)
    doc = path.name
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PageError(
                doc,
                f"page is {size} bytes, more than the {MAX_BYTES} a "
                "reference page can plausibly be",
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise PageError(doc, f"cannot read: {exc.strerror or exc}") from None
    page = parse_page(raw, doc)
    page.path = str(path)
    return page


def parse_page(raw: bytes | str, doc: str) -> Page:
    """Parse page text (bytes must be UTF-8) whose file name is `doc`."""
    text = decode(raw, doc)
    fmt = detect_format(text)
    reader = READERS[fmt]
    try:
        page = reader(text, doc)
    except PageError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise PageError(doc, f"unreadable {fmt} page ({type(exc).__name__}: {exc})") from None
    return page
