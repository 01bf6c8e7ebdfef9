"""Every raise site passes the fields its error class declares (py_worker/errors/).

The runtime check (``check_fields`` in Python, ``checkFields`` in the generated JS) catches a
wrong key when that raise runs; these scans read every literal raise site in js_glue/ and
py_worker/, so one that no test reaches is held to its class's fields too.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from py_worker import errors

ROOT = Path(__file__).resolve().parent.parent.parent
CLASSES: dict[str, type[errors.PyWorkerError]] = {"PyWorkerError": errors.PyWorkerError, **errors._REGISTRY}
GENERATED = {ROOT / "js_glue" / "errors.js", ROOT / "js_glue" / "kernels" / "errors.js"}

# A raise in JS: namedError("Name", message, {...}), new NameError(message, {...}), or a wire
# literal {name: "Name", message, fields: {...}} (a `throw` reply built by hand).
NAMED = re.compile(r"\bnamedError\(\s*\"(\w+)\"")
NEW = re.compile(r"\bnew (\w+Error)\(")
WIRE = re.compile(r"\bname: \"(\w+Error)\",")


@dataclass
class Site:
    """One literal raise: where, which class, the literal keys and whether a spread adds more."""

    where: str
    name: str
    keys: list[str]
    spread: bool


def _skip_string(text: str, i: int) -> int:
    """The index just past the string literal starting at ``text[i]`` (template ``${}`` included)."""
    quote = text[i]
    i += 1
    while text[i] != quote:
        if text[i] == "\\":
            i += 2
            continue
        if quote == "`" and text.startswith("${", i):
            i = _skip_group(text, i + 1)
            continue
        i += 1
    return i + 1


def _skip_group(text: str, i: int) -> int:
    """The index just past the bracketed group opening at ``text[i]``."""
    depth = 0
    while True:
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1


def _split_top(text: str) -> list[str]:
    """``text`` split at its top-level commas."""
    parts, start, i = [], 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = _skip_string(text, i)
            continue
        if c in "([{":
            i = _skip_group(text, i)
            continue
        if c == ",":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _object_keys(literal: str) -> tuple[list[str], bool]:
    """The keys of an object literal's text ``{...}``, and whether it spreads another object."""
    keys, spread = [], False
    for part in _split_top(literal[1:-1]):
        if part.startswith("..."):
            spread = True
            continue
        match = re.match(r"[\"']?(\w+)[\"']?\s*(:|$)", part)
        assert match, f"cannot read the key of {part!r}"
        keys.append(match.group(1))
    return keys, spread


def js_sites(text: str, where: str) -> list[Site]:
    """Every literal raise site of an error class in JS source ``text``."""
    sites = []
    for pattern, arg in ((NAMED, 2), (NEW, 1)):
        for match in pattern.finditer(text):
            if match.group(1) not in CLASSES:
                continue
            open_paren = text.index("(", match.start())
            args = _split_top(text[open_paren + 1 : _skip_group(text, open_paren) - 1])
            line = f"{where}:{text.count(chr(10), 0, match.start()) + 1}"
            if len(args) <= arg:
                sites.append(Site(line, match.group(1), [], False))
            elif args[arg].startswith("{"):
                sites.append(Site(line, match.group(1), *_object_keys(args[arg])))
    for match in WIRE.finditer(text):
        rest = text[match.end() :]
        fields = re.search(r"\bfields: \{", rest)
        if match.group(1) not in CLASSES or fields is None or "name:" in rest[: fields.start()]:
            continue
        start = match.end() + fields.end() - 1
        literal = text[start : _skip_group(text, start)]
        line = f"{where}:{text.count(chr(10), 0, match.start()) + 1}"
        sites.append(Site(line, match.group(1), *_object_keys(literal)))
    return sites


def problems(site: Site) -> list[str]:
    """What is wrong with one raise site's keys (empty when they are its class's fields)."""
    cls = CLASSES[site.name]
    declared = set(cls.fields_) | set(cls.optional_)
    found = [f"{site.where}: {site.name} has no field {k!r}" for k in site.keys if k not in declared]
    if not site.spread:
        found += [f"{site.where}: {site.name} needs {k!r}" for k in cls.fields_ if k not in site.keys]
    return found


def all_js_sites() -> list[Site]:
    files = sorted(p for p in (ROOT / "js_glue").rglob("*.js") if p not in GENERATED)
    return [s for p in files for s in js_sites(p.read_text(), str(p.relative_to(ROOT)))]


def test_js_raise_sites_pass_declared_fields() -> None:
    sites = all_js_sites()
    assert len(sites) > 90  # the scan finds the raise sites, not nothing
    assert [p for s in sites for p in problems(s)] == []


def test_the_js_scan_catches_a_made_up_key() -> None:
    snippet = """
      throw namedError("GrammarError", `bad ${x.join(", ")}`, { kind: "", reason, made_up: 1 });
      throw new SpecifiedModelNotFoundError(`no ${"model"}`, { model, loaded });
      reply({ name: "MalformedMessageError", message: "m", fields: { "reason": "kind" } });
      throw namedError("IntegrityError", "m", { url, ...bad });
    """
    found = [p for s in js_sites(snippet, "snippet") for p in problems(s)]
    assert found == [
        "snippet:2: GrammarError has no field 'made_up'",
        "snippet:3: SpecifiedModelNotFoundError has no field 'model'",
        "snippet:3: SpecifiedModelNotFoundError needs 'requested'",
        "snippet:3: SpecifiedModelNotFoundError needs 'request_name'",
    ]


def python_sites() -> list[Site]:
    """Every call of an error class in py_worker/ whose keywords are all literal."""
    sites = []
    for path in sorted((ROOT / "py_worker").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in CLASSES:
                keys = [k.arg for k in node.keywords if k.arg is not None]
                spread = any(k.arg is None for k in node.keywords)
                sites.append(Site(f"{path.relative_to(ROOT)}:{node.lineno}", name, keys, spread))
    return sites


def test_python_raise_sites_pass_declared_fields() -> None:
    sites = python_sites()
    assert len(sites) > 80
    assert [p for s in sites for p in problems(s)] == []


def test_an_undeclared_or_missing_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"SpecifiedModelNotFoundError.*undeclared \['model'\]"):
        errors.SpecifiedModelNotFoundError("m", model="x", loaded=[], requested="x", request_name="r")
    with pytest.raises(TypeError, match=r"missing \['request_name'\]"):
        errors.SpecifiedModelNotFoundError("m", requested="x", loaded=[])
    err = errors.SpecifiedModelNotFoundError("m", requested="x", loaded=["a"], request_name="r")
    assert err.fields == {"requested": "x", "loaded": ["a"], "request_name": "r"}


def test_a_subclass_has_its_familys_fields_unless_it_declares_its_own() -> None:
    assert errors.RemoteConnectionError.fields_ == errors.RemoteModelError.fields_ == ("model_id", "origin")
    assert errors.ShaderF16SupportError.optional_ == errors.FeatureSupportError.optional_
    assert errors.DuplicateUuidError.fields_ == ("uuid",)
    assert errors.DuplicateUuidError.optional_ == ()
    errors.DuplicateUuidError("m", uuid="u")
    with pytest.raises(TypeError):
        errors.DuplicateUuidError("m", uuid="u", reason="kind")


CHECK_JS = """
const m = await import(process.argv[1]);
const k = await import(process.argv[2]);
const caught = (f) => { try { f(); return "no error"; } catch (e) { return `${e.name}: ${e.message}`; } };
console.log(JSON.stringify({
  fields: m.ERROR_CLASSES.RemoteTimeoutError.fields,
  undeclared: caught(() => new m.SpecifiedModelNotFoundError("m", { model: "x" })),
  missing: caught(() => new m.UnclearModelToUseError("m", { loaded: [] })),
  kernel: caught(() => k.namedError("GrammarError", "m", { kind: "", reason: "r", made_up: 1 })),
  unknown: caught(() => k.namedError("NoSuchError", "m")),
  ok: k.namedError("GrammarError", "m", { kind: "", reason: "r" }).fields,
  wire: m.errorFromDict({ name: "GrammarError", message: "m", fields: { any: 1 } }).fields,
}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_generated_js_refuses_undeclared_fields() -> None:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", CHECK_JS,
         (ROOT / "js_glue" / "errors.js").as_uri(), (ROOT / "js_glue" / "kernels" / "errors.js").as_uri()],
        capture_output=True, text=True, check=True, timeout=60,
    )
    got = json.loads(proc.stdout)
    assert got["fields"] == ["model_id", "origin", "timeout_ms"]
    assert got["undeclared"].startswith('TypeError: SpecifiedModelNotFoundError has no field "model"')
    assert got["missing"] == 'TypeError: UnclearModelToUseError needs the field "request_name"'
    assert got["kernel"].startswith('TypeError: GrammarError has no field "made_up"')
    assert got["unknown"] == "TypeError: NoSuchError is not a py_worker error class"
    assert got["ok"] == {"kind": "", "reason": "r"}
    assert got["wire"] == {"any": 1}  # a reply from the other side is rebuilt as it came
