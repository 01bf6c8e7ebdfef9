"""One fair FIFO lock per model id, safe under cancellation.

Requests to one model queue in arrival order; requests to different models never wait on each
other. The lock is handed directly to the next waiter on release (no barging), so order is
strict FIFO. Only ``asyncio`` futures are used, so it runs on Pyodide's webloop as on CPython.

Cancellation rules: a cancelled waiter leaves the queue and never takes the lock; a holder
that is cancelled or raises releases on the way out; a waiter cancelled at the very moment the
lock was handed to it passes the lock on to the next waiter.

A holder may ask to hear of every request that starts waiting for its model (``on_waiter``): a
stream uses it to finish its generation without waiting for its reader, so that a request made
by that reader (inside its ``for await``) is served instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType


class _FifoLock:
    """A lock whose release hands ownership straight to the oldest live waiter."""

    def __init__(self) -> None:
        self.locked = False
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if not self.locked and not self.waiters:
            self.locked = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Handed the lock just as we were cancelled: we own it, so pass it on.
                self.release()
            elif fut in self.waiters:  # release() may have skipped it already
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # ownership moves to that waiter; stays locked
                return
        self.locked = False

    def idle(self) -> bool:
        return not self.locked and not self.waiters


class _Hold:
    """``async with`` guard returned by ``ModelLocks.hold``."""

    def __init__(self, owner: ModelLocks, model_id: str) -> None:
        self._owner = owner
        self._model_id = model_id

    async def __aenter__(self) -> None:
        await self._owner._acquire(self._model_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._release(self._model_id)


class ModelLocks:
    """Per-model FIFO locks: ``async with locks.hold(model_id): ...``."""

    def __init__(self) -> None:
        self._locks: dict[str, _FifoLock] = {}
        self._watchers: dict[str, list[Callable[[], None]]] = {}

    def hold(self, model_id: str) -> _Hold:
        """Guard that waits its turn for ``model_id`` and releases on exit, however it exits."""
        return _Hold(self, model_id)

    def is_held(self, model_id: str) -> bool:
        """Whether some request holds ``model_id`` now."""
        lock = self._locks.get(model_id)
        return lock is not None and lock.locked

    def held(self) -> set[str]:
        """The model ids held now."""
        return {m for m, lock in self._locks.items() if lock.locked}

    def waiting(self, model_id: str) -> int:
        """How many requests queue for ``model_id`` (cancelled ones excluded)."""
        lock = self._locks.get(model_id)
        return 0 if lock is None else sum(1 for f in lock.waiters if not f.done())

    def on_waiter(self, model_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever a request starts waiting for ``model_id`` (at once if one
        waits now). Returns the function that stops it."""
        watchers = self._watchers.setdefault(model_id, [])
        watchers.append(callback)
        if self.waiting(model_id):
            callback()

        def stop() -> None:
            if callback in watchers:
                watchers.remove(callback)
            if not watchers and self._watchers.get(model_id) is watchers:
                del self._watchers[model_id]

        return stop

    async def _acquire(self, model_id: str) -> None:
        lock = self._locks.setdefault(model_id, _FifoLock())
        if lock.locked or lock.waiters:
            for callback in list(self._watchers.get(model_id, ())):
                callback()
        try:
            await lock.acquire()
        finally:
            self._forget_if_idle(model_id)

    def _release(self, model_id: str) -> None:
        self._locks[model_id].release()
        self._forget_if_idle(model_id)

    def _forget_if_idle(self, model_id: str) -> None:
        # Drop idle entries so a long session with many model ids does not grow the dict.
        lock = self._locks.get(model_id)
        if lock is not None and lock.idle():
            del self._locks[model_id]
