"""Writing drafts, and re-extracting into a spec a person has already worked on.

ruamel.yaml keeps the existing file's comments, key order and flow style; we change its data
in place. The policy: hand-written parts (`rules`, `scenarios`, comments, prose a person
shortened, the `object`, `slot`, `refers` and `values` pages never state) are kept; facts the
page states (requirements, header, directions, types, `also`, delivery) are updated; a symbol or
value that differs from a hand-checked one is never overwritten, only reported. Every
difference is returned as one line for the person to read.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarint import HexCapsInt
from ruamel.yaml.scalarstring import FoldedScalarString

from conformance.extract.merge import ExtractedSpec
from conformance.spec.codes import hex32

_KEEP_PROSE = ("summary", "deprecated")
_FACTS = ("family", "kind", "header", "dll", "charset", "twin")
_PARAM_FACTS = ("direction", "type", "optional", "nullable", "async", "retval")


def _yaml() -> YAML:
    """Never re-wrap an existing file; fresh drafts fold their long prose themselves."""
    yaml = YAML()
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def file_name(spec_id: str) -> str:
    return spec_id.replace("::", ".") + ".yaml"


def target_path(
    spec: ExtractedSpec, out_dir: Path, existing_root: Path | None, existing_file: Path | None
) -> Path:
    """Where the spec goes: the existing spec's place relative to its root, else out/Name."""
    if existing_file is not None and existing_root is not None:
        try:
            return out_dir / existing_file.relative_to(existing_root)
        except ValueError:
            pass
    return out_dir / file_name(spec.id)


def write(spec: ExtractedSpec, target: Path, base_file: Path | None) -> list[str]:
    """Write one spec; merge into `base_file` (or `target` if it exists). Returns the changes."""
    source = target if target.is_file() else base_file
    yaml = _yaml()
    if source is not None and source.is_file():
        doc = yaml.load(source.read_text(encoding="utf-8"))
        changes = update(doc, spec.data) if isinstance(doc, CommentedMap) else None
        if changes is None:
            doc, changes = fresh(spec.data), [f"{source} was not a spec mapping: rewritten"]
    else:
        doc, changes = fresh(spec.data), ["new spec"]
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    target.write_text(buffer.getvalue(), encoding="utf-8")
    return changes


# --------------------------------------------------------------------------- a new file


def fresh(data: dict[str, Any]) -> CommentedMap:
    """The draft as ruamel data: hex values, one-line sources, as the bundled specs are."""
    doc = CommentedMap()
    for key, value in data.items():
        doc[key] = _node(key, value)
    return doc


def _node(key: str, value: Any) -> Any:
    if key == "returns":
        out = CommentedMap((k, _node(k, v)) for k, v in value.items())
        return out
    if key == "codes":
        return CommentedSeq(_code(c) for c in value)
    if key == "findings":
        return CommentedSeq(CommentedMap((k, folded(v)) for k, v in f.items()) for f in value)
    if key in ("sources", "also"):
        seq = CommentedSeq(_flow(v) if isinstance(v, dict) else v for v in value)
        if key == "also":
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        return CommentedMap((k, _node(k, v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_node(key, v) if isinstance(v, dict) else v for v in value)
    if key in ("value",) and isinstance(value, int):
        return HexCapsInt(value, width=8)
    return folded(value) if isinstance(value, str) else value


def folded(text: str, width: int = 92) -> Any:
    """Long prose as a `>-` block folded at spaces, as the bundled specs write it."""
    if len(text) <= width or "\n" in text or "  " in text or text != text.strip():
        return text
    out = FoldedScalarString(text)
    positions, start = [], 0
    while len(text) - start > width:
        cut = text.rfind(" ", start, start + width)
        if cut <= start:
            break
        positions.append(cut)
        start = cut + 1
    out.fold_pos = positions
    return out


def _flow(item: dict[str, Any]) -> CommentedMap:
    out = CommentedMap(item)
    out.fa.set_flow_style()
    return out


def _code(code: dict[str, Any]) -> CommentedMap:
    out = CommentedMap()
    for key, value in code.items():
        if key == "value" and isinstance(value, int):
            out[key] = HexCapsInt(value, width=8)
        else:
            out[key] = folded(value) if isinstance(value, str) else value
    return out


# --------------------------------------------------------------------------- an existing file


def update(doc: CommentedMap, new: dict[str, Any]) -> list[str]:
    """Apply the page's facts to an existing spec in place; return what changed or differs."""
    changes: list[str] = []
    for key in _FACTS:
        _fact(doc, key, new.get(key), changes, key)
    for key in _KEEP_PROSE:
        _prose(doc, key, new.get(key), changes, key)
    if "interface" in new:
        _interface(doc, new["interface"], changes)
    _mapping(doc, "requirements", new.get("requirements") or {}, changes)
    _mapping(doc, "constants", new.get("constants") or {}, changes, only_add=True)
    _params(doc, new.get("params") or [], changes)
    _returns(doc, new["returns"], {s["doc"] for s in new.get("sources") or []}, changes)
    _sources(doc, new.get("sources") or [], changes)
    _findings(doc, new.get("findings") or [], changes)
    for key in ("rules", "scenarios"):
        doc.setdefault(key, CommentedSeq())
    return changes or ["no change"]


def _fact(doc: CommentedMap, key: str, value: Any, changes: list[str], where: str) -> None:
    if value is None or doc.get(key) == value:
        return
    changes.append(
        f"{where}: {doc.get(key)!r} -> {value!r}" if key in doc else f"{where}: set to {value!r}"
    )
    doc[key] = value


def _prose(doc: CommentedMap, key: str, value: Any, changes: list[str], where: str) -> None:
    if not value or doc.get(key) == value:
        return
    if doc.get(key):
        changes.append(f"{where}: the page's text differs; kept the spec's")
    else:
        doc[key] = value
        changes.append(f"{where}: set from the page")


def _interface(doc: CommentedMap, new: dict[str, Any], changes: list[str]) -> None:
    iface = doc.setdefault("interface", CommentedMap())
    for key in ("name", "iid"):
        _fact(iface, key, new.get(key), changes, f"interface.{key}")
    if "object" not in iface and new.get("object"):
        iface["object"] = new["object"]
        changes.append(f"interface.object: set to {new['object']!r}")


def _mapping(
    doc: CommentedMap, key: str, new: dict[str, Any], changes: list[str], only_add: bool = False
) -> None:
    if not new:
        return
    target = doc.setdefault(key, CommentedMap())
    for name, value in new.items():
        if name not in target:
            target[name] = HexCapsInt(value, width=8) if key == "constants" else value
            changes.append(f"{key}.{name}: added {value!r}")
        elif target[name] != value and not only_add:
            changes.append(f"{key}.{name}: {target[name]!r} -> {value!r}")
            target[name] = value


def _params(doc: CommentedMap, new: list[dict[str, Any]], changes: list[str]) -> None:
    params = doc.setdefault("params", CommentedSeq())
    by_name = {p.get("name"): p for p in params if isinstance(p, dict)}
    for item in new:
        old = by_name.get(item["name"])
        if old is None:
            params.append(CommentedMap(item))
            changes.append(f"params: added {item['name']}")
            continue
        for key in _PARAM_FACTS:
            if key in item and item[key] is not None and old.get(key) != item[key]:
                changes.append(f"params.{item['name']}.{key}: {old.get(key)!r} -> {item[key]!r}")
                old[key] = item[key]
        if item.get("doc") and old.get("doc") != item["doc"]:
            if old.get("doc"):
                changes.append(f"params.{item['name']}.doc: the page's text differs; kept")
            else:
                old["doc"] = item["doc"]
    names = [p["name"] for p in new]
    old_names = [p.get("name") for p in params if isinstance(p, dict)]
    missing = [n for n in old_names if n not in names]
    if missing:
        changes.append(f"params: {', '.join(map(str, missing))} not on the page (kept)")
    if [n for n in old_names if n in names] != [n for n in names if n in old_names]:
        changes.append(f"params: the page orders them {names}, the spec {old_names} (kept)")


def _returns(doc: CommentedMap, new: dict[str, Any], docs: set[str], changes: list[str]) -> None:
    returns = doc.setdefault("returns", CommentedMap())
    for key in ("convention", "delivery"):
        _fact(returns, key, new.get(key), changes, f"returns.{key}")
    codes = returns.setdefault("codes", CommentedSeq())
    _codes(codes, new["codes"], docs, changes)
    also = returns.setdefault("also", CommentedSeq())
    for entry in new.get("also") or []:
        if entry not in also:
            also.append(entry)
            changes.append(f"returns.also: added {entry}")


def _codes(
    codes: CommentedSeq, new: list[dict[str, Any]], docs: set[str], changes: list[str]
) -> None:
    by_symbol = {c.get("symbol"): c for c in codes if isinstance(c, dict)}
    position = 0
    for i, item in enumerate(new):
        old = by_symbol.get(item["symbol"]) if item["symbol"] else None
        if old is None:
            same_row = codes[i] if i < len(codes) and isinstance(codes[i], dict) else None
            if same_row is not None and item["symbol"] and _same_meaning(same_row, item):
                changes.append(
                    f"returns.codes[{i}]: the page names it {item['symbol']} "
                    f"({_hex(item['value'])}), the spec {same_row.get('symbol')} "
                    f"({_hex(same_row.get('value'))}): kept the spec's; resolve by hand"
                )
                position = i + 1
                continue
            codes.insert(position, _code(item))
            changes.append(
                f"returns.codes: added {item['symbol'] or 'an unnamed row'} ({_hex(item['value'])})"
            )
            position += 1
            continue
        position = list(codes).index(old) + 1
        _code_facts(old, item, changes)
    listed = {c["symbol"] for c in new}
    for old in codes:
        if isinstance(old, dict) and old.get("symbol") not in listed:
            if old.get("source") and old["source"] not in docs:
                continue  # from a page this extraction did not read
            if any(_same_meaning(old, c) for c in new):
                continue
            changes.append(f"returns.codes: {old.get('symbol')} is not on the page (kept)")


def _code_facts(old: dict[str, Any], item: dict[str, Any], changes: list[str]) -> None:
    symbol = item["symbol"]
    if item["value"] is not None and old.get("value") != item["value"]:
        if old.get("value") is None:
            old["value"] = HexCapsInt(item["value"], width=8)
            changes.append(f"returns.codes.{symbol}.value: set to {_hex(item['value'])}")
        else:
            changes.append(
                f"returns.codes.{symbol}.value: the page says {_hex(item['value'])}, "
                f"the spec {_hex(old['value'])}: kept the spec's"
            )
    if item.get("doc") and old.get("doc") != item["doc"]:
        if old.get("doc"):
            changes.append(f"returns.codes.{symbol}.doc: the page's text differs; kept")
        else:
            old["doc"] = item["doc"]
    if item.get("via") and "via" not in old:
        old["via"] = item["via"]
        changes.append(f"returns.codes.{symbol}.via: set to {item['via']}")


def _same_meaning(old: dict[str, Any], item: dict[str, Any]) -> bool:
    from conformance.extract.knowledge import meaning

    return bool(item.get("doc")) and meaning(str(old.get("doc", ""))) == meaning(item["doc"])


def _hex(value: Any) -> str:
    return hex32(value) if isinstance(value, int) else "no value"


def _sources(doc: CommentedMap, new: list[dict[str, Any]], changes: list[str]) -> None:
    sources = doc.setdefault("sources", CommentedSeq())
    known = {s.get("doc"): s for s in sources if isinstance(s, dict)}
    for item in new:
        old = known.get(item["doc"])
        if old is None:
            sources.append(_flow(item))
            changes.append(f"sources: added {item['doc']}")
            continue
        for key in ("format", "lang"):
            if key not in old:
                old[key] = item[key]


def _findings(doc: CommentedMap, new: list[dict[str, Any]], changes: list[str]) -> None:
    findings = doc.setdefault("findings", CommentedSeq())
    seen = {_finding_key(f) for f in findings if isinstance(f, dict)}
    for item in new:
        if _finding_key(item) in seen:
            continue
        findings.append(CommentedMap((k, folded(v)) for k, v in item.items()))
        seen.add(_finding_key(item))
        changes.append(
            f"findings: added {item['kind']}" + (f" ({item['code']})" if item.get("code") else "")
        )


def _finding_key(finding: dict[str, Any]) -> tuple[Any, Any]:
    """One finding per kind and code (or per kind and page, for findings about a table)."""
    return finding.get("kind"), finding.get("code") or finding.get("source")
