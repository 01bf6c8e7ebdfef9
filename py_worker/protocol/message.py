"""A worker message as plain Python data: read without recursion, within bounds.

``postMessage`` carries what the structured clone allows: cycles, nesting thousands of levels
deep, payloads of any size. The handler speaks JSON-shaped data, so every message goes through
``plain_message`` first, inside the handler's error path: a message that cannot be read
gets its one ``throw`` (``MalformedMessageError`` with ``fields.reason``) instead of an
exception outside the handler (``RecursionError`` from a recursive walk), and nothing after
the handler ever meets a cycle or a nesting deeper than ``MAX_DEPTH``.

The walk is iterative (an explicit stack), copies dicts and lists, maps the transport's null
(``pyodide.ffi.jsnull`` in the worker) to None and keeps any other value as it is (numbers,
strings, and opaque values such as a JS ``Date`` proxy, which request validation then refuses
where a field needs a type).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import MalformedMessageError

MAX_DEPTH = 64
"""Deepest container level accepted; the envelope is level 0 (a request's JSON schema nests well
within this)."""
MAX_ITEMS = 1_000_000
"""Most dict entries and list items in one message, all levels together (a message that shares
one object many times is counted as the tree it unfolds into)."""
MAX_TEXT = 256 * 1024 * 1024
"""Most characters in one message's strings, keys included."""

_PRIMITIVES = (str, int, float, bool, type(None))


def reason(kind: str, message: str, **fields: Any) -> MalformedMessageError:
    return MalformedMessageError(message, reason=kind, **fields)


class _Budget:
    def __init__(self) -> None:
        self.items = 0
        self.text = 0

    def item(self) -> None:
        self.items += 1
        if self.items > MAX_ITEMS:
            raise reason("size", f"The message has more than {MAX_ITEMS} items.", limit=MAX_ITEMS)

    def string(self, value: str) -> None:
        self.text += len(value)
        if self.text > MAX_TEXT:
            raise reason("size", f"The message's strings exceed {MAX_TEXT} characters.", limit=MAX_TEXT)


def plain_message(value: Any, null: object = None) -> Any:
    """``value`` copied into dicts, lists and scalars; raises ``MalformedMessageError`` with
    ``reason`` "cycle", "depth" or "size" (and ``limit``) for a message past the bounds."""
    budget = _Budget()
    root, items = _start(value, 0, null, budget)
    if items is None:
        return root
    # Frames: (id of the source container, its copy, an iterator over its entries, its depth).
    stack: list[tuple[int, Any, Iterator[Any], int]] = [(id(value), root, items, 0)]
    on_path = {id(value)}
    while stack:
        source, copy, entries, depth = stack[-1]
        entry = next(entries, _DONE)
        if entry is _DONE:
            stack.pop()
            on_path.discard(source)
            continue
        budget.item()
        key: Any = None
        child: Any = entry
        if isinstance(copy, dict):
            key, child = entry  # type: ignore[misc]
            if key is null:
                key = None
            if isinstance(key, str):
                budget.string(key)
        if id(child) in on_path and isinstance(child, dict | list | tuple):
            raise reason("cycle", "The message contains a cycle (an object inside itself).", depth=depth + 1)
        converted, child_entries = _start(child, depth + 1, null, budget)
        if isinstance(copy, dict):
            copy[key] = converted
        else:
            copy.append(converted)
        if child_entries is not None:
            stack.append((id(child), converted, child_entries, depth + 1))
            on_path.add(id(child))
    return root


_DONE = object()


def _start(value: Any, depth: int, null: object, budget: _Budget) -> tuple[Any, Iterator[Any] | None]:
    """The copy of ``value`` (empty for a container) and an iterator over the entries to fill in."""
    if value is null:
        return None, None
    if isinstance(value, str):
        budget.string(value)
        return value, None
    if isinstance(value, _PRIMITIVES):
        return value, None
    if depth > MAX_DEPTH:
        # A container, or a value the transport left unconverted at its depth limit.
        raise reason("depth", f"The message nests deeper than {MAX_DEPTH} levels.", limit=MAX_DEPTH)
    if isinstance(value, dict):
        return {}, iter(list(value.items()))
    if isinstance(value, list | tuple):
        return [], iter(list(value))
    return value, None


def message_uuid(value: Any, null: object = None) -> Any:
    """The uuid a reply to ``value`` carries: a string, a number or None (anything else: None)."""
    if not isinstance(value, dict):
        return None
    uuid = value.get("uuid")
    if uuid is null or not isinstance(uuid, str | int | float):
        return None
    return uuid
