"""Entry point inside the Pyodide worker: wires the JS kernel shim to the engine and handler.

``js_glue/worker.js`` calls ``start(shim, post)`` once and then passes every message to the
returned function. Replies leave through ``post`` as plain JS objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .engine import MLCEngine
from .handler import Handler
from .jsbridge import JsKernels


def plain(value: Any) -> Any:
    """JS ``null`` arrives as ``pyodide.ffi.jsnull``; the handler speaks JSON, where it is None."""
    from pyodide.ffi import jsnull

    if value is jsnull:
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def start(shim: Any, post: Callable[[Any], None]) -> Callable[[Any], None]:
    """Build the engine over ``shim`` and return the worker's ``on_message(message)``."""
    from js import Object
    from pyodide.ffi import to_js

    handler = Handler(MLCEngine(JsKernels(shim)))
    tasks: set[asyncio.Task[None]] = set()

    def send(reply: dict[str, Any]) -> None:
        post(to_js(reply, dict_converter=Object.fromEntries))

    def on_message(message: Any) -> None:
        data = plain(message.to_py() if hasattr(message, "to_py") else message)
        task = asyncio.ensure_future(handler.handle(data, send))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_message
