"""Per-model FIFO locks: fairness, cancellation at every point, exceptions, models independent."""

from __future__ import annotations

import asyncio
import random

import pytest

from py_worker.locks import ModelLocks


async def settle() -> None:
    """Let every ready task run until all are blocked again."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_fifo_order_with_many_waiters_and_no_barging() -> None:
    async def main() -> list[int]:
        locks = ModelLocks()
        order: list[int] = []
        release = asyncio.Event()

        async def worker(i: int) -> None:
            async with locks.hold("m"):
                order.append(i)
                if i == 0:
                    await release.wait()
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(worker(0))]
        await settle()
        tasks += [asyncio.create_task(worker(i)) for i in range(1, 40)]
        await settle()
        assert locks.is_held("m")
        assert locks.waiting("m") == 39
        release.set()
        # A newcomer arriving while the queue drains must go last (the lock is handed over).
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(worker(99)))
        await asyncio.gather(*tasks)
        assert not locks.is_held("m")
        assert locks.held() == set()
        assert locks.waiting("m") == 0
        return order

    assert asyncio.run(main()) == [*range(40), 99]


def test_mutual_exclusion_per_model_and_models_run_concurrently() -> None:
    async def main() -> None:
        locks = ModelLocks()
        inside: dict[str, int] = {"a": 0, "b": 0}
        peak: dict[str, int] = {"a": 0, "b": 0}
        both_seen = False

        async def worker(model: str) -> None:
            nonlocal both_seen
            async with locks.hold(model):
                inside[model] += 1
                peak[model] = max(peak[model], inside[model])
                await asyncio.sleep(0)
                both_seen = both_seen or locks.held() == {"a", "b"}
                await asyncio.sleep(0)
                inside[model] -= 1

        await asyncio.gather(*(worker(m) for m in ["a", "b"] * 10))
        assert peak == {"a": 1, "b": 1}
        assert both_seen

    asyncio.run(main())


def test_other_model_does_not_wait_for_a_held_one() -> None:
    async def main() -> None:
        locks = ModelLocks()
        async with locks.hold("a"):
            # Would deadlock (and time out) if "b" waited on "a".
            await asyncio.wait_for(_enter_and_leave(locks, "b"), timeout=1.0)
            assert locks.is_held("a")
            assert not locks.is_held("b")

    asyncio.run(main())


async def _enter_and_leave(locks: ModelLocks, model: str) -> None:
    async with locks.hold(model):
        assert locks.is_held(model)


def test_holder_cancelled_releases() -> None:
    async def main() -> None:
        locks = ModelLocks()
        entered = asyncio.Event()

        async def holder() -> None:
            async with locks.hold("m"):
                entered.set()
                await asyncio.Event().wait()  # forever, until cancelled

        task = asyncio.create_task(holder())
        await entered.wait()
        waiter = asyncio.create_task(_enter_and_leave(locks, "m"))
        await settle()
        assert locks.waiting("m") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(waiter, timeout=1.0)
        assert locks.held() == set()

    asyncio.run(main())


def test_exception_inside_releases_and_propagates() -> None:
    async def main() -> None:
        locks = ModelLocks()
        with pytest.raises(RuntimeError, match="kernel failed"):
            async with locks.hold("m"):
                raise RuntimeError("kernel failed")
        assert not locks.is_held("m")
        await asyncio.wait_for(_enter_and_leave(locks, "m"), timeout=1.0)

    asyncio.run(main())


def test_cancelled_waiter_leaves_queue_and_never_enters() -> None:
    async def main() -> None:
        locks = ModelLocks()
        order: list[str] = []
        gate = asyncio.Event()

        async def worker(name: str) -> None:
            async with locks.hold("m"):
                order.append(name)
                if name == "A":
                    await gate.wait()

        a = asyncio.create_task(worker("A"))
        await settle()
        b, c, d = (asyncio.create_task(worker(n)) for n in "BCD")
        await settle()
        assert locks.waiting("m") == 3
        c.cancel()
        await settle()
        assert c.cancelled()
        assert locks.waiting("m") == 2
        gate.set()
        await asyncio.gather(a, b, d)
        assert order == ["A", "B", "D"]
        assert locks.held() == set()

    asyncio.run(main())


def test_waiter_timing_out_leaves_queue() -> None:
    async def main() -> None:
        locks = ModelLocks()
        async with locks.hold("m"):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_enter_and_leave(locks, "m"), timeout=0.01)
            assert locks.waiting("m") == 0
        assert locks.held() == set()

    asyncio.run(main())


def test_cancelled_at_handoff_passes_the_lock_on() -> None:
    async def main() -> None:
        locks = ModelLocks()
        order: list[str] = []
        gate = asyncio.Event()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def worker(name: str) -> None:
            async with locks.hold("m"):
                order.append(name)
                if name == "A":
                    await gate.wait()
            if name == "A":
                # The lock was just handed to B, which has not run yet: cancel it now.
                assert locks.is_held("m")
                tasks["B"].cancel()

        tasks["A"] = asyncio.create_task(worker("A"))
        await settle()
        tasks["B"] = asyncio.create_task(worker("B"))
        tasks["C"] = asyncio.create_task(worker("C"))
        await settle()
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 1.0)
        assert isinstance(results[1], asyncio.CancelledError)
        assert order == ["A", "C"]
        assert locks.held() == set()
        assert locks.waiting("m") == 0

    asyncio.run(main())


def test_release_skips_a_waiter_cancelled_in_the_same_step() -> None:
    async def main() -> None:
        locks = ModelLocks()
        order: list[str] = []
        gate = asyncio.Event()
        tasks: dict[str, asyncio.Task[None]] = {}

        async def worker(name: str) -> None:
            async with locks.hold("m"):
                order.append(name)
                if name == "A":
                    await gate.wait()
                    # B is cancelled before A releases, in the same step: B must be skipped.
                    tasks["B"].cancel()

        tasks["A"] = asyncio.create_task(worker("A"))
        await settle()
        tasks["B"] = asyncio.create_task(worker("B"))
        tasks["C"] = asyncio.create_task(worker("C"))
        await settle()
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 1.0)
        assert order == ["A", "C"]
        assert locks.held() == set()

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(8))
def test_random_cancellations_keep_fifo_and_exclusion(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        locks = ModelLocks()
        inside = {m: 0 for m in "xyz"}
        entered: dict[str, list[int]] = {m: [] for m in "xyz"}
        arrival: dict[str, list[int]] = {m: [] for m in "xyz"}

        async def worker(i: int, model: str, steps: int, fail: bool) -> None:
            arrival[model].append(i)
            async with locks.hold(model):
                inside[model] += 1
                assert inside[model] == 1
                entered[model].append(i)
                try:
                    for _ in range(steps):
                        await asyncio.sleep(0)
                    if fail:
                        raise ValueError(i)
                finally:
                    inside[model] -= 1

        tasks = []
        for i in range(120):
            model = rng.choice("xyz")
            tasks.append(asyncio.create_task(worker(i, model, rng.randrange(4), rng.random() < 0.1)))
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            if tasks and rng.random() < 0.3:
                rng.choice(tasks).cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
        assert locks.held() == set()
        for model in "xyz":
            got = entered[model]
            # Entry order is arrival order restricted to those that entered.
            assert got == [i for i in arrival[model] if i in set(got)]
            assert all(locks.waiting(m) == 0 for m in "xyz")

    asyncio.run(main())
