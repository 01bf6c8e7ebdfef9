"""One call to an engine inside Pyodide: ``engine = await CreateMLCEngine(model_id)``.

web-llm's ``CreateMLCEngine`` for Python code running in Pyodide in a browser (a JupyterLite
notebook, a Pyodide page or worker). It finds the py_worker site it was served from — the
nearest folder above this page's (or worker's) URL that serves ``app-config.json`` and
``kernels/backends.js`` — imports that site's WebGPU kernel shim, reads its app config (model
URLs made absolute), builds ``MLCEngine(JsKernels(shim), app_config)`` and loads ``model_id``
(one id or a list). Only the site's own origin is asked. Pure Python; it needs Pyodide's ``js``
module only when called.
"""

from __future__ import annotations

import json
from typing import Any

from .engine import MLCEngine, ProgressReport
from .errors import ModelLoadError


def candidate_sites(href: str) -> list[str]:
    """The folders above ``href`` (its own first, the origin's root last), each ending in "/"."""
    scheme, sep, rest = href.partition("://")
    if not sep:
        return []
    host, _, path = rest.partition("/")
    path = path.split("?", 1)[0].split("#", 1)[0]
    parts = path.split("/")[:-1]  # the folder of the page/worker itself
    origin = f"{scheme}://{host}/"
    out = [origin + "".join(p + "/" for p in parts[:n]) for n in range(len(parts), 0, -1)]
    return [*out, origin]


def resolve_app_config(config: dict[str, Any], site: str) -> dict[str, Any]:
    """A copy of ``config`` with each record's ``model`` and ``model_lib`` absolute against ``site``."""
    from urllib.parse import urljoin

    out: dict[str, Any] = json.loads(json.dumps(config))
    for record in out.get("model_list") or []:
        for key in ("model", "model_lib"):
            if isinstance(record.get(key), str):
                record[key] = urljoin(site, record[key])
    return out


async def _fetch_json(url: str) -> Any:
    from js import fetch

    try:
        response = await fetch(url)
    except Exception:  # a network error means: not here
        return None
    if not response.ok:
        return None
    try:
        return json.loads(await response.text())
    except ValueError:
        return None


async def _exists(url: str) -> bool:
    from js import Object, fetch
    from pyodide.ffi import to_js

    try:
        response = await fetch(url, to_js({"method": "HEAD"}, dict_converter=Object.fromEntries))
    except Exception:
        return False
    return bool(response.ok)


async def find_site(href: str | None = None) -> tuple[str, dict[str, Any]]:
    """(site URL, its app config with absolute URLs) of the nearest py_worker site above ``href``
    (default: this page's or worker's own URL). Raises ModelLoadError when there is none."""
    if href is None:
        from js import location

        href = str(location.href)
    tried = []
    for site in candidate_sites(href):
        tried.append(site)
        config = await _fetch_json(site + "app-config.json")
        is_config = isinstance(config, dict) and isinstance(config.get("model_list"), list)
        if is_config and await _exists(site + "kernels/backends.js"):
            return site, resolve_app_config(config, site)
    raise ModelLoadError(
        "No py_worker site (app-config.json and kernels/backends.js) above " + href, tried=tried
    )


async def create_kernels(site: str) -> Any:
    """The site's WebGPU kernel shim as ``Kernels`` (``JsKernels`` over ``createKernels``)."""
    from pyodide.code import run_js

    from .jsbridge import JsKernels

    load_module = run_js("(url) => import(url)")  # a constant: the URL is the site's own
    backends = await load_module(site + "kernels/backends.js")
    # The site's own runtime URLs, as every JS host passes them (kernels/site_options.js).
    shim = await backends.createKernels(backends.siteOptions(site))
    return JsKernels(shim)


async def CreateMLCEngine(  # web-llm's name
    model_id: str | list[str],
    *,
    init_progress_callback: ProgressReport | None = None,
    app_config: dict[str, Any] | None = None,
    chat_opts: Any = None,
    site_url: str | None = None,
) -> MLCEngine:
    """An ``MLCEngine`` over the site's kernels with ``model_id`` loaded.

    ``init_progress_callback(report)`` gets web-llm's reports (``{"progress", "timeElapsed",
    "text"}``). ``app_config`` replaces the site's app config; ``site_url`` names the site
    instead of searching for it; ``chat_opts`` is web-llm's per-model override (one or a list).
    """
    if site_url is None:
        site, site_config = await find_site()
    else:
        site = site_url if site_url.endswith("/") else site_url + "/"
        site_config = resolve_app_config(await _fetch_json(site + "app-config.json") or {}, site)
    config = resolve_app_config(app_config, site) if app_config is not None else site_config
    engine = MLCEngine(await create_kernels(site), config)
    await engine.reload(model_id, chat_opts, progress=init_progress_callback)
    return engine
