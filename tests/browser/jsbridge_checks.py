# Runs inside Pyodide (see node_jsbridge.mjs): main(shim) drives JsKernels over the recording
# shim and returns what came back, as JSON, for test_jsbridge.py to check.
import json
from typing import Any

from py_worker.jsbridge import JsKernels
from py_worker.kernels import SamplingParams


async def main(shim: Any) -> str:
    k = JsKernels(shim)
    seen = []
    loaded = await k.load({"model_id": "m", "model": "http://127.0.0.1/m/", "overrides": {"a": 1}},
                          lambda f, t: seen.append([f, t]))
    ids = await k.tokenize(loaded.handle, "héllo")
    text = await k.detokenize(loaded.handle, [1, 2, 3])
    await k.prefill(loaded.handle, ids)
    await k.decode(loaded.handle, 4)
    params = SamplingParams(temperature=0.5, logit_bias={3: -1.0}, history=[1, 2], uniforms=[0.25, 0.75],
                            logprobs=True, top_logprobs=2)
    one = await k.sample(loaded.handle, params)
    many = await k.decode_steps(loaded.handle, 2, params)
    await k.rewind(loaded.handle, 3)
    await k.reset(loaded.handle)
    vectors = await k.embed(loaded.handle, [[1, 2, 3], [4]])
    stats = await k.stats(loaded.handle)
    device = await k.device_info()
    await k.unload(loaded.handle)
    raised = []
    for bad in (99, 98):
        try:
            await k.reset(bad)
        except Exception as exc:
            raised.append([type(exc).__name__, str(exc), getattr(exc, "fields", None)])
    return json.dumps({
        "handle": loaded.handle, "config": loaded.config, "progress": seen, "ids": ids, "text": text,
        "one": [one.token, one.logprob, one.top_logprobs], "many": [s.token for s in many],
        "vectors": vectors, "stats": stats, "raised": raised, "device": device,
        "types": [type(ids).__name__, type(vectors[0][0]).__name__, type(loaded.config).__name__],
    })
