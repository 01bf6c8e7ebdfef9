"""A full browser cache: the Cache API's quota error moves the model to IndexedDB, and with both
full the model still loads, uncached, and the progress text says caching is off.

The quota errors are raised inside the worker, where the loader runs: a hook evaluated there
(playwright's Worker.evaluate, so the shipped code carries no test switch) makes ``Cache.put``
reject and, in the second test, ``IDBObjectStore.put`` throw, each with the DOMException a full
disk gives (``QuotaExceededError``). What is stored is read back from the page (same origin).
"""

from __future__ import annotations

from typing import Any

from conftest import TINY, Guarded
from hosts import CACHE_NAME, STORED

SHARD = "params_shard_0.bin"

QUOTA = 'new DOMException("The quota has been exceeded.", "QuotaExceededError")'
CACHE_API_FULL = f"""() => {{
  const hook = self.__quotaHook ??= {{cacheRefusals: 0, idbRefusals: 0}};
  Cache.prototype.put = function () {{ hook.cacheRefusals += 1; return Promise.reject({QUOTA}); }};
}}"""
INDEXEDDB_FULL = f"""() => {{
  const hook = self.__quotaHook ??= {{cacheRefusals: 0, idbRefusals: 0}};
  IDBObjectStore.prototype.put = function () {{ hook.idbRefusals += 1; throw {QUOTA}; }};
}}"""

RELOAD = """async (model) => {
  window.progress = [];
  await within(engine.reload(model), 120000, "reload");
  const messages = [{role: "user", content: "Where do the weights live?"}];
  const reply = await within(engine.chat.completions.create({messages, max_tokens: 4, ignore_eos: true}),
                             60000, "chat");
  return {texts: window.progress, tokens: reply.usage.completion_tokens};
}"""


def _engine_with(g: Guarded, hooks: list[str]) -> tuple[Any, dict[str, int]]:
    """An engine over a fresh worker with ``hooks`` installed; counts the shard's requests."""
    hits = {"shard": 0}

    def count(route: Any) -> None:
        hits["shard"] += 1
        route.continue_()

    g.page.route(f"**/models/{TINY}/{SHARD}", count)  # later routes win over the guard's
    g.open("bare.html")
    with g.page.expect_worker() as info:
        g.js("""async () => {
          window.progress = [];
          const initProgressCallback = (r) => window.progress.push(r.text);
          window.engine = await PyWorker.createEngine({initProgressCallback});
        }""")
    worker = info.value
    for hook in hooks:
        worker.evaluate(hook)
    return worker, hits


def _shard_keys(urls: list[str]) -> list[str]:
    return [u for u in urls if u.endswith(f"/{TINY}/{SHARD}")]


def test_cache_api_quota_error_falls_back_to_indexeddb(guarded: Guarded) -> None:
    worker, hits = _engine_with(guarded, [CACHE_API_FULL])
    first = guarded.js(RELOAD, TINY)
    assert first["tokens"] == 4
    assert hits["shard"] == 1
    assert worker.evaluate("() => self.__quotaHook.cacheRefusals") >= 1, "the Cache API was never asked"
    assert not [t for t in first["texts"] if "Caching is off" in t], first["texts"]
    stored = guarded.js(STORED, CACHE_NAME)
    assert not _shard_keys(stored["cached"]), "the refused write left an entry in the Cache API"
    assert _shard_keys(stored["idb"]), f"the shard did not go to IndexedDB: {stored}"

    second = guarded.js(RELOAD, TINY)
    assert second["tokens"] == 4
    assert hits["shard"] == 1, "the second load downloaded the shard again instead of reading IndexedDB"
    assert any(t.startswith("Loading model from cache[1/1]") for t in second["texts"]), second["texts"]


def test_cache_api_and_indexeddb_full_load_uncached_and_say_so(guarded: Guarded) -> None:
    worker, hits = _engine_with(guarded, [CACHE_API_FULL, INDEXEDDB_FULL])
    first = guarded.js(RELOAD, TINY)
    assert first["tokens"] == 4
    refusals = worker.evaluate("() => self.__quotaHook")
    assert refusals["cacheRefusals"] >= 1, refusals
    assert refusals["idbRefusals"] >= 1, refusals
    off = [t for t in first["texts"] if "Caching is off" in t]
    assert off, f"no progress text says caching is off: {first['texts']}"
    assert "QuotaExceededError" in off[-1], off[-1]
    stored = guarded.js(STORED, CACHE_NAME)
    assert not _shard_keys(stored["cached"]), stored
    assert not _shard_keys(stored["idb"]), stored

    second = guarded.js(RELOAD, TINY)
    assert second["tokens"] == 4
    assert hits["shard"] == 2, "with caching off the second load must download the shard again"
