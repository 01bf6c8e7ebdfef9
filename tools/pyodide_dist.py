"""Assemble an offline Pyodide distribution directory.

The npm ``pyodide`` package holds only the core, and its ``pyodide-lock.json`` points at a CDN
whose rebuilt wheels no machine here can reach (and whose sha256 values do not match PyPI's).
So this tool writes a distribution of real files only: the npm core, pure-Python wheels from
PyPI (``pip download --no-deps --only-binary=:all: --python-version 3.14 --platform any``: without
the platform, pip prefers a compiled wheel for the host where a pure one also exists), the py_worker
wheel, and a lock of our own whose ``sha256`` matches those files and whose ``depends`` come
from each wheel's METADATA evaluated for Emscripten / Python 3.14. The roots are the consumer
groups below plus py_worker's own ``dependencies`` (jinja2, and so markupsafe).

A package on ``PURE_FROM_SDIST`` has no pure wheel on PyPI, only compiled ones and an sdist whose
C extension is optional: its wheel is built here from the sdist with the C compiler disabled
(``CC=false``), so the build's own fallback leaves the extension out, and it is then checked to be
tagged ``py3-none-any``, to hold no compiled file, and to import from the wheel alone. Downloads
and built wheels are cached under ``.cache/pyodide_dist`` so a second run needs no network.

    python tools/pyodide_dist.py --out dist/pyodide [--wheel path/to/py_worker.whl]
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tools.digest import sha256_file

ROOT = Path(__file__).resolve().parent.parent
NPM_PYODIDE = ROOT / "node_modules" / "pyodide"
CACHE = ROOT / ".cache" / "pyodide_dist"
PYTHON_VERSION = "3.14"
PYTHON_FULL_VERSION = "3.14.2"

# What each consumer loads inside Pyodide. pytest-pyodide loads pytest (for assertion rewriting,
# and its major version must match the host's) and tblib; the JupyterLite kernel installs
# ipykernel, comm, pyodide-kernel, jedi and ipython (the first and third come from its own wheels).
GROUPS: dict[str, list[str]] = {
    "core": ["micropip", "packaging"],
    "pytest": ["pytest<9", "tblib"],
    "kernel": ["ipython", "comm", "jedi"],
}

# Names built from their sdist into a pure wheel (see the module docstring), and why that is sound.
PURE_FROM_SDIST: dict[str, str] = {
    "markupsafe": "setup.py retries without markupsafe._speedups when compiling it fails; "
    "markupsafe/__init__.py then imports the same functions from markupsafe._native",
}
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll", ".wasm")

# PEP 508 environment of Pyodide 314 in a browser or node.
EMSCRIPTEN_ENV: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": PYTHON_FULL_VERSION,
    "os_name": "posix",
    "platform_machine": "wasm32",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Emscripten",
    "platform_version": "",
    "python_full_version": PYTHON_FULL_VERSION,
    "python_version": PYTHON_VERSION,
    "sys_platform": "emscripten",
}

# Core files copied from the npm package; its own lock is replaced by ours.
CORE_FILES = (
    "package.json",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "pyodide.mjs",
    "pyodide.js",
    "pyodide.mjs.map",
    "pyodide.js.map",
    "pyodide.d.ts",
    "ffi.d.ts",
    "python_stdlib.zip",
    "console.html",
    "console-v2.html",
)


@dataclass
class Wheel:
    """One wheel file and what its METADATA says."""

    path: Path
    name: NormalizedName
    version: Version
    requires: list[Requirement]
    requires_python: SpecifierSet
    imports: list[str]
    extras: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, path: Path) -> Wheel:
        name, version, _, _ = parse_wheel_filename(path.name)
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            meta_name = next(n for n in names if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8"))
            top_level = next((n for n in names if n.endswith(".dist-info/top_level.txt")), None)
            imports = (
                [s.strip() for s in zf.read(top_level).decode().splitlines() if s.strip()]
                if top_level
                else _imports_from_names(names)
            )
        return cls(
            path=path,
            name=name,
            version=version,
            requires=[Requirement(r) for r in meta.get_all("Requires-Dist") or []],
            requires_python=SpecifierSet(meta.get("Requires-Python") or ""),
            imports=imports,
        )

    def depends(self) -> list[Requirement]:
        """Requirements that hold under Emscripten for the extras asked of this wheel."""
        out = []
        for req in self.requires:
            if req.marker is None or any(
                _marker_holds(req.marker, extra) for extra in ["", *sorted(self.extras)]
            ):
                out.append(req)
        return out


def _marker_holds(marker: Marker, extra: str) -> bool:
    return marker.evaluate({**EMSCRIPTEN_ENV, "extra": extra})


def _imports_from_names(names: list[str]) -> list[str]:
    """Top-level importable names of a wheel without top_level.txt, from its file list."""
    found: set[str] = set()
    for n in names:
        head = n.split("/", 1)[0]
        if head.endswith((".dist-info", ".data")) or head == "__pycache__":
            continue
        if "/" in n:
            found.add(head)
        elif head.endswith(".py"):
            found.add(head[:-3])
    return sorted(x for x in found if x.isidentifier())



class Resolver:
    """Picks one pure-Python wheel per name that satisfies every requirement seen for it.

    Cached wheels are preferred, so a rerun is offline; PyPI is asked only for a name with no
    cached wheel that fits.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.cache.mkdir(parents=True, exist_ok=True)

    def _cached(self, name: NormalizedName, spec: SpecifierSet) -> Wheel | None:
        best: Wheel | None = None
        for path in self.cache.glob("*.whl"):
            wname, version, _, tags = parse_wheel_filename(path.name)
            if wname != name or not spec.contains(version, prereleases=True):
                continue
            if not any(t.platform == "any" for t in tags):
                continue
            if best is None or version > best.version:
                wheel = Wheel.read(path)
                if wheel.requires_python.contains(PYTHON_FULL_VERSION, prereleases=True):
                    best = wheel
        return best

    def _download(self, name: NormalizedName, spec: SpecifierSet) -> None:
        if name in PURE_FROM_SDIST:
            self._build_pure(name, spec)
            return
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--platform", "any",
            "--dest", str(self.cache), f"{name}{spec}",
        ]  # fmt: skip
        subprocess.run(cmd, check=True)

    def _build_pure(self, name: NormalizedName, spec: SpecifierSet) -> None:
        """Build a pure wheel of ``name`` from PyPI's sdist, check it, and put it in the cache."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            cmd = [
                sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--no-cache-dir", f"--no-binary={name}", "--wheel-dir", str(out),
                f"{name}{spec}",
            ]  # fmt: skip
            if importlib.util.find_spec("setuptools") is not None:
                cmd.insert(4, "--no-build-isolation")  # the host's setuptools: no download
            # No compiler: an optional C extension fails to build and is left out. A fixed
            # SOURCE_DATE_EPOCH makes the wheel's bytes (and so its lock sha256) reproducible.
            env = {**os.environ, "CC": "false", "CXX": "false", "LDSHARED": "false",
                   "SOURCE_DATE_EPOCH": "315532800"}  # fmt: skip
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            (built,) = out.glob("*.whl")
            check_pure_wheel(built)
            shutil.move(built, self.cache / built.name)

    def pick(self, name: NormalizedName, spec: SpecifierSet) -> Wheel:
        wheel = self._cached(name, spec)
        if wheel is None:
            self._download(name, spec)
            wheel = self._cached(name, spec)
        if wheel is None:
            raise SystemExit(f"no pure-Python wheel of {name}{spec} for Python {PYTHON_VERSION}")
        return wheel

    def resolve(self, roots: list[Requirement]) -> dict[NormalizedName, Wheel]:
        """The closure of ``roots`` under Emscripten markers, one wheel per name."""
        specs: dict[NormalizedName, SpecifierSet] = {}
        extras: dict[NormalizedName, set[str]] = {}
        picked: dict[NormalizedName, Wheel] = {}
        pending = list(roots)
        while pending:
            req = pending.pop()
            name = canonicalize_name(req.name)
            before = (specs.get(name), set(extras.get(name, set())))
            specs[name] = specs.get(name, SpecifierSet()) & req.specifier
            extras.setdefault(name, set()).update(req.extras)
            if name in picked and before == (specs[name], extras[name]):
                continue
            wheel = picked.get(name)
            if wheel is None or not specs[name].contains(wheel.version, prereleases=True):
                wheel = self.pick(name, specs[name])
            wheel.extras = set(extras[name])
            picked[name] = wheel
            pending.extend(wheel.depends())
        return picked


def check_pure_wheel(path: Path) -> None:
    """A wheel is pure: tagged ``py3-none-any``, no compiled file, and its top-level modules
    import from the wheel alone (an isolated interpreter without site-packages)."""
    _, _, _, tags = parse_wheel_filename(path.name)
    if {(t.interpreter, t.abi, t.platform) for t in tags} != {("py3", "none", "any")}:
        raise SystemExit(f"{path.name}: not tagged py3-none-any")
    with zipfile.ZipFile(path) as zf:
        compiled = [n for n in zf.namelist() if n.endswith(COMPILED_SUFFIXES)]
    if compiled:
        raise SystemExit(f"{path.name}: holds compiled files {compiled}")
    probe = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1])\n"
        "for name in sys.argv[2:]:\n"
        "    m = importlib.import_module(name)\n"
        "    assert m.__file__.startswith(sys.argv[1]), (name, m.__file__)\n"
    )
    imports = Wheel.read(path).imports
    subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(path), *imports], check=True)


def build_own_wheel(dest: Path) -> Path:
    """Build the py_worker wheel from a copy of this checkout's package files.

    A copy keeps build litter out of the shared checkout and lets the build run before the
    README exists (hatchling refuses a missing readme). No isolation when hatchling is here,
    so the build needs no network.
    """
    if dest.exists():
        shutil.rmtree(dest)
    src = dest / "src"
    shutil.copytree(ROOT / "py_worker", src / "py_worker", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copyfile(ROOT / name, src / name)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("py_worker\n")
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dest), str(src)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-isolation")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (wheel,) = dest.glob("py_worker-*.whl")
    return wheel


def lock_entry(wheel: Wheel, known: set[NormalizedName]) -> dict[str, object]:
    """One package of pyodide-lock.json; the file sits next to the lock."""
    depends = sorted({canonicalize_name(r.name) for r in wheel.depends()} & known)
    return {
        "name": wheel.name,
        "version": str(wheel.version),
        "file_name": wheel.path.name,
        "install_dir": "site",
        "sha256": sha256_file(wheel.path),
        "package_type": "package",
        "imports": wheel.imports,
        "depends": depends,
        "unvendored_tests": False,
        "tool": {},
    }


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and sha256_file(dst) == sha256_file(src):
        return
    shutil.copyfile(src, dst)


def assemble(out: Path, own_wheel: Path, groups: list[str], extra: list[str]) -> dict[str, object]:
    """Write the distribution into ``out``; returns the lock it wrote."""
    own = Wheel.read(own_wheel)
    roots = [Requirement(r) for g in groups for r in GROUPS[g]] + [Requirement(r) for r in extra]
    wheels = Resolver(CACHE / "wheels").resolve(roots + own.depends())
    if own.name in wheels:
        raise SystemExit(f"{own.name} is both a dependency and the local wheel")
    wheels[own.name] = own
    missing = {canonicalize_name(r.name) for w in wheels.values() for r in w.depends()} - set(wheels)
    if missing:
        raise SystemExit(f"unresolved dependencies: {sorted(missing)}")

    out.mkdir(parents=True, exist_ok=True)
    for name in CORE_FILES:
        _copy_if_changed(NPM_PYODIDE / name, out / name)
    keep = {w.path.name for w in wheels.values()}
    for stale in out.glob("*.whl"):
        if stale.name not in keep:
            stale.unlink()
    for w in wheels.values():
        _copy_if_changed(w.path, out / w.path.name)

    stock = json.loads((NPM_PYODIDE / "pyodide-lock.json").read_text())
    known = set(wheels)
    lock = {
        "info": stock["info"],
        "packages": {name: lock_entry(wheels[name], known) for name in sorted(wheels)},
    }
    (out / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return lock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "dist" / "pyodide")
    ap.add_argument("--wheel", type=Path, help="py_worker wheel to include (default: build one)")
    ap.add_argument(
        "--group", action="append", choices=sorted(GROUPS),
        help="package groups to include (default: all)",
    )  # fmt: skip
    ap.add_argument("--extra", action="append", default=[], help="another requirement to include")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    wheel = args.wheel.resolve() if args.wheel else build_own_wheel(CACHE / "own")
    lock = assemble(args.out.resolve(), wheel, args.group or sorted(GROUPS), args.extra)
    packages = lock["packages"]
    assert isinstance(packages, dict)
    print(f"{args.out}: {len(packages)} packages in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
