"""Security: no text from a model, a config or a message is run as code; pinned artifacts are checked.

1. A static scan of the Python engine (``py_worker/``, by its AST) and of the JS (``js_glue/`` and
   the demo in ``static/``, by a small lexer that knows strings, templates, regexes and comments)
   for the places where text becomes code: ``eval``/``exec``/``compile``/``__import__``/
   ``import_module``/``pickle``, Pyodide's ``runPython``/``run_js``/``eval_code``; in JS ``eval``,
   ``Function``, string timers, ``importScripts``, dynamic ``import()``, ``new Worker``, and HTML
   sinks (``innerHTML``, ``insertAdjacentHTML``, ``document.write``). A sink whose argument is
   a constant is fine; ``eval``-like sinks must only ever take constants; a code-loading or HTML
   sink with a computed argument must be in ``REVIEWED``, each with the reason its input cannot
   come from a model, a config or a message. Comments, strings and names such as
   ``FunctionNotFoundError`` or ``re.compile`` are not flagged.
2. sha256 pins: a model record's ``sha256`` pins every artifact (config, tensor cache, tokenizer,
   shards); a wrong pin or a tampered file is refused with ``IntegrityError`` and nothing of the
   failed load is kept: no handle, no model, no held lock, and a later correct load works.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from py_worker.engine import MLCEngine
from py_worker.errors import IntegrityError
from py_worker.reference import ReferenceKernels
from tools.make_tiny_model import ensure_tiny

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Finding:
    """One sink: where, which, the argument's source text, and whether that argument is constant."""

    file: str
    line: int
    sink: str
    argument: str
    constant: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.sink, self.argument)


# ---- Python ------------------------------------------------------------------------------------

PY_BUILTIN_SINKS = {"eval", "exec", "compile", "__import__", "breakpoint"}
PY_ATTRIBUTE_SINKS = {
    "import_module", "run_js", "runPython", "runPythonAsync", "eval_code", "eval_code_async",
    "loads", "load", "literal_eval", "pyimport",
}  # fmt: skip
PY_ATTRIBUTE_OWNERS = {"importlib", "pyodide", "code", "js", "pickle", "marshal", "shelve", "dill", "yaml"}
PY_DYNAMIC_NAME = {"getattr", "setattr", "delattr"}  # dispatch by a name taken from data


def _owner(node: ast.expr) -> str:
    """Leftmost name of ``a.b.c`` (``a``), or ``""``."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _const(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


def scan_python(source: str, file: str) -> list[Finding]:
    """Every call that can turn text into code (or pick an attribute by a computed name)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _owner(node) == "js" and node.attr in ("eval", "Function"):
            found.append(Finding(file, node.lineno, f"js.{node.attr}", ast.unparse(node), False))
        if not isinstance(node, ast.Call):
            continue
        func, args = node.func, node.args
        if isinstance(func, ast.Name) and func.id in PY_BUILTIN_SINKS:
            sink, arg = func.id, args[0] if args else None
        elif isinstance(func, ast.Name) and func.id in PY_DYNAMIC_NAME and len(args) >= 2:
            sink, arg = func.id, args[1]
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in PY_ATTRIBUTE_SINKS
            and (_owner(func) in PY_ATTRIBUTE_OWNERS or func.attr.startswith(("run", "eval_code")))
            and not (func.attr in ("loads", "load") and _owner(func) == "json")
        ):
            sink, arg = f"{_owner(func)}.{func.attr}", args[0] if args else None
        else:
            continue
        constant = arg is None or _const(arg)
        found.append(Finding(file, node.lineno, sink, "" if arg is None else ast.unparse(arg), constant))
    return found


# ---- JavaScript ----------------------------------------------------------------------------------

_PUNCT = re.compile(
    r">>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|\?\?=|&&=|\|\|=|=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.|"
    r"\+\+|--|\+=|-=|\*=|/=|%=|&=|\|=|\^=|<<|>>|\*\*|[{}()\[\];,<>+\-*/%&|^!~?:=.@#]"
)
_IDENT = re.compile(r"[A-Za-z_$\u0080-\uffff][\w$\u0080-\uffff]*")
_NUMBER = re.compile(r"0[xXoObB][\da-fA-F_]+n?|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?n?")
_REGEX_AFTER = {*"(,=:[!&|?{};+-*%<>~^"} | {
    "return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "yield", "await",
    "=>", "==", "===", "!=", "!==", "&&", "||", "??", "+=", "-=",
}  # fmt: skip


@dataclass
class Token:
    kind: str  # ident | punct | string | template | regex | number
    text: str
    line: int


def _skip_string(src: str, i: int) -> int:
    quote, i = src[i], i + 1
    while src[i] != quote:
        i += 2 if src[i] == "\\" else 1
    return i + 1


def _skip_template(src: str, i: int) -> tuple[int, bool]:
    """End of the template literal starting at ``src[i]`` and whether it has substitutions."""
    i, subst = i + 1, False
    while src[i] != "`":
        if src[i] == "\\":
            i += 2
        elif src.startswith("${", i):
            subst, depth, i = True, 1, i + 2
            while depth:
                if src[i] in "'\"":
                    i = _skip_string(src, i)
                    continue
                if src[i] == "`":
                    i = _skip_template(src, i)[0]
                    continue
                depth += {"{": 1, "}": -1}.get(src[i], 0)
                i += 1
        else:
            i += 1
    return i + 1, subst


def _skip_regex(src: str, i: int) -> int:
    i, in_class = i + 1, False
    while in_class or src[i] != "/":
        if src[i] == "\\":
            i += 1
        elif src[i] == "[":
            in_class = True
        elif src[i] == "]":
            in_class = False
        i += 1
    i += 1
    while i < len(src) and (src[i].isalnum() or src[i] == "_"):
        i += 1
    return i


def tokenize_js(src: str) -> list[Token]:
    """JS tokens with comments dropped; strings, templates and regexes kept whole."""
    tokens: list[Token] = []
    i = 0
    while i < len(src):
        c, line = src[i], src.count("\n", 0, i) + 1
        if c.isspace():
            i += 1
        elif src.startswith("//", i):
            i = src.find("\n", i) if "\n" in src[i:] else len(src)
        elif src.startswith("/*", i):
            i = src.index("*/", i + 2) + 2
        elif c in "'\"":
            end = _skip_string(src, i)
            tokens.append(Token("string", src[i:end], line))
            i = end
        elif c == "`":
            end, subst = _skip_template(src, i)
            tokens.append(Token("template" if subst else "string", src[i:end], line))
            i = end
        elif c == "/" and (not tokens or tokens[-1].text in _REGEX_AFTER):
            end = _skip_regex(src, i)
            tokens.append(Token("regex", src[i:end], line))
            i = end
        elif m := _IDENT.match(src, i):
            tokens.append(Token("ident", m.group(), line))
            i = m.end()
        elif c.isdigit() or (c == "." and src[i + 1 : i + 2].isdigit()):
            m = _NUMBER.match(src, i)
            assert m is not None
            tokens.append(Token("number", m.group(), line))
            i = m.end()
        else:
            m = _PUNCT.match(src, i)
            assert m is not None, f"cannot lex {src[i : i + 20]!r} at line {line}"
            tokens.append(Token("punct", m.group(), line))
            i = m.end()
    return tokens


def _arguments(tokens: list[Token], open_at: int) -> list[list[Token]]:
    """Tokens of each argument of the call whose ``(`` is at ``open_at``."""
    depth, args = 0, [list[Token]()]
    for tok in tokens[open_at + 1 :]:
        if tok.text in ("(", "[", "{"):
            depth += 1
        elif tok.text in (")", "]", "}"):
            if depth == 0:
                break
            depth -= 1
        elif tok.text == "," and depth == 0:
            args.append([])
            continue
        args[-1].append(tok)
    return args


def _argument(tokens: list[Token], open_at: int, index: int = 0) -> list[Token]:
    args = _arguments(tokens, open_at)
    return args[index] if index < len(args) else []


def _expression(tokens: list[Token], start: int) -> list[Token]:
    """Tokens of the expression starting at ``start`` up to ``;`` or the end of its line."""
    out: list[Token] = []
    depth = 0
    for tok in tokens[start:]:
        if depth == 0 and (
            tok.text in (";", "}", ")") or (out and tok.line != out[-1].line and tok.text != "+")
        ):
            break
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(tok.text, 0)
        out.append(tok)
    return out


JS_EVAL_SINKS = {"eval", "Function"}
LOADING_SINKS = {"import()", "new Worker", "new SharedWorker", "innerHTML", "outerHTML", "insertAdjacentHTML"}
"""Sinks that load code or HTML from a URL or markup: computed arguments need a review, not a ban."""
JS_GLOBALS = {"globalThis", "window", "self"}


def scan_js(source: str, file: str) -> list[Finding]:
    """Every JS sink that can run text as code or HTML."""
    tokens = tokenize_js(source)
    found = []

    def add(i: int, sink: str, arg: list[Token], *more: list[Token]) -> None:
        parts = [arg, *more]
        text = " , ".join(" ".join(t.text for t in part) for part in parts)
        constant = all(len(p) <= 1 and all(t.kind in ("string", "number") for t in p) for p in parts)
        found.append(Finding(file, tokens[i].line, sink, text, constant))

    for i, tok in enumerate(tokens):
        prev = tokens[i - 1].text if i else ""
        prev2 = tokens[i - 2].text if i > 1 else ""
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        member = prev in (".", "?.")
        global_member = member and prev2 in JS_GLOBALS
        if tok.kind != "ident":
            continue
        if tok.text in JS_EVAL_SINKS and nxt == "(" and (not member or global_member):
            add(i, tok.text, *_arguments(tokens, i + 1))  # Function's body is its last argument
        elif tok.text in ("runPython", "runPythonAsync") and member and nxt == "(":
            add(i, tok.text, *_arguments(tokens, i + 1))
        elif tok.text in ("setTimeout", "setInterval") and nxt == "(" and (not member or global_member):
            arg = _argument(tokens, i + 1)
            if arg and arg[0].kind in ("string", "template"):
                add(i, "string " + tok.text, arg)
        elif tok.text == "importScripts" and nxt == "(" and not member:
            add(i, "importScripts", _argument(tokens, i + 1))
        elif tok.text == "import" and nxt == "(" and not member:
            add(i, "import()", _argument(tokens, i + 1))
        elif tok.text in ("Worker", "SharedWorker") and prev == "new" and nxt == "(":
            add(i, "new " + tok.text, _argument(tokens, i + 1))
        elif tok.text in ("innerHTML", "outerHTML") and member and nxt in ("=", "+="):
            add(i, tok.text, _expression(tokens, i + 2))
        elif tok.text == "insertAdjacentHTML" and member and nxt == "(":
            add(i, tok.text, _argument(tokens, i + 1, 1))
        elif tok.text in ("write", "writeln") and member and prev2 == "document" and nxt == "(":
            add(i, "document." + tok.text, _argument(tokens, i + 1))
    return found


# ---- the scan of this repository ----------------------------------------------------------------

# Computed code-loading and HTML sinks, each with why its input cannot come from a model, a config
# or a message. Keyed by (file, sink, argument tokens). A stale entry fails the test too.
REVIEWED: dict[tuple[str, str, str], str] = {
    ("js_glue/worker-handler.js", "import()", "`${PYODIDE_URL}pyodide.mjs`"):
        "PYODIDE_URL is pyodide-host.js's new URL('pyodide/', import.meta.url): the worker's own origin",
    ("js_glue/py-worker.js", "import()", 'new URL ( "proxy.js" , base ) . href'):
        "base is the directory of this script's own src (document.currentScript)",
    ("js_glue/py-worker.js", "new Worker", 'new URL ( "worker.js" , base )'):
        "base is the directory of this script's own src (document.currentScript)",
    ("js_glue/kernels/tokenizer.js", "import()", "url"):
        "url is the tokenizersURL of kernels/site_options.js, inside the site (the host's own URL)",
    ("js_glue/kernels/grammar.js", "import()", "url"):
        "url is the xgrammarURL of kernels/site_options.js, inside the site (the host's own URL)",
    ("js_glue/kernels/wasm.js", "import()", "url"):
        "url is the wllamaURL of kernels/site_options.js, inside the site (the host's own URL)",
    (
        "js_glue/kernels/wasm.js",
        "new Worker",
        'URL . createObjectURL ( new Blob ( [ "postMessage(1)" ] , { type : "text/javascript" } ) )',
    ): "a constant one-line script: the probe of whether blob: workers may start (llama.cpp's is one)",
    ("js_glue/kernels/mlc.js", "import()", "url"):
        "url is options.tvmjsURL, or options.tvmjsURLs[v] / tvmjsBaseURL (the worker's own tvmjs/, else"
        " ../tvmjs/ of import.meta.url) + v/index.js, v a version of RUNTIMES in mlc/runtimes.js: a"
        " record's tvmjs_version only selects among those, never names a URL",
    ("js_glue/transport.js", "new SharedWorker", "url"):
        "url is the page's own options.url or shared-worker.js, resolved against transport.js's own URL",
    ("js_glue/transport.js", "new Worker", "url"):
        "url is the page's own options.url or worker.js, resolved against transport.js's own URL",
    ("static/demo.js", "innerHTML", 'header + rows . join ( "" )'):
        "the similarity table holds only indices and toFixed(3) numbers, never input text",
}  # fmt: skip


def repository_findings() -> Iterator[Finding]:
    for path in sorted((ROOT / "py_worker").rglob("*.py")):
        yield from scan_python(path.read_text("utf-8"), str(path.relative_to(ROOT)))
    for folder in ("js_glue", "static"):
        for path in sorted((ROOT / folder).rglob("*.js")):
            yield from scan_js(path.read_text("utf-8"), str(path.relative_to(ROOT)))


def test_no_code_path_evaluates_text_as_code() -> None:
    findings = list(repository_findings())
    eval_like = [f for f in findings if not f.constant and f.sink not in LOADING_SINKS]
    assert eval_like == [], "text could be run as code here"
    loading = [f for f in findings if not f.constant and f not in eval_like]
    unreviewed = [f for f in loading if f.key not in REVIEWED]
    assert unreviewed == [], (
        "a computed code-loading or HTML sink nobody reviewed (add it to REVIEWED with a reason)"
    )
    stale = set(REVIEWED) - {f.key for f in loading}
    assert stale == set(), "REVIEWED lists sinks that are gone: drop them"


# ---- the scanners on known snippets (so the scan above can fail) ----------------------------------

PY_BAD = [
    "eval(message['x'])",
    "exec(code)",
    "compile(text, 'f', 'exec')",
    "importlib.import_module(name)",
    "pickle.loads(blob)",
    "pyodide.code.run_js(src)",
    "getattr(self, message['kind'])",
    "x = js.eval",
    "pyodide.runPython(text)",
]
PY_FINE = [
    "re.compile(pattern)",
    "json.loads(text)",
    "getattr(obj, 'aclose', None)",
    "eval('1 + 1')",
    "s = 'eval(x)'  # eval(x)",
    "model.evaluate(x)",
]
JS_BAD = [
    "eval(msg.code)",
    "globalThis.eval(text)",
    "new Function('a', body)",
    "const f = Function(text);",
    "pyodide.runPython(msg.content)",
    "await pyodide.runPythonAsync(`x = ${y}`)",
    "setTimeout(`go(${x})`, 10)",
    "importScripts(url)",
    "await import(record.model_lib)",
    "new Worker(msg.url)",
    "el.innerHTML = reply.text;",
    "el.insertAdjacentHTML('beforeend', chunk)",
    "document.write(text)",
]
JS_FINE = [
    "// eval(x) in a comment",
    "/* new Function(body) */ const a = 1;",
    "const s = 'eval(x)'; const t = \"new Function(y)\";",
    "const t = `not ${'eval'}(x)`;",
    "class FunctionNotFoundError extends Error {}",
    "obj.eval(x); model.Function(y);",
    "const r = /eval\\(/g; x = a / b / c;",
    "setTimeout(() => run(), 5); setInterval(tick, 10);",
    "pyodide.runPython('import sys')",
    "await import('./kernels/index.js')",
    "el.textContent = reply.text;",
    "el.innerHTML = '';",
]


@pytest.mark.parametrize("snippet", PY_BAD)
def test_python_scanner_flags(snippet: str) -> None:
    assert [f for f in scan_python(snippet, "x.py") if not f.constant], snippet


@pytest.mark.parametrize("snippet", PY_FINE)
def test_python_scanner_passes(snippet: str) -> None:
    assert [f for f in scan_python(snippet, "x.py") if not f.constant] == [], snippet


@pytest.mark.parametrize("snippet", JS_BAD)
def test_js_scanner_flags(snippet: str) -> None:
    assert [f for f in scan_js(snippet, "x.js") if not f.constant], snippet


@pytest.mark.parametrize("snippet", JS_FINE)
def test_js_scanner_passes(snippet: str) -> None:
    assert [f for f in scan_js(snippet, "x.js") if not f.constant] == [], snippet


def test_js_lexer_reads_every_file_whole() -> None:
    """Every JS file lexes to the end (a lexer that lost its place would hide sinks)."""
    for folder in ("js_glue", "static"):
        for path in (ROOT / folder).rglob("*.js"):
            tokens = tokenize_js(path.read_text("utf-8"))
            assert tokens, path
            depth = sum({"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(t.text, 0) for t in tokens)
            assert depth == 0, f"{path}: brackets do not balance, the lexer lost its place"


# ---- sha256 pins -------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the tiny 4-bit model, free to tamper with."""
    out = tmp_path / "tiny"
    shutil.copytree(ensure_tiny("q4f32_1"), out)
    return out


def _pinned(model_dir: Path) -> dict[str, str]:
    names = ["mlc-chat-config.json", "tensor-cache.json", "tokenizer.json"]
    names += sorted(p.name for p in model_dir.glob("params_shard_*.bin"))
    return {name: _sha(model_dir / name) for name in names}


async def _reload(engine: MLCEngine, model_id: str = "m") -> BaseException | None:
    try:
        await engine.reload(model_id)
    except Exception as exc:
        return exc
    return None


def _engine(record: dict[str, Any]) -> tuple[MLCEngine, ReferenceKernels]:
    kernels = ReferenceKernels()
    return MLCEngine(kernels, {"model_list": [record]}), kernels


def _nothing_kept(engine: MLCEngine, kernels: ReferenceKernels) -> None:
    assert engine.models == {}
    assert not engine.locks.held()
    assert kernels._sessions == {}  # no handle of the failed load survives


def test_every_artifact_can_be_pinned_and_correct_pins_load(model_dir: Path) -> None:
    pins = _pinned(model_dir)
    assert {"mlc-chat-config.json", "tensor-cache.json", "tokenizer.json", "params_shard_0.bin"} <= set(pins)
    engine, _ = _engine({"model_id": "m", "model": str(model_dir), "sha256": pins})

    async def main() -> None:
        assert await _reload(engine) is None
        reply: Any = await engine.chat.completions.create(
            messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert reply["usage"]["completion_tokens"] >= 1

    asyncio.run(main())


@pytest.mark.parametrize(
    "artifact", ["mlc-chat-config.json", "tensor-cache.json", "tokenizer.json", "params_shard_0.bin"]
)
def test_a_wrong_pin_is_refused_and_nothing_is_kept(model_dir: Path, artifact: str) -> None:
    pins = _pinned(model_dir)
    good = dict(pins)
    pins[artifact] = hashlib.sha256(b"something else").hexdigest()
    record = {"model_id": "m", "model": str(model_dir), "sha256": pins}
    engine, kernels = _engine(record)

    async def main() -> None:
        exc = await _reload(engine)
        assert isinstance(exc, IntegrityError), exc
        assert exc.fields["file"] == artifact
        assert exc.fields["expected"] == pins[artifact]
        assert exc.fields["actual"] == good[artifact]
        _nothing_kept(engine, kernels)
        engine.set_app_config({"model_list": [{**record, "sha256": good}]})
        assert await _reload(engine) is None  # the same engine loads once the pin is right
        assert engine.loaded_model_ids() == ["m"]

    asyncio.run(main())


def test_a_tampered_shard_is_refused_by_the_tensor_cache_digest(model_dir: Path) -> None:
    """Without any pin in the record, tensor-cache.json's own digests still guard the shards."""
    shard = model_dir / "params_shard_0.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    engine, kernels = _engine({"model_id": "m", "model": str(model_dir)})

    async def main() -> None:
        exc = await _reload(engine)
        assert isinstance(exc, IntegrityError), exc
        assert exc.fields["file"] == "params_shard_0.bin", exc
        _nothing_kept(engine, kernels)

    asyncio.run(main())


def test_a_failed_pin_on_the_second_model_keeps_the_first_consistent(model_dir: Path) -> None:
    """A reload of two models whose second has a wrong pin: the error names the file, no handle
    leaks, and what is reported loaded is exactly what holds a handle."""
    pins = _pinned(model_dir)
    pins["params_shard_0.bin"] = "0" * 64
    good = {"model_id": "good", "model": str(ensure_tiny("q0f32"))}
    bad = {"model_id": "bad", "model": str(model_dir), "sha256": pins}
    kernels = ReferenceKernels()
    engine = MLCEngine(kernels, {"model_list": [good, bad]})

    async def main() -> None:
        with pytest.raises(IntegrityError) as caught:
            await engine.reload(["good", "bad"])
        assert caught.value.fields["file"] == "params_shard_0.bin"
        assert "bad" not in engine.models
        assert sorted(kernels._sessions) == sorted(m.handle for m in engine.models.values())
        assert not engine.locks.held()

    asyncio.run(main())
