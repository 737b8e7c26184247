"""ctypes types built from the generated layouts, identical on Linux and on Windows x64.

Fixed-width ctypes stand for Windows' types (LONG is 32-bit there, 64-bit on Linux; WCHAR is
16-bit there, `c_wchar` is 32-bit on Linux), so the sizes and offsets tested on Linux are the
ones Windows x64 uses. Text goes in and out through the helpers here, which encode UTF-16-LE or
the ANSI code page explicitly and refuse what a fixed field or a C string cannot hold.
"""

from __future__ import annotations

import ctypes
import re
from functools import cache
from typing import Any

from . import _layouts


class GUID(ctypes.Structure):
    """guiddef.h's GUID; the metadata treats Guid as a primitive, so its layout is stated here."""

    _fields_ = (
        ("Data1", ctypes.c_uint32),
        ("Data2", ctypes.c_uint16),
        ("Data3", ctypes.c_uint16),
        ("Data4", ctypes.c_uint8 * 8),
    )


SCALARS: dict[str, Any] = {
    "BYTE": ctypes.c_uint8,
    "CHAR": ctypes.c_char,
    "WCHAR": ctypes.c_uint16,
    "SHORT": ctypes.c_int16,
    "USHORT": ctypes.c_uint16,
    "LONG": ctypes.c_int32,
    "ULONG": ctypes.c_uint32,
    "LONGLONG": ctypes.c_int64,
    "ULONGLONG": ctypes.c_uint64,
    "FLOAT": ctypes.c_float,
    "DOUBLE": ctypes.c_double,
    "PWSTR": ctypes.c_void_p,
    "PSTR": ctypes.c_void_p,
    "PVOID": ctypes.c_void_p,
    "LONG_PTR": ctypes.c_ssize_t,
    "ULONG_PTR": ctypes.c_size_t,
    "GUID": GUID,
}
_ARRAY = re.compile(r"^(.+)\[(\d*)\]$")
_BUILDING: set[str] = set()  # structs being laid out: a pointer back to one is a plain pointer


class LayoutError(Exception):
    """A type text the builder does not know; the generator and builder disagree."""


def ctype(text: str) -> Any:
    """One type of the layouts' vocabulary -> its ctypes type (None for VOID)."""
    if text.endswith("*") and _BUILDING.intersection(_outer_names(text[:-1])):
        # VARIANT holds VARIANT*: ctypes cannot point at a structure it is still building.
        # Never cached: VARIANT* elsewhere (DISPPARAMS.rgvarg) is a real pointer, whichever
        # structure is built first.
        return ctypes.c_void_p
    return _ctype(text)


@cache
def _ctype(text: str) -> Any:
    if text == "VOID":
        return None
    if text.endswith("*"):
        target = text[:-1]
        if target == "VOID":
            return ctypes.c_void_p
        if target in SCALARS or target in _layouts.STRUCTS or target.endswith("*"):
            return ctypes.POINTER(ctype(target))
        return ctypes.c_void_p  # a pointer to something the backend never reads
    array = _ARRAY.match(text)
    if array:
        element, count = array.groups()
        return ctype(element) * int(count or 0)
    if text in SCALARS:
        return SCALARS[text]
    if text in _layouts.STRUCTS:
        return struct(text)
    raise LayoutError(f"unknown type {text!r} in the layouts")


@cache
def struct(name: str) -> type[ctypes.Structure] | type[ctypes.Union]:
    """The ctypes Structure (or Union) for a layout, nested and anonymous members included."""
    try:
        layout = _layouts.STRUCTS[name]
    except KeyError:
        raise LayoutError(
            f"{name!r} is not in _layouts.STRUCTS: add it to gen_layouts.py"
        ) from None
    base = ctypes.Union if layout["kind"] == "union" else ctypes.Structure
    namespace: dict[str, Any] = {}
    if layout["pack"]:
        namespace["_pack_"] = layout["pack"]
    if layout["anonymous"]:
        namespace["_anonymous_"] = layout["anonymous"]
    _BUILDING.add(name)
    try:
        namespace["_fields_"] = tuple((field, ctype(kind)) for field, kind in layout["fields"])
    finally:
        _BUILDING.discard(name)
    return type(name.replace(".", "_"), (base,), namespace)


def _outer_names(target: str) -> set[str]:
    """A type text and each struct that encloses it (VARIANT.x.y -> VARIANT.x, VARIANT)."""
    parts = target.rstrip("*").split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def prototype(params: tuple[tuple[str, str], ...], returns: str) -> tuple[Any, list[Any]]:
    """(restype, argtypes) for a signature of the layouts."""
    return ctype(returns), [ctype(kind) for _, kind in params]


def function(name: str) -> tuple[str, Any, list[Any]]:
    """(dll, restype, argtypes) of a DLL function as the metadata declares it."""
    decl = _layouts.FUNCTIONS[name]
    restype, argtypes = prototype(decl["params"], decl["returns"])
    return decl["dll"], restype, argtypes


def method(interface: str, name: str) -> tuple[int, Any, list[Any]]:
    """(vtable slot, restype, argtypes without `this`) of a COM method, from the metadata."""
    try:
        decl = _layouts.INTERFACES[interface]["methods"][name]
    except KeyError:
        raise LayoutError(f"{interface}::{name} is not in _layouts.INTERFACES") from None
    restype, argtypes = prototype(decl["params"], decl["returns"])
    return decl["slot"], restype, argtypes


def iid(interface: str) -> str:
    return _layouts.INTERFACES[interface]["iid"]


# --------------------------------------------------------------------------- text


class TextError(ValueError):
    """Text a C string or a fixed-size field cannot carry unchanged."""


def encode(text: str, wide: bool, code_page: str) -> bytes:
    """Text as the API receives it: UTF-16-LE, or the ANSI code page with '?' for the rest.

    '?' is what WideCharToMultiByte writes for a character the code page lacks (no best fit),
    which is what an ANSI caller's string already holds.
    """
    if "\0" in text:
        raise TextError(f"{text!r} holds a NUL character, which ends a C string")
    return text.encode("utf-16-le") if wide else text.encode(code_page, errors="replace")


def decode(data: bytes, wide: bool, code_page: str) -> str:
    return data.decode("utf-16-le" if wide else code_page, errors="replace")


def _span(obj: Any, field: str) -> tuple[int, int]:
    """Address and size of a member; reading a CHAR array member gives bytes, not the array."""
    member = getattr(type(obj), field)
    return ctypes.addressof(obj) + member.offset, member.size


def put_text(obj: Any, field: str, text: str, wide: bool, code_page: str, what: str) -> None:
    """Fill a fixed CHAR/WCHAR member, NUL-terminated; too long is an error, never a cut."""
    address, size = _span(obj, field)
    data = encode(text, wide, code_page)
    unit = 2 if wide else 1
    capacity = size // unit - 1
    if len(data) // unit > capacity:
        raise TextError(
            f"{what} is {len(data) // unit} characters; the field holds {capacity} and a NUL"
        )
    ctypes.memset(address, 0, size)
    ctypes.memmove(address, data, len(data))


def get_text(obj: Any, field: str, wide: bool, code_page: str) -> str:
    """A fixed CHAR/WCHAR member up to its first NUL."""
    address, size = _span(obj, field)
    return decode(_until_nul(ctypes.string_at(address, size), 2 if wide else 1), wide, code_page)


def c_string(text: str, wide: bool, code_page: str) -> ctypes.Array:
    """A NUL-terminated buffer to pass as PWSTR or PSTR (the caller keeps it alive)."""
    data = encode(text, wide, code_page) + (b"\0\0" if wide else b"\0")
    return ctypes.create_string_buffer(data, len(data))


def read_wide(address: int | None) -> str | None:
    """A NUL-terminated UTF-16 string at an address (a PWSTR field), or None for NULL."""
    if not address:
        return None
    units = ctypes.cast(address, ctypes.POINTER(ctypes.c_uint16))
    out = []
    i = 0
    while units[i]:
        out.append(units[i])
        i += 1
    return b"".join(u.to_bytes(2, "little") for u in out).decode("utf-16-le", errors="replace")


def multi_sz(data: bytes, wide: bool = True, code_page: str = "ascii") -> list[str]:
    """A REG_MULTI_SZ-style list (strings each NUL-terminated, an empty one ending the list)."""
    text = decode(data, wide, code_page)
    return [item for item in text.split("\0\0")[0].split("\0") if item]


def _until_nul(raw: bytes, unit: int) -> bytes:
    for i in range(0, len(raw) - unit + 1, unit):
        if raw[i : i + unit] == b"\0" * unit:
            return raw[:i]
    return raw
