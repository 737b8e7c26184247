"""Loading YAML safely while remembering where every value came from.

Specs and domains are written by people, so every problem the harness reports must name
`file:line: path.in.spec`. PyYAML's composed node tree carries the marks; we construct the
plain data with the safe constructor and keep a map from each value's path to its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 2 * 1024 * 1024
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml keeps the marks, and is fast
MAX_NODES = 200_000

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


class SourceError(Exception):
    """A file that cannot be used at all; carries its problems."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Document:
    """Plain data from one YAML file, with a line for every path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its closest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

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
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SourceError([Problem(name, 1, "", f"cannot read: {exc.strerror or exc}")]) from None
    return load_text(raw, name)


def load_text(raw: bytes | str, name: str) -> Document:
    """Parse YAML text (bytes must be UTF-8) into a Document."""
    if len(raw) > MAX_BYTES:
        raise SourceError([Problem(name, 1, "", f"file is larger than {MAX_BYTES} bytes")])
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise SourceError([Problem(name, line, "", "not valid UTF-8 text")]) from None
    try:
        node = yaml.compose(raw, Loader=_LOADER)
    except RecursionError:
        raise SourceError([Problem(name, 1, "", "invalid YAML: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SourceError([Problem(name, line, "", f"invalid YAML: {reason}")]) from None
    if node is None:
        raise SourceError([Problem(name, 1, "", "the file is empty")])
    doc = Document(name, None)
    try:
        doc.data = _construct(node, (), doc, [0])
    except RecursionError:
        raise SourceError([Problem(name, 1, "", "nested too deeply")]) from None
    return doc


def _construct(node: yaml.Node, path: Path_, doc: Document, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise SourceError([Problem(doc.file, node.start_mark.line + 1, dotted(path),
                                   f"more than {MAX_NODES} values (an alias bomb?)")])
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path, doc)
            if key in out:
                raise SourceError([Problem(doc.file, key_node.start_mark.line + 1, dotted(path),
                                           f"duplicate key {key!r}")])
            sub = (*path, key if isinstance(key, str | int) else str(key))
            doc.lines[sub] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, sub, doc, counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), doc, counter) for i, item in enumerate(node.value)]
    return _scalar(node, path, doc)


_SAFE = yaml.SafeLoader("")


def _scalar(node: yaml.Node, path: Path_, doc: Document) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise SourceError([Problem(doc.file, node.start_mark.line + 1, dotted(path),
                                   "a key must be a plain value")])
    try:
        return _SAFE.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise SourceError([Problem(doc.file, node.start_mark.line + 1, dotted(path),
                                   f"invalid value: {exc}")]) from None
