"""Routing, locks, validation, errors and the message handler behave in Pyodide as on CPython.

tests/pyodide/scenarios.py runs on both sides; the results must be equal, and the Pyodide side
must also show the behaviour web-llm's rules ask for (checked here on that result).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pytest_pyodide import run_in_pyodide

SCENARIOS = (Path(__file__).parent / "scenarios.py").read_text()


def _host() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(compile(SCENARIOS, "scenarios.py", "exec"), ns)
    result: dict[str, Any] = ns["run_all_sync"]()
    result["locks"] = asyncio.run(ns["lock_trace"]())
    result["handler"] = asyncio.run(ns["handler_transcript"]())
    return result


@run_in_pyodide(packages=["py-worker"])
async def _in_pyodide(selenium: Any, code: str) -> dict[str, Any]:
    import json
    import sys

    ns: dict[str, Any] = {}
    exec(compile(code, "scenarios.py", "exec"), ns)
    result = ns["run_all_sync"]()
    result["locks"] = await ns["lock_trace"]()
    result["handler"] = await ns["handler_transcript"]()
    result["platform"] = sys.platform
    # JSON both ways so tuples/lists compare the same as on the host side.
    return json.loads(json.dumps(result))


@pytest.fixture(scope="module")
def both(selenium_module_scope: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import json

    py = _in_pyodide(selenium_module_scope, SCENARIOS)
    return json.loads(json.dumps(_host())), py


@pytest.mark.parametrize("part", ["router", "validation", "errors", "locks", "handler"])
def test_same_result_as_cpython(both: tuple[dict[str, Any], dict[str, Any]], part: str) -> None:
    host, py = both
    assert py["platform"] == "emscripten"
    assert py[part] == host[part]


def _names(cases: list[Any]) -> list[str]:
    return [c["error"]["name"] if "error" in c else "ok" for c in cases]


def test_router_rules_in_pyodide(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    router = both[1]["router"]
    assert _names(router) == [
        "ModelNotLoadedError", "ok", "ok", "SpecifiedModelNotFoundError", "UnclearModelToUseError",
        "ReloadModelIdNotUniqueError", "ReloadArgumentSizeUnmatchedError", "ok", "ok",
        "ModelNotFoundError", "IncorrectPipelineLoadedError", "EmbeddingUnsupportedModelError", "ok",
    ]  # fmt: skip
    assert [router[1]["ok"], router[2]["ok"]] == ["llm-a", "emb"]
    assert router[4]["error"]["fields"]["loaded"] == ["llm-a", "emb"]


def test_validation_in_pyodide(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    cases = both[1]["validation"]
    assert _names(cases) == [
        "ok", "StreamingCountError", "InvalidStreamOptionsError", "SeedTypeError", "PenaltyRangeError",
        "RepetitionPenaltyError", "MaxTokensError", "TopPError", "TemperatureError", "LogitBiasError",
        "LogitBiasError", "LogprobsNotEnabledError", "TopLogprobsError", "SystemMessageOrderError",
        "InvalidRequestFieldError", "ok",
        "ok", "ok", "ok", "ok", "EmbeddingInputEmptyError", "EmbeddingInputEmptyError",
        "UnsupportedFieldsError", "EmbeddingUnsupportedEncodingFormatError",
    ]  # fmt: skip
    assert cases[15]["ok"]["config"]["logit_bias"] == {"3": -100.0}
    assert [c["ok"]["input"] for c in cases[16:20]] == [["one"], ["a", "b"], [[1, 2, 3]], [[1], [2, 3]]]


def test_errors_keep_class_and_fields_in_pyodide(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rows = both[1]["errors"]
    assert len(rows) > 40
    assert all(r[0] == r[1][2:] and r[2] == {"k": 1, "message": "field"} and r[3] for r in rows[:-1])
    assert rows[-1] == ["RemoteError", {"remote_name": "NotAClass"}]


def test_locks_fifo_and_cancellation_in_pyodide(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    locks = both[1]["locks"]
    trace = locks["trace"]
    # b1 (model B) runs while a1 holds A; A's waiters run in arrival order; cancelled a4 never runs.
    assert trace.index("end b1") < trace.index("end a1")
    assert [t for t in trace if t.startswith("start a")] == ["start a1", "start a2", "start a3", "start a5"]
    assert locks["snapshot"] == {"held": ["A"], "waiting_A": 4, "waiting_A_after_cancel": 3}
    assert locks["results"] == [None, None, "ValueError", "CancelledError", None]
    # The cancelled holder c1 handed C to c2, and nothing is held at the end.
    assert "end c1" not in trace
    assert trace[-2:] == ["start c2", "end c2"]
    assert locks["held_at_end"] == []


def test_worker_handler_in_pyodide(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    posted = both[1]["handler"]
    terminal = [p for p in posted if p["kind"] in ("return", "throw")]
    # Exactly one terminal reply per request, in order, and progress only for the reload.
    assert [p["uuid"] for p in terminal] == [f"u{i}" for i in range(14)]
    assert {p["uuid"] for p in posted if p["kind"] == "initProgressCallback"} == {"u2"}
    names = [p["content"]["name"] if p["kind"] == "throw" else "return" for p in terminal]
    assert names == [
        "UnknownMessageKindError", "ModelNotLoadedError", "return", "UnclearModelToUseError", "return",
        "return", "return", "return", "return", "StreamNotFoundError", "return",
        "EmbeddingUnsupportedModelError", "return", "return",
    ]  # fmt: skip
    answer = terminal[4]["content"]["choices"][0]
    assert answer["message"]["content"] == "Hi from py_worker."
    assert answer["finish_reason"] == "stop"
    chunks = [terminal[i]["content"]["chunk"]["choices"][0]["delta"]["content"] for i in (6, 7)]
    assert chunks == ["H", "i"]
    assert terminal[8]["content"] == {"done": True}
    assert [d["embedding"] for d in terminal[10]["content"]["data"]] == [[1.0, 6.0], [2.0, 1.0]]
    assert terminal[12]["content"] == "Hi from py_worker."
