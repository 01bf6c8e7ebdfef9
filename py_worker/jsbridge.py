"""The Python face of the JS kernel shim (runs only inside Pyodide).

``JsKernels(shim)`` implements the ``Kernels`` protocol by awaiting the shim's promise-returning
methods (docs/CONTRACTS.md). Arguments go over as plain JS values (``to_js``, never as PyProxies
the JS side could keep), results come back as plain Python values (``to_py``), and the one
callable we hand over — the load progress callback — is destroyed as soon as the load settles,
so nothing from either side stays alive across the boundary. A shim error whose ``name`` is a
py_worker error class (js_glue/kernels/errors.js) is re-raised as that class with its fields.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from pyodide.ffi import JsException, create_proxy, jsnull, to_js

from py_worker.errors import _REGISTRY, error_from_dict
from py_worker.kernels import LoadedModel, ProgressFn, Sampled, SamplingParams


def _js(value: Any) -> Any:
    """Plain data to JS: dicts become Objects (not Maps), no PyProxy is ever created."""
    from js import Object

    return to_js(value, dict_converter=Object.fromEntries, create_pyproxies=False)


def _py(value: Any) -> Any:
    """A JS result to plain Python data: typed arrays become lists, objects become dicts."""
    if hasattr(value, "to_py"):
        value = value.to_py()
    if isinstance(value, memoryview):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _py(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_py(v) for v in value]
    return value


def _samples(value: Any) -> Any:
    """Sample results are plain objects of numbers and plain arrays: one ``to_py`` converts them
    whole (no typed arrays to unpack), which keeps the per-batch cost of the decode loop down."""
    return value.to_py() if hasattr(value, "to_py") else value


async def _call(pending: Awaitable[Any]) -> Any:
    """Await a shim promise; a named shim error becomes the py_worker class of that name."""
    try:
        return await pending
    except JsException as exc:
        name = str(getattr(exc, "name", ""))
        if name not in _REGISTRY:
            raise
        fields = _py(getattr(exc.js_error, "fields", None)) or {}
        raise error_from_dict({"name": name, "message": str(exc.message), "fields": fields}) from exc


class JsKernels:
    """``Kernels`` over a JS shim object (``createKernels()`` in js_glue/kernels)."""

    def __init__(self, shim: Any) -> None:
        self._shim = shim
        self.remote = JsRemote(shim)
        """The shim's request-level API for remote models (the engine finds it here)."""

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel:
        callback = create_proxy(lambda fraction, text: progress(float(fraction), str(text)))
        try:
            raw = _py(await _call(self._shim.load(_js(record), callback)))
        finally:
            callback.destroy()
        return LoadedModel(int(raw["handle"]), dict(raw.get("config") or {}))

    async def unload(self, handle: int) -> None:
        await _call(self._shim.unload(handle))

    async def tokenize(self, handle: int, text: str) -> list[int]:
        return [int(t) for t in _py(await _call(self._shim.tokenize(handle, text)))]

    async def detokenize(self, handle: int, ids: list[int]) -> str:
        return str(await _call(self._shim.detokenize(handle, _js(list(ids)))))

    async def prefill(self, handle: int, ids: list[int]) -> None:
        await _call(self._shim.prefill(handle, _js(list(ids))))

    async def decode(self, handle: int, token: int) -> None:
        await _call(self._shim.decode(handle, int(token)))

    async def sample(self, handle: int, params: SamplingParams) -> Sampled:
        return Sampled.from_wire(_samples(await _call(self._shim.sample(handle, _js(params.to_wire())))))

    async def decode_steps(self, handle: int, n: int, params: SamplingParams) -> list[Sampled]:
        raw = _samples(await _call(self._shim.decodeSteps(handle, int(n), _js(params.to_wire()))))
        return [Sampled.from_wire(r) for r in raw]

    async def rewind(self, handle: int, length: int) -> None:
        await _call(self._shim.rewind(handle, int(length)))

    async def reset(self, handle: int) -> None:
        await _call(self._shim.reset(handle))

    async def open_grammar(self, handle: int, spec: dict[str, Any]) -> int:
        return int(await _call(self._shim.openGrammar(handle, _js(spec))))

    async def close_grammar(self, handle: int, grammar: int) -> None:
        await _call(self._shim.closeGrammar(handle, int(grammar)))

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]:
        raw = _py(await _call(self._shim.embed(handle, _js([list(row) for row in batch]))))
        return [[float(x) for x in row] for row in raw]

    async def stats(self, handle: int) -> dict[str, Any]:
        return dict(_py(await _call(self._shim.stats(handle))))

    async def device_info(self) -> dict[str, Any]:
        return dict(_py(await _call(self._shim.deviceInfo())))


def _json(text: Any) -> Any:
    """A reply's JSON text (checked by remote.js) as plain Python data; None for JS's null."""
    return None if text is None or text is jsnull else json.loads(str(text))


class JsRemote:
    """``remote.Transport`` over the shim's ``remoteOpen`` … (js_glue/kernels/remote.js)."""

    def __init__(self, shim: Any) -> None:
        self._shim = shim

    def open(self, record: dict[str, Any], path: str, body: dict[str, Any]) -> int:
        return int(self._shim.remoteOpen(_js(record), path, _js(body)))

    async def next(self, request_id: int) -> Any:
        return _json(await _call(self._shim.remoteNext(request_id)))

    async def result(self, request_id: int) -> Any:
        return _json(await _call(self._shim.remoteResult(request_id)))

    def abort(self, request_id: int) -> None:
        self._shim.remoteAbort(request_id)
