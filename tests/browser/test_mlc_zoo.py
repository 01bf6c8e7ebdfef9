"""The engine chats with each architecture of MLC's zoo through the proxy, in Chromium on SwiftShader.

One random-weight MLC model dir per architecture we run (tools/make_random_model.py, ``tiny-<arch>``:
MLC's own tensor names, shapes and dtypes, Qwen2's those of MLC's own Qwen2-0.5B library; built
under build/models/zoo by ./build.sh, or here on first use) is served beside the site under
/test-zoo/<arch>/, not part of site/ or its app-config.json. One page creates the engine with
``CreateWebWorkerMLCEngine`` and an appConfig holding a record for each (one worker boot for all
of them); each case loads its model and asks the same question twice, greedy and with
``max_tokens``: streamed (with usage and logprobs) and not. What the engine promises: a
finish_reason, usage that counts the tokens the chunks carry, no more tokens than max_tokens (all
of them when the finish reason is "length"), and the streamed deltas concatenating to the
non-streamed text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, _site_ready
from hosts import CountingServer, GuardedContext

from tools import make_random_model

ZOO_DIR = ROOT / "build/models/zoo"
QWEN2_META = ROOT.parent / "shared/mlc-libs/meta/v0_2_48__Qwen2-0.5B-Instruct-q4f32_1-ctx4k_cs1k.json"
ARCHITECTURES = {
    "llama": ("tiny-llama3", "q4f16_1"),
    "qwen2": ("tiny-qwen2", "q4f32_1"),  # the quantisation of MLC's own Qwen2 library
    "qwen3": ("tiny-qwen3", "q4f16_1"),
    "phi3": ("tiny-phi3", "q4f16_1"),
    "gemma2": ("tiny-gemma2", "q4f16_1"),
    "gemma3": ("tiny-gemma3", "q4f16_1"),
}
"""Architecture -> (zoo shape, quantisation). The ids build.sh builds (keep the two lists equal)."""
MAX_TOKENS = 8
REQUEST = {
    "messages": [{"role": "user", "content": "Which way to the harbour?"}],
    "temperature": 0,
    "max_tokens": MAX_TOKENS,
    "logprobs": True,
}

# Load `model` (the first case creates the engine with every record of `config`, later ones
# reload it), then the same request streamed and not.
CHAT = """async ([model, config, request]) => {
  if (!window.engine) {
    window.engine = await within(proxy.CreateWebWorkerMLCEngine(() => connect("worker"), model,
      {appConfig: config}), 240000, `create ${model}`);
  } else {
    await within(engine.reload(model), 120000, `reload ${model}`);
  }
  const streamed = async () => {
    const stream = await engine.chat.completions.create(
      {...request, stream: true, stream_options: {include_usage: true}});
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    return chunks;
  };
  const chunks = await within(streamed(), 120000, `stream ${model}`);
  const reply = await within(engine.chat.completions.create(request), 120000, `chat ${model}`);
  return {chunks, reply, modelId: engine.modelId};
}"""


def zoo_dir(shape: str, quant: str) -> Path:
    """The model dir under build/models/zoo (what ./build.sh and tests/kernels build; made here if absent)."""
    out = ZOO_DIR / f"{shape}-{quant}"
    if not (out / "tensor-cache.json").exists():
        make_random_model.build(shape, quant, out)
    return out


@pytest.fixture(scope="module")
def zoo_page(browser: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A page on the site plus /test-zoo/<arch>/, and the app config of the six records."""
    reason = _site_ready()
    if reason:
        pytest.skip(reason)
    dirs = {arch: zoo_dir(*spec) for arch, spec in ARCHITECTURES.items()}
    mounts = {f"/test-zoo/{arch}/": path for arch, path in dirs.items()}
    with CountingServer().serving(mounts=mounts) as url:
        records = [
            {"model_id": f"zoo-{arch}", "model": f"{url}test-zoo/{arch}/", "model_type": "LLM"}
            for arch in dirs
        ]
        context = GuardedContext(browser, url)
        try:
            yield context.page(), {"model_list": records}
        finally:
            context.close()


def test_qwen2_dir_has_the_names_of_mlcs_own_library() -> None:
    """The Qwen2 served below names its tensors as MLC's Qwen2-0.5B library binds them, verbatim."""
    if not QWEN2_META.exists():
        pytest.skip(f"{QWEN2_META} is absent (../shared/mlc-libs)")
    path = zoo_dir(*ARCHITECTURES["qwen2"])
    cache = json.loads((path / "tensor-cache.json").read_text())
    ours = [(r["name"], r["dtype"]) for shard in cache["records"] for r in shard["records"]]
    meta = json.loads(QWEN2_META.read_text())
    layers = int(json.loads((path / "mlc-chat-config.json").read_text())["model_config"]["num_hidden_layers"])
    theirs = [(n, d) for n, _, d in make_random_model.meta_params(meta, layers)]
    assert ours == theirs  # same names, same order, same dtypes (only the dims are tiny)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_engine_chats_with_each_architecture(zoo_page: tuple[Any, dict[str, Any]], arch: str) -> None:
    page, config = zoo_page
    model = f"zoo-{arch}"
    out = page.evaluate(CHAT, [model, config, REQUEST])
    assert out["modelId"] == [model]
    chunks, reply = out["chunks"], out["reply"]

    *deltas, last = chunks
    assert deltas, chunks
    assert last["choices"] == [], chunks  # the usage chunk comes last, alone
    usage = last["usage"]
    finishes = [c["choices"][0]["finish_reason"] for c in deltas]
    assert finishes[-1] in ("stop", "length"), finishes
    assert not any(finishes[:-1]), finishes
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas)
    tokens = sum(len((c["choices"][0].get("logprobs") or {}).get("content") or []) for c in deltas)
    assert {c["model"] for c in chunks} == {model}
    print(f"{arch}: {finishes[-1]}, {usage['completion_tokens']} tokens in {len(deltas)} chunks: {text!r}")

    assert 1 <= usage["completion_tokens"] <= MAX_TOKENS, usage
    assert tokens == usage["completion_tokens"], (tokens, usage)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    if finishes[-1] == "length":
        assert usage["completion_tokens"] == MAX_TOKENS, usage

    # Greedy, the same request: the same answer, whether streamed or not.
    [choice] = reply["choices"]
    assert reply["model"] == model
    assert choice["message"]["content"] == text
    assert choice["finish_reason"] == finishes[-1]
    assert len(choice["logprobs"]["content"]) == reply["usage"]["completion_tokens"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert reply["usage"][key] == usage[key], (reply["usage"], usage)
