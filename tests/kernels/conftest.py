"""Fixtures over tests/kernels/runners.py: the same scenario on lavapipe (Deno) and SwiftShader
(Chromium); a runner that is not installed skips its tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tools.kernel_runners import ChromiumHarness, Runner, Unavailable, chromium_page, deno_run


def _deno(scenario: dict[str, Any]) -> dict[str, Any]:
    try:
        return deno_run(scenario)
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def playwright_sync() -> Iterator[Any]:
    """One sync playwright for the whole session (a second one in the same thread is refused)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def chromium(playwright_sync: Any) -> Iterator[ChromiumHarness]:
    """A page shared by the kernel tests (its profile, and so its caches, live for the session)."""
    try:
        with chromium_page(playwright_sync) as harness:
            yield harness
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def fresh_chromium(playwright_sync: Any) -> Callable[[], AbstractContextManager[ChromiumHarness]]:
    """A factory of pages with fresh profiles (empty caches), for the loader tests."""
    return lambda: chromium_page(playwright_sync)


def _deno_gpu_kernels(scenario: dict[str, Any]) -> dict[str, Any]:
    """Deno with the kernels meant for real GPUs (split-K GEMVs), checked here on lavapipe."""
    return _deno({**scenario, "options": {**scenario.get("options", {}), "kernels": "gpu"}})


@pytest.fixture(params=["deno", "chromium", "deno-gpu-kernels"])
def runner(request: pytest.FixtureRequest) -> Runner:
    """The same scenario on lavapipe (Deno) and on SwiftShader (Chromium)."""
    if request.param == "deno":
        return _deno
    if request.param == "deno-gpu-kernels":
        return _deno_gpu_kernels
    harness: ChromiumHarness = request.getfixturevalue("chromium")
    return harness.run
