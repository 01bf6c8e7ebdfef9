"""The loader in Chromium: progress in web-llm's texts ending at 1.0, shards (or a whole GGUF
file) served from the browser cache on a second load (no request for them reaches the server),
and sha256 checks that refuse a wrong shard or GGUF without caching it. Cache API (default) and
IndexedDB alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tools.kernel_runners import ROOT, ChromiumHarness, tiny_gguf, tiny_model

Fresh = Callable[[], AbstractContextManager[ChromiumHarness]]

SHARD = "params_shard_0.bin"
WRONG = "0" * 64


def shard_requests(h: ChromiumHarness) -> int:
    return sum(url.endswith("/" + SHARD) for url in h.requests)


def load(h: ChromiumHarness, record: dict[str, Any], cache: str) -> dict[str, Any]:
    [out] = h.call("loads", {"options": {**h.options(), "cache": cache}, "records": [record]})
    return dict(out)


@pytest.mark.parametrize("cache", ["cache", "indexeddb"])
def test_second_load_from_cache_and_wrong_sha_not_cached(fresh_chromium: Fresh, cache: str) -> None:
    model = tiny_model("q4f32_1")
    with fresh_chromium() as h:
        bad = load(h, {"model": model, "sha256": {SHARD: WRONG}}, cache)
        assert bad["error"]["name"] == "IntegrityError"
        assert SHARD in bad["error"]["message"]
        assert shard_requests(h) == 1

        first = load(h, {"model": model}, cache)
        assert "error" not in first
        assert shard_requests(h) == 2, "the refused shard must not have been cached"
        fractions = [f for f, _ in first["progress"]]
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
        texts = [t for _, t in first["progress"]]
        assert texts[0] == "Start to fetch params"
        assert any(t.startswith("Fetching param cache[1/1]") for t in texts)
        assert any(t.startswith("Loading GPU shader modules[") for t in texts)
        assert texts[-1].startswith("Finish loading on WebGPU - ")

        second = load(h, {"model": model}, cache)
        assert "error" not in second
        assert shard_requests(h) == 2, "second load must be served from the cache"
        assert any(t.startswith("Loading model from cache[1/1]") for _, t in second["progress"])
        assert second["progress"][-1][0] == 1.0

        # A pin that disagrees with the cached copy is refused too, and evicts nothing good.
        again = load(h, {"model": model, "sha256": {SHARD: WRONG}}, cache)
        assert again["error"]["name"] == "IntegrityError"
        fetched = shard_requests(h)
        kept = load(h, {"model": model}, cache)
        assert "error" not in kept, "the wrong pin evicted the cached shard"
        assert shard_requests(h) == fetched, "the wrong pin evicted the cached shard"


@pytest.mark.parametrize("cache", ["cache", "indexeddb"])
def test_gguf_second_load_from_cache_and_wrong_pin_not_cached(fresh_chromium: Fresh, cache: str) -> None:
    model = tiny_gguf("qwen2")
    name = Path(model).name
    pin = hashlib.sha256((ROOT / model).read_bytes()).hexdigest()

    def gguf_requests(h: ChromiumHarness) -> int:
        return sum(url.endswith("/" + name) for url in h.requests)

    with fresh_chromium() as h:
        bad = load(h, {"model": model, "sha256": {name: WRONG}}, cache)
        assert bad["error"]["name"] == "IntegrityError"
        assert name in bad["error"]["message"]
        assert gguf_requests(h) == 1

        first = load(h, {"model": model, "sha256": {name: pin}}, cache)
        assert "error" not in first, first
        assert gguf_requests(h) == 2, "the refused GGUF must not have been cached"
        fractions = [f for f, _ in first["progress"]]
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0
        texts = [t for _, t in first["progress"]]
        assert texts[0] == "Start to fetch params"
        assert any(t.startswith("Fetching param cache[1/1]: ") for t in texts)
        assert not any(t.startswith("Loading model from cache") for t in texts)
        assert texts[-1].startswith("Finish loading on WebGPU - ")

        second = load(h, {"model": model, "sha256": {name: pin}}, cache)
        assert "error" not in second, second
        assert gguf_requests(h) == 2, "second load must be served from the cache"
        texts = [t for _, t in second["progress"]]
        assert any(t.startswith("Loading model from cache[1/1]: ") for t in texts)
        assert not any(t.startswith("Fetching param cache") for t in texts)
        assert second["progress"][-1][0] == 1.0

        # A pin that disagrees with the cached copy is refused too, and evicts nothing good.
        again = load(h, {"model": model, "sha256": {name: WRONG}}, cache)
        assert again["error"]["name"] == "IntegrityError"
        fetched = gguf_requests(h)
        kept = load(h, {"model": model, "sha256": {name: pin}}, cache)
        assert "error" not in kept, kept
        assert gguf_requests(h) == fetched, "the refused pin evicted the good cached copy"


def test_interrupted_or_corrupt_download_never_poisons_cache(fresh_chromium: Fresh) -> None:
    model = tiny_model("q0f32")
    with fresh_chromium() as h:
        state = {"mode": "truncate"}

        def flaky(route: Any) -> None:
            if state["mode"] == "abort":
                route.abort()
                return
            resp = route.fetch()
            body = resp.body()
            if state["mode"] == "truncate":
                body = body[: len(body) // 2]
            elif state["mode"] == "corrupt":
                body = bytes([body[0] ^ 1]) + body[1:]
            route.fulfill(response=resp, body=body)

        h.page.route("**/" + SHARD, flaky)
        truncated = load(h, {"model": model}, "cache")
        assert truncated["error"]["name"] == "IntegrityError"
        state["mode"] = "corrupt"
        corrupt = load(h, {"model": model}, "cache")
        assert corrupt["error"]["name"] == "IntegrityError"
        state["mode"] = "abort"
        aborted = load(h, {"model": model}, "cache")
        assert aborted["error"]["name"] == "ArtifactFetchError"
        state["mode"] = "pass"
        before = shard_requests(h)
        good = load(h, {"model": model}, "cache")
        assert "error" not in good
        assert shard_requests(h) == before + 1, "nothing bad was cached, so the shard is fetched"
        cached = load(h, {"model": model}, "cache")
        assert "error" not in cached
        assert shard_requests(h) == before + 1


def test_prefetch_is_taken_over_by_load(fresh_chromium: Fresh) -> None:
    """prefetchModel (started while Pyodide boots) and the later load share one download."""
    model = tiny_model("q0f32")
    with fresh_chromium() as h:
        payload = {
            "options": {**h.options(), "cache": "none"},
            "records": [{"model": model}],
            "prefetch": True,
        }
        [out] = h.call("loads", payload)
        assert "error" not in out
        assert shard_requests(h) == 1
        assert any("prefetched" in text for _, text in out["progress"]), "load did not take the prefetch over"
        assert out["progress"][-1][0] == 1.0
