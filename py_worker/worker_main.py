"""Entry point inside the Pyodide worker: wires the JS kernel shim to the engine and handler.

Every host (the dedicated worker's and the shared and service workers') calls ``start(shim,
post)`` once, through ``startWorkerMain`` in ``js_glue/pyodide-host.js``, and then passes
every message, as it came from ``postMessage``, to the returned function. The message is
converted to Python inside the handler's error path (``Handler.handle``), so a message that
cannot be read (a cycle, nesting past ``protocol.message.MAX_DEPTH``, a payload past the
size bounds) is answered with ``MalformedMessageError`` like any other bad request. Replies
leave through ``post`` as plain JS objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .engine import MLCEngine
from .handler import Handler
from .jsbridge import JsKernels


def decoder() -> Callable[[Any, int], Any]:
    """``decode(message, depth)`` for the handler: a JS value converted down to ``depth``
    levels; deeper objects stay JS proxies, which the handler refuses as too deep."""
    from js import Object
    from pyodide.ffi import JsProxy

    to_string = Object.prototype.toString

    def plain_object(value: Any, convert: Any, cache: Any) -> Any:
        # to_py converts an object only when its `constructor` is Object's, so a request with
        # its own `constructor` field would stay a proxy ("request must be an object"). Any
        # "[object Object]" that postMessage delivers is a plain object: convert it as one.
        if to_string.call(value) != "[object Object]":
            return value
        out: dict[Any, Any] = {}
        cache(value, out)
        for pair in Object.entries(value):
            item = pair[1]
            out[pair[0]] = convert(item) if isinstance(item, JsProxy) else item
        return out

    def decode(message: Any, depth: int) -> Any:
        if isinstance(message, JsProxy):
            return message.to_py(depth=depth, default_converter=plain_object)
        return message

    return decode


def start(shim: Any, post: Callable[[Any], None]) -> Callable[[Any], None]:
    """Build the engine over ``shim`` and return the worker's ``on_message(message)``."""
    from js import Object
    from pyodide.ffi import jsnull, to_js

    handler = Handler(MLCEngine(JsKernels(shim)), decode=decoder(), null=jsnull)
    tasks: set[asyncio.Task[None]] = set()

    def send(reply: dict[str, Any]) -> None:
        post(to_js(reply, dict_converter=Object.fromEntries))

    def on_message(message: Any) -> None:
        task = asyncio.ensure_future(handler.handle(message, send))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_message
