"""js_glue/errors.js holds the same error classes, with the same parents, as py_worker/errors/."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from py_worker import errors

ROOT = Path(__file__).resolve().parent.parent.parent
ERRORS_JS = ROOT / "js_glue" / "errors.js"

LIST_CLASSES = """
const m = await import(process.argv[1]);
const out = {};
for (const [name, cls] of Object.entries(m.ERROR_CLASSES)) {
  const e = m.errorFromDict({name, message: "m", fields: {k: 1}});
  out[name] = {parent: Object.getPrototypeOf(cls).name, rebuilt: e.constructor.name,
               isError: e instanceof Error, fields: e.fields, message: e.message};
}
const unknown = m.errorFromDict({name: "ValueError", message: "bad"});
const about = [unknown.name, unknown.fields.remote_name, unknown.message];
console.log(JSON.stringify({classes: out, unknown: about}));
"""


def _site_module() -> Any:
    spec = importlib.util.spec_from_file_location("pyworker_site", ROOT / "tools" / "site.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_classes() -> dict[str, str]:
    classes = {errors.PyWorkerError, *errors._REGISTRY.values()}
    return {c.__name__: c.__bases__[0].__name__ for c in classes}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_js_and_python_error_lists_agree() -> None:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", LIST_CLASSES, ERRORS_JS.as_uri()],
        capture_output=True, text=True, check=True, timeout=60,
    )
    got = json.loads(proc.stdout)
    js = {name: info["parent"] for name, info in got["classes"].items()}
    expected = python_classes()
    expected["PyWorkerError"] = "Error"  # the JS base extends the built-in Error
    assert js == expected
    for name, info in got["classes"].items():
        assert info["rebuilt"] == name
        assert info["isError"]
        assert info["fields"] == {"k": 1}
        assert info["message"] == "m"
    assert got["unknown"] == ["RemoteError", "ValueError", "bad"]


def test_errors_js_is_generated_from_python() -> None:
    assert ERRORS_JS.read_text() == _site_module().errors_js(), "run: python tools/site.py --errors-only"
