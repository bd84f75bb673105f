"""A reader of the small XSD subset tests/data/junit.xsd is written in, to validate XML without lxml or xmlschema
(neither is installed here). It knows: global elements by name (simple xs:string, or a complexType of a sequence of
element refs and choices, attributes, or simpleContent with attributes), minOccurs / maxOccurs, use="required",
and simple types restricting xs:string, xs:decimal or xs:nonNegativeInteger. Anything else in the schema raises,
so the reader never passes what it does not understand."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

XS = "{http://www.w3.org/2001/XMLSchema}"
BUILTIN = {
    "xs:string": lambda v: True,
    "xs:decimal": lambda v: re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", v) is not None,
    "xs:nonNegativeInteger": lambda v: re.fullmatch(r"\+?\d+", v) is not None,
}


class Schema:
    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.types = dict(BUILTIN)
        for st in root.findall(f"{XS}simpleType"):
            (restriction,) = list(st)
            if restriction.tag != f"{XS}restriction" or len(restriction):
                raise ValueError(f"unsupported simpleType {st.get('name')}")
            self.types[st.get("name")] = self.types[restriction.get("base")]
        self.elements = {e.get("name"): self._element(e) for e in root.findall(f"{XS}element")}

    def _element(self, e) -> dict:
        if e.get("type"):
            if e.get("type") != "xs:string" or len(e):
                raise ValueError(f"unsupported element {e.get('name')}")
            return {"attrs": {}, "content": None, "text": True}
        (ct,) = list(e)
        if ct.tag != f"{XS}complexType":
            raise ValueError(f"unsupported element {e.get('name')}")
        spec = {"attrs": {}, "content": [], "text": False}
        for part in ct:
            if part.tag == f"{XS}attribute":
                spec["attrs"][part.get("name")] = (part.get("type"), part.get("use") == "required")
            elif part.tag == f"{XS}sequence":
                spec["content"] = [self._particle(p) for p in part]
            elif part.tag == f"{XS}simpleContent":
                (ext,) = list(part)
                if ext.tag != f"{XS}extension" or ext.get("base") != "xs:string":
                    raise ValueError("unsupported simpleContent")
                spec["text"], spec["content"] = True, None
                for a in ext:
                    spec["attrs"][a.get("name")] = (a.get("type"), a.get("use") == "required")
            else:
                raise ValueError(f"unsupported {part.tag}")
        return spec

    def _particle(self, p) -> tuple[set[str], int, float]:
        lo, hi = int(p.get("minOccurs", 1)), p.get("maxOccurs", "1")
        hi = float("inf") if hi == "unbounded" else int(hi)
        if p.tag == f"{XS}element" and p.get("ref"):
            return {p.get("ref")}, lo, hi
        if p.tag == f"{XS}choice" and all(c.tag == f"{XS}element" and c.get("ref") for c in p):
            return {c.get("ref") for c in p}, lo, hi
        raise ValueError(f"unsupported particle {p.tag}")

    def errors(self, doc: ET.Element) -> list[str]:
        """Every violation, as 'path: message' lines (empty: valid)."""
        if doc.tag not in self.elements:
            return [f"/{doc.tag}: not an element of the schema"]
        out: list[str] = []
        self._check(doc, f"/{doc.tag}", out)
        return out

    def _check(self, el: ET.Element, where: str, out: list[str]) -> None:
        spec = self.elements.get(el.tag)
        if spec is None:
            out.append(f"{where}: unknown element")
            return
        for name, value in el.attrib.items():
            if name not in spec["attrs"]:
                out.append(f"{where}: attribute '{name}' is not allowed")
            elif not self.types[spec["attrs"][name][0]](value):
                out.append(f"{where}: attribute {name}={value!r} is not a {spec['attrs'][name][0]}")
        out += [
            f"{where}: required attribute '{n}' missing"
            for n, (_, req) in spec["attrs"].items()
            if req and n not in el.attrib
        ]
        children = list(el)
        if spec["content"] is None:  # text only
            if children:
                out.append(f"{where}: holds elements, but only text is allowed")
            return
        if (el.text or "").strip() or any((c.tail or "").strip() for c in children):
            out.append(f"{where}: holds text, but only elements are allowed")
        i = 0
        for names, lo, hi in spec["content"]:
            count = 0
            while i < len(children) and children[i].tag in names and count < hi:
                self._check(children[i], f"{where}/{children[i].tag}[{count}]", out)
                i, count = i + 1, count + 1
            if count < lo:
                out.append(f"{where}: needs at least {lo} of {'|'.join(sorted(names))}")
        out += [f"{where}: '{c.tag}' is not allowed here" for c in children[i:]]
