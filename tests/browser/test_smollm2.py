"""SmolLM2-135M-Instruct through the whole stack on SwiftShader (slow: about a minute here)."""

from __future__ import annotations

import pytest
from conftest import ARTIFACTS, SITE, Guarded

SMOL = "SmolLM2-135M-Instruct-q4f32_1"
QUESTION = "What is the capital of France?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SITE / "models" / SMOL).exists(), reason=f"site/ has no {SMOL}"),
]

PAUSE_AT_2 = """
window.deltas = 0;
window.__pyworkerDelta = () => {
  window.deltas += 1;
  if (window.deltas !== 2) return undefined;
  return new Promise((resolve) => { window.paused = true; window.resume = resolve; });
};
"""


def test_smollm2_answers_on_demo_page(guarded: Guarded) -> None:
    page = guarded.page
    page.add_init_script(PAUSE_AT_2)
    guarded.open(f"index.html?model={SMOL}&prompt={QUESTION}&max_tokens=8&seed=1&temperature=0")
    page.wait_for_function("window.paused === true", timeout=600_000, polling=500)
    assert page.locator(".msg.assistant.streaming").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-smollm2-mid-answer.png"), full_page=True)
    page.evaluate("window.resume()")
    page.wait_for_function("window.demoState.done", timeout=600_000, polling=500)
    state = page.evaluate("window.demoState")
    assert state["error"] is None
    assert state["loaded"] == [SMOL]
    assert "Paris" in state["text"]  # a real model gives a real answer
    whole = guarded.js(
        """async (content) => {
          const request = {messages: [{role: "user", content}], max_tokens: 8, seed: 1, temperature: 0};
          const reply = await within(demoEngine.chat.completions.create(request), 600000, "non-streaming");
          return reply.choices[0].message.content;
        }""",
        QUESTION,
    )
    assert whole == state["text"]  # the stream through the proxy equals the worker's whole answer
