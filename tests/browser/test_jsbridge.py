"""JsKernels inside real Pyodide (Node) over a recording shim: plain data both ways, no leaks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules/pyodide/pyodide.mjs").exists(),
    reason="needs node and the pyodide npm package",
)


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(HERE / "node_jsbridge.mjs")], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_python_side_gets_plain_values(run: dict[str, Any]) -> None:
    py = run["python"]
    assert "error" not in py, py
    assert py["handle"] == 7
    assert py["config"]["conv_template"] == {"roles": {"user": "u"}}
    assert py["ids"] == [5, 6, 5]  # Int32Array came back as a list; len("héllo") == 5
    assert py["text"] == "1,2,3"
    assert py["one"] == [2, -0.5, [[2, -0.5], [1, -1.5]]]
    assert py["many"] == [0, 1]
    assert py["vectors"] == [[3.0, 0.5], [1.0, 0.5]]
    assert py["stats"] == {"prefill_tokens": 3, "decode_seconds": 0.25}
    assert py["device"]["features"] == ["subgroups"]
    assert py["device"]["maxStorageBufferBindingSize"] == 1 << 30
    assert py["types"] == ["list", "float", "dict"]
    assert py["progress"] == [[0.5, "Fetching param cache[1/2]: x"], [1, "Finish loading on WebGPU - test"]]


def test_js_side_gets_plain_values_in_abi_order(run: dict[str, Any]) -> None:
    methods = [c["method"] for c in run["calls"]]
    assert methods == [
        "load", "tokenize", "detokenize", "prefill", "decode", "sample",
        "decodeSteps", "rewind", "reset", "embed", "stats", "deviceInfo", "unload", "reset", "reset",
    ]
    assert all(c["plain"] for c in run["calls"]), [c for c in run["calls"] if not c["plain"]]
    by_name = {c["method"]: c["args"] for c in run["calls"]}
    assert by_name["load"][0]["overrides"] == {"a": 1}
    params = by_name["sample"][1]
    assert params["logit_bias"] == [[3, -1]]
    assert params["uniforms"] == [0.25, 0.75]
    assert params["top_logprobs"] == 2
    assert by_name["decodeSteps"][1] == 2
    assert by_name["embed"][1] == [[1, 2, 3], [4]]


def test_progress_callback_destroyed_after_load(run: dict[str, Any]) -> None:
    assert "destroyed" in run["progressAfterLoad"]


def test_named_shim_errors_become_python_classes(run: dict[str, Any]) -> None:
    named, plain = run["python"]["raised"]
    assert named == ["DeviceLostError", "device went away", {"reason": "destroyed"}]
    assert plain[0] == "JsException"
    assert "plain JS failure" in plain[1]
