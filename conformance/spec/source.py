"""Loading YAML safely while remembering where every value came from.

Specs and domains are written by people, so every problem the harness reports must name
`file:line: path.in.spec`. PyYAML's composed node tree carries the marks; we construct the
plain data with the safe constructor. The map from each path to its line takes more memory
than the data and is needed only to report a problem, so a `Document` builds it when first
asked, from its file read again (or from the text it keeps, when it came from no file).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import SpecError

MAX_BYTES = 2 * 1024 * 1024
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml keeps the marks, fast
MAX_NODES = 200_000
_STR = "tag:yaml.org,2002:str"
_SHORT = 64  # plain scalars up to this length have their resolved tag cached
_TAGS: dict[tuple[str, Any], str] = {}
intern = sys.intern  # keys, symbols and names repeat in every spec: one string each

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, located as precisely as we can."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class SourceError(SpecError):
    """A file that cannot be used at all; carries its problems (each names file:line)."""

    prefix = ""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class Document:
    """Plain data from one YAML file, with a line for every path in it.

    `text_keys` is True when every mapping key is text (what JSON Schema can check as is),
    None when unknown. The line map is built on demand: see the module docstring."""

    __slots__ = ("_digest", "_lines", "_text", "data", "file", "text_keys")

    def __init__(
        self,
        file: str,
        data: Any,
        lines: dict[Path_, int] | None = None,
        *,
        digest: bytes = b"",
        text: str | None = None,
        text_keys: bool | None = None,
    ):
        self.file = file
        self.data = data
        self.text_keys = text_keys
        self._lines = lines
        self._digest = digest
        self._text = text

    def __repr__(self) -> str:
        return f"Document({self.file!r})"

    @property
    def lines(self) -> dict[Path_, int]:
        """Path -> line; parsed again when first needed, a few recent maps kept."""
        if self._lines is not None:
            return self._lines
        if not self._digest:
            return {}
        return _line_map(self.file, self._digest, self._text)

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its closest ancestor that has one."""
        lines = self.lines
        while path:
            if path in lines:
                return lines[path]
            path = path[:-1]
        return lines.get((), 1)

    def problem(self, path: Path_, message: str) -> Problem:
        return Problem(self.file, self.line(path), dotted(path), message)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: str | Path) -> Document:
    """Read and parse one YAML file; raise SourceError naming the file and line."""
    name = str(path)
    try:
        with Path(path).open("rb") as handle:  # never more than the limit read into memory
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SourceError([Problem(name, 1, "", f"cannot read: {exc.strerror or exc}")]) from None
    return _load(raw, name, keep_text=False)


def load_text(raw: bytes | str, name: str) -> Document:
    """Parse YAML text (bytes must be UTF-8) into a Document."""
    return _load(raw, name, keep_text=True)


def _load(raw: bytes | str, name: str, keep_text: bool) -> Document:
    """A Document from file or text. For its lines, a file is read again by name (the digest
    tells its versions apart in the cache of line maps); text from no file is kept instead."""
    if len(raw) > MAX_BYTES:
        raise SourceError([Problem(name, 1, "", f"file is larger than {MAX_BYTES} bytes")])
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", errors="surrogatepass")
    text = _decode(raw, name)
    node = _compose(text, name)
    text_keys: list[Any] = [True]
    lines: dict[Path_, int] | None = None
    try:
        value = _data(node, [MAX_NODES], text_keys)
    except Exception:  # something to report: build again, tracking paths, to locate it
        lines = {}
        value = _located(node, name, lines)
        text_keys = [None]
    return Document(
        name,
        value,
        lines,
        digest=_digest(data),
        text=text if keep_text else None,
        text_keys=text_keys[0],
    )


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def _decode(raw: bytes | str, name: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError([Problem(name, line, "", "not valid UTF-8 text")]) from None


# (the base is chosen when imported: libyaml's safe loader when present)
class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, resolving the tag of each distinct short plain scalar once: keys and
    symbols repeat across thousands of specs, and the resolver's regexes are its largest cost."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode or len(value) > _SHORT:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = _TAGS.get(key)
        if tag is None:
            if len(_TAGS) >= 50_000:
                _TAGS.clear()
            tag = _TAGS[key] = super().resolve(kind, value, implicit)
        return tag


def _compose(text: str, name: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:
        raise SourceError([Problem(name, 1, "", "invalid YAML: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SourceError([Problem(name, line, "", f"invalid YAML: {reason}")]) from None
    if node is None:
        raise SourceError([Problem(name, 1, "", "the file is empty")])
    return node


def _data(node: yaml.Node, budget: list[int], text_keys: list[Any]) -> Any:
    """Plain data, quickly: no paths, no lines. Anything to report raises, and the caller
    builds again with `_located`, which says where."""
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError
    if isinstance(node, yaml.ScalarNode):
        if node.tag != _STR:
            return _value(node)
        text = node.value
        return intern(text) if len(text) <= _SHORT else text
    if isinstance(node, yaml.SequenceNode):
        return [_data(item, budget, text_keys) for item in node.value]
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise TypeError
        key = intern(key_node.value) if key_node.tag == _STR else _value(key_node)
        if key in out:
            raise KeyError
        if type(key) is not str:
            text_keys[0] = False
        out[key] = _data(value_node, budget, text_keys)
    return out


def _located(node: yaml.Node, name: str, lines: dict[Path_, int]) -> Any:
    """Plain data with the line of every path recorded in `lines`; SourceError at the place
    of the first value that cannot be used."""
    try:
        return _construct(node, (), name, lines, [0])
    except RecursionError:
        raise SourceError([Problem(name, 1, "", "nested too deeply")]) from None


@lru_cache(maxsize=32)
def _line_map(name: str, digest: bytes, text: str | None) -> dict[Path_, int]:
    """The lines of a document's paths, from its text, or from its file read again. A file
    changed since it was loaded gives the lines of what it holds now: the best guess left."""
    if text is None:
        try:
            raw = Path(name).read_bytes()
        except OSError:
            return {}
        text = raw.decode("utf-8", errors="replace")
    lines: dict[Path_, int] = {}
    with contextlib.suppress(SourceError):  # the lines found before a problem are still right
        _located(_compose(text, name), name, lines)
    return lines


def _construct(
    node: yaml.Node, path: Path_, name: str, lines: dict[Path_, int], counter: list[int]
) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise SourceError(
            [
                Problem(
                    name,
                    node.start_mark.line + 1,
                    dotted(path),
                    f"more than {MAX_NODES} values (an alias bomb?)",
                )
            ]
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, name)
            if key in out:
                raise SourceError(
                    [
                        Problem(
                            name,
                            key_node.start_mark.line + 1,
                            dotted(path),
                            f"duplicate key {key!r}",
                        )
                    ]
                )
            sub = (*path, key if isinstance(key, str | int) else str(key))
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, sub, name, lines, counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(item, (*path, i), name, lines, counter) for i, item in enumerate(node.value)
        ]
    return _scalar(node, path, name)


_SAFE = yaml.SafeLoader("")


def _value(node: yaml.Node) -> Any:
    """A non-text scalar through the safe constructor, which must not keep the node: its
    memo of constructed nodes would hold every file's tree for the life of the process."""
    try:
        return _SAFE.construct_object(node, deep=True)
    finally:
        _SAFE.constructed_objects.clear()
        _SAFE.recursive_objects.clear()


def _scalar(node: yaml.Node, path: Path_, name: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise SourceError(
            [Problem(name, node.start_mark.line + 1, dotted(path), "a key must be a plain value")]
        )
    try:
        return _value(node)
    except yaml.YAMLError as exc:
        raise SourceError(
            [Problem(name, node.start_mark.line + 1, dotted(path), f"invalid value: {exc}")]
        ) from None
