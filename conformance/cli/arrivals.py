"""What a provider receives: each family's `setup()` steps and `call()` arguments, described
from the domain files and the specs, so that the provider guide's tables cannot drift from
what the engine sends (`python -m conformance.cli.arrivals` prints them; tests/cli/test_arrivals.py
holds the guide to them and the engine to the guide)."""

from __future__ import annotations

import sys

from conformance.spec.catalog import Catalog, load_catalog
from conformance.spec.domain import ANY, Domain, FieldType
from conformance.spec.model import Param, Spec

BEGIN = "<!-- arrivals: begin (python -m conformance.cli.arrivals) -->"
END = "<!-- arrivals: end -->"

ID_FORMS = {  # how an id of each `id:` type arrives, returned or never returned
    "guid": ("a GUID string your `setup()` returned", "a GUID string it never returned"),
    "string": (
        "a string your `setup()` returned",
        "a string it never returned (`unknown-<step>-<n>`)",
    ),
    "uint32": (
        "an int: the number your `setup()` returned",
        "an int it never returned (2147418113 and up)",
    ),
}


def field_text(domain: Domain, ftype: FieldType) -> str:
    """How one field of a step arrives."""
    if ftype.kind == "ref":
        if ftype.ref == ANY:
            return "the id of any object made in this test case"
        coll = domain.collections[ftype.ref or ""]
        same = f" (of the same `{ftype.same}`)" if ftype.same else ""
        return f"the id returned for an earlier `{coll.step}` step{same}, or `None`"
    if ftype.kind == "list" and ftype.item is not None:
        return f"a list of {field_text(domain, ftype.item).removesuffix(', or `None`')}s"
    if ftype.kind == "string":
        most = f", at most {ftype.max_length} characters" if ftype.max_length else ""
        return f"a `str`{most}"
    if ftype.kind == "bool":
        return "`True` or `False`"
    if ftype.kind in ("uint16", "uint32"):
        return f"an `int` ({ftype.kind})"
    if ftype.kind == "enum":
        shown = ", ".join(f"`{c}`" if not isinstance(c, dict) else "a dict" for c in ftype.choices)
        return f"one of {shown}" if len(shown) < 80 else f"one of {len(ftype.choices)} values"
    if ftype.kind == "struct":
        return f"a dict (`{ftype.struct}`: {', '.join(domain.types[ftype.struct or ''])})"
    return ftype.kind


def param_text(spec: Spec, domain: Domain, param: Param) -> str:
    """How one argument of a call arrives."""
    if param.is_out:
        return "absent (a valid pointer)" + (", or `None` (NULL)" if param.nullable else "")
    if param.refers:
        coll = domain.by_step(param.refers)
        known, unknown = ID_FORMS.get(coll.id if coll else "string", ID_FORMS["string"])
        text = f"{known} for a `{param.refers}`, or {unknown}"
    elif param.values:
        step, _, fname = param.values.partition(".")
        coll = domain.by_step(step)
        ftype = coll.fields.get(fname) if coll else None
        text = field_text(domain, ftype) if ftype else "a value"
    else:
        text = f"a value of its C type `{param.type}`"
    for name in param.special:
        text += f"; `{name}` arrives as `{spec.constants[name]}`"
    if param.nullable:
        text += "; or `None` (NULL)"
    return text


def render(catalog: Catalog) -> str:
    """The guide's tables: per family, each step's fields, each fault's, each call's arguments."""
    out = [BEGIN, ""]
    for family, domain in sorted(catalog.domains.items()):
        out += [
            f"#### `{family}`: what `setup()` receives",
            "",
            "| step | id returned | fields |",
            "| --- | --- | --- |",
        ]
        for coll in domain.collections.values():
            fields = "; ".join(f"`{n}`: {field_text(domain, t)}" for n, t in coll.fields.items())
            out.append(f"| `{coll.step}` | {coll.id} | {fields or 'none'} |")
        out += ["", "| fault | fields |", "| --- | --- |"]
        for kind, types in domain.faults.items():
            text = "; ".join(f"`{n}`: {field_text(domain, t)}" for n, t in types.items())
            out.append(f"| `{kind}` | {text or 'none'} |")
        out += [
            "",
            f"#### `{family}`: what `call()` receives",
            "",
            "| method | argument | arrives as |",
            "| --- | --- | --- |",
        ]
        for spec in sorted(
            (s for s in catalog.specs.values() if s.family == family), key=lambda s: s.id
        ):
            rows = []
            if spec.this_object:
                this = domain.by_step(spec.this_object)
                known, _ = ID_FORMS.get(this.id if this else "string", ID_FORMS["string"])
                rows.append(("this", f"{known} for the `{spec.this_object}` called"))
            rows += [(p.name, param_text(spec, domain, p)) for p in spec.params]
            for i, (name, text) in enumerate(rows):
                out.append(f"| {'`' + spec.id + '`' if i == 0 else ''} | `{name}` | {text} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(render(load_catalog()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["BEGIN", "END", "ID_FORMS", "render"]
