"""Running a coroutine from a test whose thread already has an event loop.

Playwright's sync API keeps an event loop in the test's thread, so a coroutine the test needs
(the NumPy reference engine, say) runs to completion on a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a fresh thread; its result or its exception."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
