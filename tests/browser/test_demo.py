"""The demo page (static/index.html): a streamed answer on screen, Stop, and a screenshot."""

from __future__ import annotations

from conftest import ARTIFACTS, TINY, TINY_B, Guarded

# Pauses the page's stream at the 3rd delta until the test resumes it (demo.js awaits the hook).
PAUSE_AT_3 = """
window.deltas = 0;
window.__pyworkerDelta = () => {
  window.deltas += 1;
  if (window.deltas !== 3) return undefined;
  return new Promise((resolve) => { window.paused = true; window.resume = resolve; });
};
"""


def test_demo_screenshot_mid_answer(guarded: Guarded) -> None:
    page = guarded.page
    page.add_init_script(PAUSE_AT_3)
    guarded.open(f"index.html?model={TINY}&prompt=Write+a+long+story.&max_tokens=150&seed=3&ignore_eos=1")
    page.wait_for_function("window.paused === true", timeout=120_000)
    assert page.locator(".msg.user .text").inner_text() == "Write a long story."
    assert page.locator(".msg.assistant.streaming").count() == 1
    assert len(page.locator(".msg.assistant .text").inner_text()) > 0
    assert page.locator("#stop").is_enabled()
    assert page.locator("#send").is_disabled()
    assert "Loaded" in page.locator("#progress-text").inner_text()
    assert page.locator("#progress-bar").evaluate("e => e.style.width") == "100%"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "demo-mid-answer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.evaluate("window.resume()")
    page.wait_for_function("window.demoState.done", timeout=60_000)
    state = page.evaluate("window.demoState")
    assert state["error"] is None
    assert state["finish"] in ("stop", "length")
    assert "tokens/s decode" in state["stats"]
    assert page.locator(".msg.assistant.streaming").count() == 0


def test_demo_stop_then_next_answer_complete(guarded: Guarded) -> None:
    page = guarded.page
    page.add_init_script(PAUSE_AT_3)
    guarded.open(f"index.html?model={TINY}&model2={TINY_B}&prompt=Go+on.&max_tokens=150&seed=5&ignore_eos=1")
    page.wait_for_function("window.paused === true", timeout=120_000)
    page.click("#stop")
    page.evaluate("window.resume()")
    page.wait_for_function("window.demoState.done", timeout=60_000)
    stopped = page.evaluate("window.demoState")
    assert stopped["error"] is None
    assert stopped["finish"] == "abort"
    assert stopped["loaded"] == [TINY, TINY_B]
    first_tokens = int(stopped["stats"].split()[0])
    assert 3 <= first_tokens < 150  # interrupted, not run to max_tokens
    # Next message, answered by the second model (per-message model choice).
    page.evaluate("window.__pyworkerDelta = null")
    page.select_option("#chat-model", TINY_B)
    page.fill("#prompt", "And again?")
    page.click("#send")
    page.wait_for_function("!demoState.busy && document.querySelectorAll('.msg.assistant').length === 2")
    assert page.locator(".msg.assistant .who").nth(1).inner_text() == TINY_B
    again = page.evaluate("window.demoState")
    assert again["error"] is None
    assert again["finish"] in ("stop", "length")
    assert again["text"]
    assert page.locator(".msg.assistant .text").nth(1).inner_text() == again["text"]
