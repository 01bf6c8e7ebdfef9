"""Markers of the JupyterLite suite."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: the notebook on the real models (SmolLM2, MiniLM); a minute")
