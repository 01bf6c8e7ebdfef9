"""Fixtures over tests/kernels/runners.py: the same scenario on lavapipe (Deno) and SwiftShader
(Chromium); a runner that is not installed skips its tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kernels.runners import ChromiumHarness, Runner, Unavailable, chromium_page, deno_run


def _deno(scenario: dict[str, Any]) -> dict[str, Any]:
    try:
        return deno_run(scenario)
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def chromium() -> Iterator[ChromiumHarness]:
    try:
        with chromium_page() as harness:
            yield harness
    except Unavailable as e:
        pytest.skip(str(e))


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
