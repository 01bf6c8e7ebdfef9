"""The py_worker wheel installs with micropip from a local URL, in a fresh Pyodide, offline."""

from __future__ import annotations

from typing import Any

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["micropip"])
async def _install(selenium: Any, url: str) -> dict[str, Any]:
    import importlib
    import importlib.metadata
    import sys

    import micropip

    assert "py_worker" not in sys.modules
    await micropip.install(url)
    import py_worker

    # Every module of the package imports, except the host-only NumPy reference backend.
    modules = []
    for dist_file in importlib.metadata.files("py_worker") or []:
        parts = dist_file.with_suffix("").parts
        if dist_file.suffix == ".py" and parts[0] == "py_worker" and "reference" not in parts:
            name = ".".join(p for p in parts if p != "__init__")
            importlib.import_module(name)
            modules.append(name)
    return {
        "version": importlib.metadata.version("py_worker"),
        "module_version": py_worker.__version__,
        "file": py_worker.__file__,
        "modules": sorted(modules),
        "installed": {p.name for p in micropip.list().values()} & {"py-worker", "py_worker"},
    }


def test_micropip_installs_wheel_from_local_url(selenium_standalone: Any, own_wheel: str) -> None:
    url = f"{selenium_standalone.base_url}/{own_wheel}"
    assert url.startswith("http://127.0.0.1:")
    got = _install(selenium_standalone, url)
    version = own_wheel.split("-")[1]
    assert got["version"] == got["module_version"] == version
    assert got["file"].startswith("/lib/python3.14/site-packages/py_worker/")
    assert {"py_worker", "py_worker.errors", "py_worker.kernels", "py_worker.jsbridge"} <= set(got["modules"])
    assert got["installed"]
