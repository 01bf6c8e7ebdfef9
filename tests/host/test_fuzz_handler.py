"""Fuzz the worker message handler with random scripts of valid and invalid messages.

A script is a list of messages, each sent either awaited or left running in the background, so
requests overlap: requests during reload and unload, stream ``next``/``return`` interleaved, an
interrupt or a cancel landing anywhere. Messages are well-formed or broken (unknown kinds, among
them built-in property names such as ``constructor`` and ``__proto__``, missing fields, wrong
types, huge strings, NaN, infinities and negative numbers), or raw messages no JSON can hold
(cycles, nesting thousands of levels deep, more items than the bounds allow, an object shared
until it unfolds past them), or reuse the uuid of a request still in flight. The reference
backend yields to the event loop a drawn number of times around every kernel call, so each
example explores another interleaving. After every script:

- every message got exactly one terminal reply (``return`` or ``throw``), and nothing after it (a
  message reusing a uuid in flight gets its own ``DuplicateUuidError`` and the first its reply);
- every ``throw`` carries ``{name, message, fields}`` and names a py_worker error class (or
  ``CancelledError`` for a cancelled request);
- once the script's open streams are returned, no model lock is held, no generation runs, no
  stream is registered and no task is left;
- the worker still works: a reload and a chat succeed.

The number of examples and messages run is printed and written to bench/out/fuzz.json.
``PY_WORKER_FUZZ=explore`` runs ten times as many examples, different on every run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import reprlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.load import BERT, app_config
from py_worker.engine import MLCEngine
from py_worker.errors import error_names
from py_worker.handler import Handler
from py_worker.protocol.message import MAX_ITEMS
from py_worker.reference import ReferenceKernels

OUT = Path(__file__).resolve().parents[2] / "bench" / "out" / "fuzz.json"
HANG_S = 10.0
QUIET_TURNS = 400  # loop turns a request may take before the client frees its streams
EXAMPLES = 150
EXPLORE = os.environ.get("PY_WORKER_FUZZ") == "explore"
"""CI runs a fixed set of examples; PY_WORKER_FUZZ=explore runs ten times as many, new each run."""
KERNEL_CALLS = (
    "load", "unload", "tokenize", "detokenize", "prefill", "decode", "sample",
    "decode_steps", "rewind", "reset", "embed", "stats", "device_info",
)  # fmt: skip
COUNTS = {
    "examples": 0,
    "messages": 0,
    "throws": 0,
    "returns": 0,
    "streams_opened": 0,
    "chunks": 0,
    "completions": 0,
    "duplicates": 0,
    "raw": 0,
}
NAMED = {*error_names(), "CancelledError"}


class Yielding(ReferenceKernels):
    """The reference backend, yielding to the loop a scheduled number of times per call."""

    def __init__(self, schedule: list[int]) -> None:
        super().__init__()
        self._yields: Iterator[int] = itertools.cycle(schedule or [0])
        for name in KERNEL_CALLS:
            setattr(self, name, self._yielding(getattr(self, name)))

    def _yielding(self, call: Any) -> Any:
        async def wrapped(*args: Any) -> Any:
            for _ in range(next(self._yields)):
                await asyncio.sleep(0)
            result = await call(*args)
            for _ in range(next(self._yields)):
                await asyncio.sleep(0)
            return result

        return wrapped


# ---- strategies ------------------------------------------------------------------------------


def mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` about four times in five, else ``bad``."""
    return st.sampled_from([True, True, True, True, False]).flatmap(lambda ok: valid if ok else bad)


HUGE = "é" * 50_000


def end_with_user(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return messages if messages[-1]["role"] == "user" else [*messages, {"role": "user", "content": "and?"}]


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1.5, 0, 1e308, 2**64]),
    st.text(max_size=12),
    st.just(HUGE),
    st.lists(st.integers(-3, 600), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
MODEL_IDS = st.sampled_from(["tiny-a", "tiny-b", BERT, "nope", ""])
texts = st.one_of(st.text(max_size=16), st.sampled_from(["Hi", "Hello there", "ça va ? 🙂"]))
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "user", "system", "assistant", "tool"]), "content": texts}
    ),
    min_size=1,
    max_size=3,
).map(end_with_user)
generation = {
    "model": mostly(st.sampled_from(["tiny-a", "tiny-b"]), MODEL_IDS),
    "max_tokens": st.integers(1, 6),
    "temperature": st.sampled_from([0, 0.5, 1.0]),
    "seed": st.integers(0, 2**31),
}
optional_generation = {
    "ignore_eos": st.booleans(),
    "stop": st.sampled_from(["a", ["e", " "], "\n"]),
    "top_p": st.floats(0.05, 1.0),
    "logprobs": st.just(True),
    "n": st.sampled_from([1, 1, 2]),
    "frequency_penalty": st.floats(-2, 2),
}
chat = st.fixed_dictionaries(
    {"messages": mostly(messages, st.just([{"role": "user", "content": HUGE}])), **generation},
    optional=optional_generation,
)
completion = st.fixed_dictionaries({"prompt": texts, **generation}, optional=optional_generation)
embedding = st.fixed_dictionaries(
    {
        "input": st.one_of(texts, st.lists(texts, max_size=3), st.lists(st.integers(-1, 600), max_size=5)),
        "model": mostly(st.just(BERT), MODEL_IDS),
    },
    optional={"encoding_format": st.sampled_from(["float", "base64", 3])},
)
# max_tokens is never dropped or made huge: a request that may generate for ever only costs time.
SAFE_MAX_TOKENS = st.sampled_from([0, -1, 1.5, math.nan, "3", None, True])


@st.composite
def broken(draw: st.DrawFn, request: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid request with one field dropped or set to junk."""
    value = dict(draw(request))
    key = draw(st.sampled_from([*sorted(value), "extra"]))
    if key == "max_tokens":
        value[key] = draw(SAFE_MAX_TOKENS)
    elif draw(st.booleans()) and key != "extra":
        del value[key]
    else:
        value[key] = draw(junk)
    if value.get("max_tokens") is None:
        value["max_tokens"] = 2
    return value


def requests(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return mostly(valid, st.one_of(broken(valid), junk))


@dataclass(frozen=True)
class Recent:
    """Stands for the id of the k-th most recent stream the script opened, filled in at send time."""

    k: int


STREAM_IDS = mostly(st.integers(0, 2).map(Recent), st.one_of(st.just("stream-0"), junk))
RELOAD_IDS = mostly(
    st.sampled_from(
        [["tiny-a"], ["tiny-a", "tiny-b"], ["tiny-b", BERT], ["tiny-a", "tiny-b", BERT], "tiny-b"]
    ),
    st.one_of(st.sampled_from([["tiny-a", "tiny-a"], ["nope"], []]), junk),
)
# Inference messages name the models the client expects (web-llm's reloadIfUnmatched) now and then.
with_model_ids = {"modelId": RELOAD_IDS}


def content(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, Any] | None = None) -> Any:
    return st.fixed_dictionaries(required, optional=optional or {})


CONTENTS: dict[str, st.SearchStrategy[Any]] = {
    "reload": content({"modelId": RELOAD_IDS}, {"chatOpts": st.one_of(junk, st.just([{"temperature": 0}]))}),
    "unload": st.just({}),
    "chatCompletionNonStreaming": content({"request": requests(chat)}, with_model_ids),
    "chatCompletionStreamInit": content({"request": requests(chat)}, with_model_ids),
    "completionNonStreaming": content({"request": requests(completion)}, with_model_ids),
    "completionStreamInit": content({"request": requests(completion)}, with_model_ids),
    "completionStreamNextChunk": content({"streamId": STREAM_IDS}),
    "completionStreamReturn": content({"streamId": STREAM_IDS}),
    "embedding": content({"request": requests(embedding)}, with_model_ids),
    "interruptGenerate": st.just({}),
    "resetChat": content({}, {"keepStats": junk, "modelId": MODEL_IDS}),
    "getMessage": content({}, {"modelId": MODEL_IDS}),
    "runtimeStatsText": content({}, {"modelId": MODEL_IDS}),
    "forwardTokensAndSample": content(
        {"inputIds": st.one_of(st.lists(st.integers(0, 511), min_size=1, max_size=4), junk)},
        {"isPrefill": st.booleans(), "modelId": MODEL_IDS},
    ),
    "getMaxStorageBufferBindingSize": st.just({}),
    "getGPUVendor": st.just({}),
    "setLogLevel": content({"level": st.one_of(st.sampled_from(["WARN", "INFO", "SILENT"]), junk)}),
    "setAppConfig": content({"appConfig": st.one_of(st.just(app_config()), junk)}),
}
UNKNOWN_KINDS = st.sampled_from(
    ["bogus", "", "__init__", "reload ", "RELOAD", "customRequest", "heartbeat",
     "constructor", "toString", "hasOwnProperty", "__proto__", "valueOf", "isPrototypeOf"]
)  # fmt: skip


@dataclass(frozen=True)
class Raw:
    """Content no JSON can hold, built at send time: ``shape`` is "cycle", "deep", "items"
    (more than MAX_ITEMS) or "shared" (one list shared until it unfolds past MAX_ITEMS)."""

    shape: str

    def build(self) -> Any:
        if self.shape == "cycle":
            inner: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            inner["self"] = inner
            return {"request": inner, "streamId": "stream-1", "modelId": ["tiny-a"]}
        if self.shape == "deep":
            value: Any = "leaf"
            for _ in range(3000):
                value = [value]
            return {"request": {"messages": value}}
        if self.shape == "items":
            return {"request": {"prompt": "x", "padding": [0] * (MAX_ITEMS + 1)}}
        value = [0]
        for _ in range(30):
            value = [value, value]
        return {"inputIds": value}


RAW = st.sampled_from(["cycle", "deep", "deep", "cycle", "items", "shared"]).map(Raw)
# Stream pulls and returns come often, so they meet the streams the script opened.
INFERENCE = ["chatCompletionStreamInit", "completionStreamInit", "chatCompletionNonStreaming",
             "completionNonStreaming", "embedding", "completionStreamNextChunk", "completionStreamNextChunk",
             "completionStreamNextChunk", "completionStreamReturn"]  # fmt: skip
kinds = st.sampled_from(sorted(CONTENTS) + INFERENCE * 3)


@st.composite
def message(draw: st.DrawFn) -> list[tuple[str, Any, str]]:
    """[(kind, content, mode)]; mode: "await", "background", or "cancel" (background, then
    cancelled). A stream init comes with a few pulls of the newest stream after it."""
    modes = st.sampled_from(["await", "await", "background", "background", "cancel", "duplicate"])
    if draw(st.sampled_from([False] * 9 + [True])):
        return [(draw(UNKNOWN_KINDS), draw(st.one_of(junk, st.just({}))), draw(modes))]
    kind = draw(kinds)
    if draw(st.sampled_from([False] * 11 + [True])):
        return [(kind, draw(RAW), draw(modes))]
    sent = [(kind, draw(mostly(CONTENTS[kind], junk)), draw(modes))]
    if kind.endswith("StreamInit"):
        pulls = draw(st.integers(0, 3))
        sent += [("completionStreamNextChunk", {"streamId": Recent(0)}, draw(modes)) for _ in range(pulls)]
    return sent


START = mostly(
    st.sampled_from([["tiny-a", "tiny-b", BERT], ["tiny-a"], ["tiny-b", BERT]]).map(
        lambda ids: [("reload", {"modelId": ids}, "await")]
    ),
    st.just([]),
)
# Most scripts start from loaded models, so inference requests get past model selection.
scripts = st.builds(
    lambda head, tail: head + [m for group in tail for m in group],
    START,
    st.lists(message(), min_size=4, max_size=16),
)


# ---- the property ----------------------------------------------------------------------------


def check_replies(
    replies: list[dict[str, Any]], sent: dict[str, tuple[str, Any]], duplicates: dict[str, int] | None = None
) -> None:
    """Exactly one terminal reply per uuid, progress only before it, well-formed named throws;
    ``duplicates[uuid]`` more messages reused ``uuid`` in flight, each answered DuplicateUuidError."""
    uuids = list(sent)
    finished: set[str] = set()
    extra = dict(duplicates or {})
    for reply in replies:
        uuid = reply.get("uuid")
        assert uuid in uuids, reply
        if reply["kind"] == "throw" and reply["content"]["name"] == "DuplicateUuidError":
            assert extra.get(uuid, 0) > 0, reply
            assert uuid not in finished, reply
            extra[uuid] -= 1
            COUNTS["duplicates"] += 1
            continue
        assert uuid not in finished, f"a reply after the terminal one: {reply}"
        if reply["kind"] in ("return", "throw"):
            finished.add(uuid)
        else:
            assert reply["kind"] == "initProgressCallback", reply
        if reply["kind"] == "throw":
            err = reply["content"]
            assert isinstance(err["name"], str), err
            assert err["name"], err
            assert isinstance(err["message"], str), err
            assert isinstance(err["fields"], dict), err
            COUNTS["throws"] += 1
            assert err["name"] in NAMED, (sent[uuid], err)
        elif reply["kind"] == "return":
            COUNTS["returns"] += 1
            got = reply["content"] if isinstance(reply["content"], dict) else {}
            COUNTS["streams_opened"] += "streamId" in got
            COUNTS["chunks"] += "chunk" in got
            COUNTS["completions"] += "usage" in got
    assert finished == set(uuids), set(uuids) - finished
    assert not any(extra.values()), extra


class Session:
    """One script against a fresh worker, with the client's side of the stream contract."""

    def __init__(self, schedule: list[int]) -> None:
        self.handler = Handler(MLCEngine(Yielding(schedule), app_config()))
        self.replies: list[dict[str, Any]] = []
        self.returned = 0
        self.trace: list[str] = []  # kind:mode of each message sent, for a hang's report

    def opened(self) -> list[str]:
        return [r["content"]["streamId"] for r in self.replies if r["kind"] == "return"
                and isinstance(r["content"], dict) and "streamId" in r["content"]]  # fmt: skip

    def resolve(self, body: Any) -> Any:
        """``body`` with a ``Recent`` stream reference replaced by that stream's id."""
        if isinstance(body, dict) and isinstance(body.get("streamId"), Recent):
            opened = self.opened()
            k = body["streamId"].k
            return {**body, "streamId": opened[-1 - k] if k < len(opened) else "stream-0"}
        return body

    async def return_open_streams(self) -> None:
        """Return every stream the script opened (what a client that stops reading must do)."""
        for stream_id in self.opened()[self.returned :]:
            end: list[dict[str, Any]] = []
            message = {
                "kind": "completionStreamReturn",
                "uuid": f"r{self.returned}",
                "content": {"streamId": stream_id},
            }
            await asyncio.wait_for(self.handler.handle(message, end.append), HANG_S)
            assert [r["kind"] for r in end] == ["return"], end
            self.returned += 1

    async def wait(self, task: asyncio.Task[None]) -> None:
        """Await one request. A stream holds its model until it ends or is returned, so a request
        still pending once the loop has turned a while may queue behind a stream of the script's:
        keep returning open streams (background requests may open more); it must then finish."""
        for _ in range(QUIET_TURNS):
            if task.done():
                return
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANG_S
        while not task.done():
            await self.return_open_streams()
            await asyncio.wait({task}, timeout=0.05)
            engine = self.handler.engine
            assert loop.time() < deadline, (
                f"a request hangs: held {engine.locks.held()}, waiting "
                f"{ {m: engine.locks.waiting(m) for m in engine.models} }, "
                f"streams {list(self.handler.streams)}, "
                f"running {len(engine.running)}, script {self.trace}"
            )

    async def settle(self, background: list[asyncio.Task[None]]) -> None:
        """Let the background requests finish, returning open streams whenever they stall."""
        pending = set(background)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await self.wait(next(iter(pending)))
        await self.return_open_streams()


async def play(script: list[tuple[str, Any, str]], schedule: list[int]) -> None:
    session = Session(schedule)
    handler, replies = session.handler, session.replies
    sent: dict[str, tuple[str, Any]] = {}
    background: list[asyncio.Task[None]] = []
    inits: list[asyncio.Task[None]] = []
    flying: dict[asyncio.Task[None], str] = {}  # background task -> its uuid
    duplicates: dict[str, int] = {}
    for i, (kind, body, mode) in enumerate(script):
        uuid = f"m{i}"
        if isinstance(body, dict) and isinstance(body.get("streamId"), Recent):
            for init in inits:  # a client knows a stream's id only once its init returned
                await session.wait(init)
        body = session.resolve(body)
        if isinstance(body, Raw):
            COUNTS["raw"] += 1
            body = body.build()
        if mode == "duplicate":
            # Reuse the uuid of a request still in flight: refused at once, the first runs on.
            live = [u for t, u in flying.items() if not t.done() and ("str", u) in handler.in_flight]
            if live:
                before = len(replies)
                # Awaited directly: a refused duplicate is answered before the handler yields once.
                await handler.handle({"kind": kind, "uuid": live[-1], "content": body}, replies.append)
                got = [(r["uuid"], r["kind"], r["content"]["name"]) for r in replies[before:]]
                assert got == [(live[-1], "throw", "DuplicateUuidError")], replies[before:]
                duplicates[live[-1]] = duplicates.get(live[-1], 0) + 1
                session.trace.append(f"dup of {live[-1]}:{kind}")
                continue
            mode = "await"
        sent[uuid] = (kind, body)
        session.trace.append(f"{uuid}:{kind}:{mode}:{reprlib.repr(body)[:80]}")
        task = asyncio.ensure_future(
            handler.handle({"kind": kind, "uuid": uuid, "content": body}, replies.append)
        )
        if mode == "await":
            await session.wait(task)
        else:
            background.append(task)
            flying[task] = uuid
            if kind.endswith("StreamInit"):
                inits.append(task)
            await asyncio.sleep(0)
            if mode == "cancel":
                task.cancel()
    COUNTS["messages"] += len(script)
    await session.settle(background)
    check_replies(replies, sent, duplicates)
    engine = handler.engine
    assert not engine.locks.held(), engine.locks.held()
    assert not engine.running
    assert not engine.streams
    assert not handler.streams
    assert not handler.in_flight
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    # The worker still serves: a reload and a chat succeed.
    final: list[dict[str, Any]] = []
    await handler.handle({"kind": "setAppConfig", "uuid": "c", "content": {"appConfig": app_config()}},
                         final.append)  # fmt: skip
    await handler.handle({"kind": "reload", "uuid": "z", "content": {"modelId": ["tiny-a"]}}, final.append)
    chat_request = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "ignore_eos": True}
    chat = {"kind": "chatCompletionNonStreaming", "uuid": "y", "content": {"request": chat_request}}
    await asyncio.wait_for(handler.handle(chat, final.append), HANG_S)
    terminal = [r for r in final if r["kind"] in ("return", "throw")]
    assert [r["kind"] for r in terminal] == ["return"] * 3, terminal
    assert terminal[-1]["content"]["usage"]["completion_tokens"] == 3


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if not COUNTS["examples"]:
        return
    print(f"\nhandler fuzz: {COUNTS}")
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    record["handler"] = dict(COUNTS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")


@settings(
    max_examples=EXAMPLES * (10 if EXPLORE else 1),
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(script=scripts, schedule=st.lists(st.integers(0, 3), min_size=1, max_size=8))
def test_every_message_gets_one_reply_and_nothing_is_left_held(
    script: list[tuple[str, Any, str]], schedule: list[int]
) -> None:
    COUNTS["examples"] += 1
    asyncio.run(play(script, schedule))


# Inputs that once escaped as builtin errors (TypeError, IndexError, ...), and the models to load first.
GAPS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("reload", {"modelId": 7}, []),
    ("reload", {"modelId": None}, []),
    ("reload", {"modelId": ["tiny-a"], "chatOpts": "x"}, []),
    (
        "chatCompletionNonStreaming",
        {"request": {"messages": [{"role": "user", "content": "Hi"}]}, "modelId": 3},
        [],
    ),
    ("completionStreamNextChunk", {"streamId": []}, []),
    ("completionStreamReturn", {"streamId": {}}, []),
    ("setLogLevel", {"level": "LOUD"}, []),
    ("forwardTokensAndSample", {"inputIds": [600]}, ["tiny-a"]),
    ("forwardTokensAndSample", {"inputIds": [-3]}, ["tiny-a"]),  # numpy wraps it round: a token comes back
    ("completionNonStreaming", {"request": {"prompt": "", "max_tokens": 2}}, ["tiny-a"]),
    ("embedding", {"request": {"input": [[600]]}}, [BERT]),
]


@pytest.mark.parametrize(
    ("kind", "body", "preload"), GAPS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(GAPS)]
)
def test_known_gaps_get_named_errors(kind: str, body: dict[str, Any], preload: list[str]) -> None:
    async def main() -> dict[str, Any]:
        handler = Handler(MLCEngine(ReferenceKernels(), app_config()))
        replies: list[dict[str, Any]] = []
        if preload:
            await handler.handle(
                {"kind": "reload", "uuid": "p", "content": {"modelId": preload}}, replies.append
            )
            assert replies[-1]["kind"] == "return"
        await handler.handle({"kind": kind, "uuid": "g", "content": body}, replies.append)
        return replies[-1]

    reply = asyncio.run(main())
    assert reply["kind"] == "throw", reply
    assert reply["content"]["name"] in NAMED, reply


def test_cancelled_pull_then_cancelled_return_frees_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the fuzz above (explore mode); kept as a fixed example."""
    monkeypatch.setattr(sys.modules[__name__], "HANG_S", 1.0)
    start = {"model": "tiny-b", "prompt": "Hello there", "max_tokens": 3, "seed": 1}
    script = [
        ("reload", {"modelId": ["tiny-b"]}, "await"),
        ("completionStreamInit", {"request": start}, "await"),
        ("completionStreamNextChunk", {"streamId": Recent(0)}, "await"),
        ("completionStreamNextChunk", {"streamId": Recent(0)}, "cancel"),
        ("completionStreamReturn", {"streamId": Recent(0)}, "cancel"),
        ("completionNonStreaming", {"request": {"model": "tiny-b", "prompt": "x", "max_tokens": 1}}, "await"),
    ]
    asyncio.run(play(script, [0]))
