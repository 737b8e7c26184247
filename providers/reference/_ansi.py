"""The ANSI round trip an `...A` entry point imposes on its caller's text.

An A function sees the caller's text only as bytes in the ANSI code page: every character
the code page cannot hold has already become the default character '?', and the function
widens the bytes back to Unicode before doing the W function's work. This module performs
that narrowing and widening character by character, as WideCharToMultiByte (with no
best-fit mapping) and MultiByteToWideChar do.
"""

from __future__ import annotations

import codecs

_DEFAULT_CHAR = "?"

# Windows' 125x tables fill the bytes 0x80-0x9F that the code page leaves undefined with
# the C1 control of the same number (e.g. 0x81 <-> U+0081 in 1252); Python's codecs,
# built from the Unicode.org tables, leave them undefined, so they are added here.
_C1_FILLED = frozenset(f"cp{n}" for n in range(1250, 1259))


class AnsiCodePage:
    """One ANSI code page, checked once so every later conversion is total."""

    def __init__(self, name: str) -> None:
        try:
            self.name = codecs.lookup(name).name
        except LookupError:
            raise ValueError(f"unknown ANSI code page {name!r}") from None
        # Every Windows ANSI code page keeps ASCII as single bytes; a codec that does not
        # (UTF-16, ISO-2022, ...) could not be converted character by character.
        if "a?".encode(self.name) != b"a?":
            raise ValueError(f"{name!r} is not an ASCII-compatible ANSI code page")
        self._default = _DEFAULT_CHAR.encode(self.name)
        self._single_byte = self.name in _C1_FILLED

    def narrow(self, text: str) -> bytes:
        """Unicode -> ANSI bytes, one default character per unrepresentable code point."""
        out = bytearray()
        for char in text:
            try:
                out += char.encode(self.name)
            except UnicodeEncodeError:
                out += self._c1_byte(char) or self._default
        return bytes(out)

    def widen(self, data: bytes) -> str:
        """ANSI bytes -> Unicode, including the C1 bytes Windows defines and Python does not."""
        if not self._single_byte:
            return data.decode(self.name)
        chars = []
        for byte in data:
            try:
                chars.append(bytes((byte,)).decode(self.name))
            except UnicodeDecodeError:
                if not 0x80 <= byte <= 0x9F:
                    raise
                chars.append(chr(byte))
        return "".join(chars)

    def round_trip(self, text: str) -> str:
        """What the W implementation receives when the caller used the A entry point."""
        return self.widen(self.narrow(text))

    def _c1_byte(self, char: str) -> bytes | None:
        """The byte for a C1 control in a slot the code page leaves undefined, if any."""
        if not self._single_byte or not 0x80 <= ord(char) <= 0x9F:
            return None
        byte = bytes((ord(char),))
        try:
            byte.decode(self.name)
        except UnicodeDecodeError:
            return byte
        return None  # that byte holds another character, so the C1 control is unmappable
