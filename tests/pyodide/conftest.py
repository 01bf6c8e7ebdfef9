"""pytest-pyodide setup: an offline Chromium, and helpers shared by the in-Pyodide tests.

Run through tests/pyodide/run.sh, which assembles dist/pyodide first (tools/pyodide_dist.py)
and passes ``--dist-dir dist/pyodide --runtime node,chrome``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_pyodide
from pytest_pyodide import get_global_config
from pytest_pyodide.runner import _BrowserBaseRunner

# pytest-pyodide's script timeout (20 s per call into the runtime) fails sound tests on a loaded
# machine (selenium "script timeout"); here it is only a guard against a hang, not a speed limit.
# A test that needs a bound of its own says so with @pytest.mark.driver_timeout(seconds).
HANG_GUARD_S = 600
_BrowserBaseRunner.script_timeout = HANG_GUARD_S

# pytest-pyodide's node driver is a CommonJS script, but node would read it as an ES module
# because the nearest package.json above the venv (the project's) says "type": "module".
_driver_pkg = Path(pytest_pyodide.__file__).parent / "package.json"
if not _driver_pkg.exists():
    _driver_pkg.write_text('{"type": "commonjs"}\n')

# Chromium must not talk to anything but the test server on 127.0.0.1.
_config = get_global_config()
_config.set_flags(
    "chrome",
    [
        *_config.get_flags("chrome"),
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
    ],
)


@pytest.fixture(scope="session")
def own_wheel(request: pytest.FixtureRequest) -> str:
    """File name of the py_worker wheel in the dist dir, read from its lock."""
    dist = Path(request.config.option.dist_dir)
    lock = json.loads((dist / "pyodide-lock.json").read_text())
    return str(lock["packages"]["py-worker"]["file_name"])
