"""Build an offline JupyterLite site (site/lite) with the Pyodide kernel, py_worker and the demo.

``jupyter lite build`` downloads nothing when ``static/pyodide`` in the lite dir holds a full
Pyodide distribution, so this tool puts ours there (tools/pyodide_dist.py: the npm core, our
lock, and every wheel the kernel installs at start — ipython, comm, jedi and their trees),
turns the PyPI fallback off, adds the py_worker wheel to piplite's index and the example
notebook to the contents. The site lives in site/lite, under the main site (tools/site.py),
whose kernel shim, app config and models the notebook loads from ``../``.

    python tools/jupyterlite_site.py [--out site/lite]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.pyodide_dist import CACHE, assemble, build_own_wheel

ROOT = Path(__file__).resolve().parent.parent

LITE_DIR = ROOT / ".cache" / "jupyterlite" / "lite"
NOTEBOOKS = ROOT / "static" / "notebooks"
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"


def write_lite_dir(lite: Path, pyodide_dir: Path) -> None:
    """The lite dir ``jupyter lite build`` reads: our Pyodide and the kernel's settings."""
    if lite.exists():
        shutil.rmtree(lite)
    (lite / "static").mkdir(parents=True)
    shutil.copytree(pyodide_dir, lite / "static" / "pyodide")
    config = {
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {
            "appName": "py_worker lite",
            "exposeAppInBrowser": "true",
            "litePluginSettings": {KERNEL_PLUGIN: {"disablePyPIFallback": True}},
        },
    }
    (lite / "jupyter-lite.json").write_text(json.dumps(config, indent=2) + "\n")


def build_site(out: Path, wheel: Path | None = None) -> dict[str, float]:
    """Build ``out``; returns the seconds each step took."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    own = wheel or build_own_wheel(CACHE / "own")
    pyodide_dir = CACHE / "lite_pyodide"
    assemble(pyodide_dir, own, ["core", "kernel"], [])
    timings["pyodide_dist_s"] = time.monotonic() - t0

    t1 = time.monotonic()
    write_lite_dir(LITE_DIR, pyodide_dir)
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        sys.executable, "-m", "jupyter", "lite", "build",
        "--lite-dir", str(LITE_DIR), "--output-dir", str(out),
        "--contents", str(NOTEBOOKS), "--piplite-wheels", str(own), "--no-sourcemaps",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=LITE_DIR, stdout=subprocess.DEVNULL)
    timings["jupyter_lite_build_s"] = time.monotonic() - t1

    check_offline(out)
    timings["total_s"] = time.monotonic() - t0
    return timings


def check_offline(out: Path) -> None:
    """The kernel must load our Pyodide from the site and never fall back to PyPI."""
    config = json.loads((out / "jupyter-lite.json").read_text())["jupyter-config-data"]
    settings = config["litePluginSettings"][KERNEL_PLUGIN]
    if settings.get("pyodideUrl") != "./static/pyodide/pyodide.mjs":
        raise SystemExit(f"the site does not use the local Pyodide: {settings.get('pyodideUrl')!r}")
    if settings.get("disablePyPIFallback") is not True:
        raise SystemExit("the PyPI fallback is not disabled")
    lock = json.loads((out / "static" / "pyodide" / "pyodide-lock.json").read_text())
    missing = [p["file_name"] for p in lock["packages"].values()
               if not (out / "static" / "pyodide" / p["file_name"]).exists()]  # fmt: skip
    if missing:
        raise SystemExit(f"lock entries without files: {missing}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "site" / "lite")
    ap.add_argument("--wheel", type=Path, help="py_worker wheel to include (default: build one)")
    args = ap.parse_args(argv)
    timings = build_site(args.out.resolve(), args.wheel.resolve() if args.wheel else None)
    print(f"{args.out}: built in {timings['total_s']:.1f} s ({json.dumps(timings)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
