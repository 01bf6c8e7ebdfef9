"""Copy web-llm's prebuilt model lists into ``py_worker/prebuilt_lists.py``, one per shipped tvmjs.

An MLC model library links only with the tvmjs (``@mlc-ai/web-runtime``) it was built for, and
each web-llm release lists the libraries of one folder, built for the runtime it bundles. For every
runtime package.json ships, this packs the web-llm release paired with it (``RELEASE_FOR_RUNTIME``)
from the npm registry, checks that the release declares that very runtime, loads its
``lib/index.js`` in Node and writes its ``prebuiltAppConfig.model_list``, ``modelVersion`` and
``modelLibURLPrefix`` as they are, newest runtime first. Run by hand (it needs npm, Node and the
registry); the output is deterministic, so a rerun gives the same file:

    .venv/bin/python tools/prebuilt_lists.py
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "py_worker" / "prebuilt_lists.py"
COMMAND = ".venv/bin/python tools/prebuilt_lists.py"
RUNTIME = "@mlc-ai/web-runtime"

RELEASE_FOR_RUNTIME: dict[str, str] = {
    "0.27.0-dev0": "0.2.85",
    "0.24.0-dev1": "0.2.82",
    "0.18.0-dev2": "0.2.79",
}
"""Shipped tvmjs version -> the web-llm release built on it (the newest release per runtime)."""

# web-llm's bundle carries tvmjs's emscripten glue, which asks for CommonJS `require` and
# `__filename` when it sees Node; the shims let the ES module load, nothing of it runs.
NODE_DUMP = """
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [index, out] = process.argv.slice(1);
globalThis.require = createRequire(index);
globalThis.__filename = index;
globalThis.__dirname = index.slice(0, index.lastIndexOf("/"));
const m = await import(pathToFileURL(index).href);
const dump = {
  modelVersion: m.modelVersion,
  modelLibURLPrefix: m.modelLibURLPrefix,
  model_list: m.prebuiltAppConfig.model_list,
};
writeFileSync(out, JSON.stringify(dump));
"""

RELEASE_TYPE = '''

class Release(TypedDict):
    """One web-llm release: its tvmjs, its library folder and its records as it lists them."""

    web_llm: str
    tvmjs: str
    model_version: str
    model_lib_url_prefix: str
    model_list: list[dict[str, Any]]
'''


class PrebuiltListsError(Exception):
    """The prebuilt lists could not be copied as they are."""


class ReleaseTableError(PrebuiltListsError):
    """``RELEASE_FOR_RUNTIME`` does not name exactly the runtimes package.json ships."""


class RuntimeMismatchError(PrebuiltListsError):
    """A web-llm release declares another tvmjs than the one it is paired with."""


class LibraryFolderError(PrebuiltListsError):
    """A record's library lies outside the folder its release names (``modelVersion``)."""


def version_key(version: str) -> tuple[int, ...]:
    """Order of versions like ``0.27.0-dev0``: numbers left to right (a pre-release tag's too)."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def shipped_runtimes(package_json: Path = ROOT / "package.json") -> list[str]:
    """The tvmjs versions package.json ships (the package and its npm aliases), newest first."""
    deps: dict[str, str] = json.loads(package_json.read_text())["dependencies"]
    found = set()
    for name, spec in deps.items():
        if name == RUNTIME or name.startswith(RUNTIME + "-"):
            found.add(spec.removeprefix(f"npm:{RUNTIME}@"))
    return sorted(found, key=version_key, reverse=True)


def declared_runtime(package: dict[str, Any]) -> str:
    """The tvmjs version a web-llm package.json builds on (a ``^`` or ``~`` range's base)."""
    for field in ("dependencies", "peerDependencies", "devDependencies"):
        spec = package.get(field, {}).get(RUNTIME)
        if spec:
            return str(spec).lstrip("^~=")
    raise RuntimeMismatchError(f"web-llm {package.get('version')} declares no {RUNTIME}")


def check_release(release: dict[str, Any]) -> None:
    """Every record's library lies in the release's folder."""
    folder = release["model_lib_url_prefix"] + release["model_version"] + "/"
    for record in release["model_list"]:
        if not str(record["model_lib"]).startswith(folder):
            where = f"web-llm {release['web_llm']}: {record['model_id']}'s {record['model_lib']}"
            raise LibraryFolderError(f"{where} is not under {folder}")


def fetch_release(web_llm: str, tvmjs: str, work: Path) -> dict[str, Any]:
    """Pack ``@mlc-ai/web-llm@<web_llm>``, check its runtime and read its prebuilt list in Node."""
    packed = subprocess.run(
        ["npm", "pack", f"@mlc-ai/web-llm@{web_llm}", "--json", "--pack-destination", str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = work / json.loads(packed.stdout)[0]["filename"]
    unpacked = work / web_llm
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    package = json.loads((unpacked / "package" / "package.json").read_text())
    if package["version"] != web_llm:
        raise RuntimeMismatchError(f"npm gave web-llm {package['version']} for {web_llm}")
    declared = declared_runtime(package)
    if declared != tvmjs:
        raise RuntimeMismatchError(f"web-llm {web_llm} builds on {RUNTIME} {declared}, not {tvmjs}")
    dump = work / f"{web_llm}.json"
    index = unpacked / "package" / "lib" / "index.js"
    subprocess.run(["node", "--input-type=module", "-e", NODE_DUMP, str(index), str(dump)], check=True)
    got = json.loads(dump.read_text())
    release = {
        "web_llm": web_llm,
        "tvmjs": tvmjs,
        "model_version": got["modelVersion"],
        "model_lib_url_prefix": got["modelLibURLPrefix"],
        "model_list": got["model_list"],
    }
    check_release(release)
    return release


def literal(value: Any, indent: int = 0) -> str:
    """``value`` (JSON data) as Python source: inline where it fits 100 columns, else one item a line."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        items = [f"{json.dumps(str(k))}: {literal(v, indent + 1)}" for k, v in value.items()]
        open_, close = "{", "}"
    elif isinstance(value, list):
        items = [literal(v, indent + 1) for v in value]
        open_, close = "[", "]"
    else:
        raise TypeError(f"not JSON data: {type(value).__name__}")
    inline = open_ + ", ".join(items) + close
    if "\n" not in inline and 4 * indent + len(inline) <= 100:
        return inline
    pad = "    " * (indent + 1)
    return open_ + "\n" + "".join(f"{pad}{item},\n" for item in items) + "    " * indent + close


def render(releases: list[dict[str, Any]]) -> str:
    """The module text of ``releases`` (newest first): header, the Release type, ``RELEASES``."""
    names = "".join(f"- {r['web_llm']}: tvmjs {r['tvmjs']}, folder {r['model_version']}\n" for r in releases)
    header = (
        '"""web-llm\'s prebuilt model lists, one per tvmjs runtime the site ships, newest first.\n\n'
        f"Generated by ``{COMMAND}``: do not edit by hand. From the npm releases\n"
        "of @mlc-ai/web-llm below, each one's ``prebuiltAppConfig.model_list``, ``modelVersion`` and\n"
        "``modelLibURLPrefix`` exactly as web-llm lists them:\n\n"
        f"{names}"
        '"""\n\n'
        "from typing import Any, TypedDict\n"
    )
    return header + RELEASE_TYPE + "\n\nRELEASES: list[Release] = " + literal(releases) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runtimes = shipped_runtimes()
    if set(runtimes) != set(RELEASE_FOR_RUNTIME):
        paired = list(RELEASE_FOR_RUNTIME)
        raise ReleaseTableError(f"package.json ships tvmjs {runtimes}; RELEASE_FOR_RUNTIME pairs {paired}")
    with tempfile.TemporaryDirectory() as tmp:
        releases = [fetch_release(RELEASE_FOR_RUNTIME[v], v, Path(tmp)) for v in runtimes]
    args.out.write_text(render(releases))
    counts = ", ".join(f"{r['web_llm']}: {len(r['model_list'])}" for r in releases)
    print(f"wrote {args.out} ({counts} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
