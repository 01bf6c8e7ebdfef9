"""A WebGPU device lost during generation: the stream ends with DeviceLostError, a reload recovers.

The loss is real: a hook evaluated inside the worker (playwright's Worker.evaluate, so the shipped
code carries no test switch) records the devices the shim creates and calls ``destroy()`` on the
live one right after the worker posts the second chunk of a stream that has more to come.
Everything after that is the shipped stack: the shim's lost-device handling, jsbridge's error
mapping, the engine's lock release and the proxy re-throwing the class.
"""

from __future__ import annotations

from typing import Any

from conftest import TINY, Guarded

USER = [{"role": "user", "content": "Tell me a long story about lost devices."}]
REQUEST = {"messages": USER, "stream": True, "max_tokens": 160, "ignore_eos": True, "temperature": 0}

# Inside the worker: keep every device the shim asks for; once armed, destroy the newest right
# after the worker posts the `loseAfter`-th stream chunk (more chunks are still to come).
HOOK = """() => {
  const hook = self.__deviceLossHook = {devices: [], loseAfter: null, chunks: 0, lost: false};
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    hook.devices.push(device);
    return device;
  };
  const post = self.postMessage.bind(self);
  self.postMessage = (message, ...rest) => {
    post(message, ...rest);
    const isChunk = message && message.kind === "return" && message.content && message.content.chunk;
    if (hook.loseAfter === null || !isChunk) return;
    hook.chunks += 1;
    if (hook.chunks === hook.loseAfter) {
      hook.loseAfter = null;
      hook.lost = true;
      hook.devices[hook.devices.length - 1].destroy();
    }
  };
}"""

# Read one stream to its end (or its error) within a deadline; the text and how it ended.
STREAM = """async (request) => {
  let text = "", chunks = 0, finish = null, error = null;
  try {
    const stream = await within(engine.chat.completions.create(request), 30000, "stream init");
    await within((async () => {
      for await (const c of stream) {
        chunks += 1;
        if (!c.choices.length) continue;
        text += c.choices[0].delta.content || "";
        finish = c.choices[0].finish_reason || finish;
      }
    })(), 60000, "stream");
  } catch (e) { error = describeError(e); }
  return {text, chunks, finish, error};
}"""

NEXT_REQUEST = """async (messages) => {
  try {
    await within(engine.chat.completions.create({messages, max_tokens: 4}), 20000, "request after the loss");
    return null;
  } catch (e) { return describeError(e); }
}"""


def _start_engine(g: Guarded) -> Any:
    """An engine over a fresh worker with the loss hook installed before any device exists."""
    g.open("bare.html")
    with g.page.expect_worker() as info:
        g.js("async () => { window.engine = await PyWorker.createEngine({}); }")
    worker = info.value
    worker.evaluate(HOOK)
    return worker


def test_device_lost_mid_stream_fails_the_stream_and_a_reload_recovers(guarded: Guarded) -> None:
    worker = _start_engine(guarded)
    guarded.js("async (model) => { await within(engine.reload(model), 120000, 'reload'); }", TINY)
    reference = guarded.js(STREAM, REQUEST)
    assert reference["error"] is None, reference["error"]
    assert reference["finish"] == "length", reference

    worker.evaluate("() => { self.__deviceLossHook.loseAfter = 2; }")
    lost = guarded.js(STREAM, REQUEST)
    print(f"device lost after 2 chunks: {lost['chunks']}/{reference['chunks']} chunks, then {lost['error']}")
    assert worker.evaluate("() => self.__deviceLossHook.lost"), "the device was never destroyed"
    error = lost["error"]
    assert error is not None, f"the stream ended quietly: {lost}"
    assert not error["message"].startswith("timed out"), error  # a hang
    assert error["name"] == "DeviceLostError", error
    assert error["isPyWorkerError"], error
    assert "reload" in error["message"].lower(), error
    assert lost["finish"] is None
    assert lost["chunks"] >= 2  # (greedy: what arrived is the start of the reference answer)
    assert reference["text"].startswith(lost["text"]), (lost["text"], reference["text"])
    assert len(lost["text"]) < len(reference["text"]), "the stream was not cut short by the loss"

    # The lock was freed: the next request on the lost model is answered (not queued forever).
    after = guarded.js(NEXT_REQUEST, USER)
    assert after is not None, after
    assert after["name"] == "DeviceLostError", after

    guarded.js("async (model) => { await within(engine.reload(model), 120000, 'reload again'); }", TINY)
    devices = worker.evaluate("() => self.__deviceLossHook.devices.length")
    assert devices == 2, "the reload reused the lost device"
    again = guarded.js(STREAM, REQUEST)
    assert again["error"] is None, again["error"]
    assert again["finish"] == "length"
    assert again["text"] == reference["text"], "greedy text differs after the reload"
