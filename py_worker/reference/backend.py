"""``ReferenceKernels``: the kernel ABI (py_worker/kernels.py) on host CPython with NumPy.

It lets the whole engine run under pytest without a browser, and it is what the WebGPU backend's
numbers are compared with. Models load from a local MLC model dir; shards are checked against
``tensor-cache.json``'s ``metadata.sha256`` and the record's pins, then dequantised to f32.
Decoders (every architecture of ``architectures.py``: MLC's own tensor names, renamed for
``llama.py``) and the BERT encoder plug in by ``model_type``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from py_worker.errors import (
    ArtifactFetchError,
    ContextWindowSizeExceededError,
    EmbeddingUnsupportedModelError,
    IncorrectPipelineLoadedError,
    IntegrityError,
    InvalidRequestFieldError,
    ModelNotLoadedError,
    UnsupportedArchitectureError,
)
from py_worker.kernels import LoadedModel, ProgressFn, Sampled, SamplingParams
from py_worker.reference.architectures import SUPPORTED, reference_weights
from py_worker.reference.bert import BertConfig, BertEncoder
from py_worker.reference.gguf_model import load_gguf, metadata
from py_worker.reference.gguf_tokenizer import tokenizer_json_from_gguf
from py_worker.reference.grammar import Grammars
from py_worker.reference.llama import KVCache, LlamaConfig, LlamaModel
from py_worker.reference.sampling import sample, with_history
from py_worker.reference.tokenizer import ReferenceTokenizer
from py_worker.reference.weights import cache_file, dequantize_tensors, read_shard

Array = Any  # numpy.ndarray

DECODER_TYPES = SUPPORTED
ENCODER_TYPES = ("bert",)


@dataclass
class _Session:
    """One loaded model: its network, KV cache, last logits and counters."""

    config: dict[str, Any]
    tokenizer: ReferenceTokenizer
    decoder: LlamaModel | None = None
    encoder: BertEncoder | None = None
    cache: KVCache | None = None
    logits: Array | None = None
    pending: int | None = None  # the last sampled id, not yet in the KV cache
    grammars: Grammars | None = None
    kv_f16: bool = False  # the KV cache rounds K and V to float16 (KVCache)
    counters: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            ("prefill_tokens", "prefill_seconds", "decode_tokens", "decode_seconds", "embed_tokens"), 0.0
        )
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactFetchError(f"cannot read {path}: {exc}", path=str(path)) from exc


def _check_pin(name: str, data: bytes, expected: str | None) -> None:
    if expected is not None and _sha256(data) != expected.lower():
        raise IntegrityError(
            f"sha256 of {name} does not match", file=name, expected=expected, actual=_sha256(data)
        )


def _build_decoder(session: _Session, weights: Mapping[str, Array]) -> None:
    """``weights`` under the reference's names (a GGUF's already are; an MLC dir's are renamed)."""
    cfg = LlamaConfig.from_chat_config(session.config)
    session.decoder = LlamaModel(weights, cfg)
    session.cache = KVCache(cfg, cfg.context_window_size, session.kv_f16)
    tok = session.tokenizer
    session.grammars = Grammars(tok.tokens(), tok.json, cfg.vocab_size)


def _build_mlc_decoder(session: _Session, weights: Mapping[str, Array]) -> None:
    _build_decoder(session, reference_weights(session.config, weights))


def _build_encoder(session: _Session, weights: Mapping[str, Array]) -> None:
    session.encoder = BertEncoder(weights, BertConfig.from_chat_config(session.config))


_BUILDERS: dict[str, Callable[[_Session, Mapping[str, Array]], None]] = {
    **dict.fromkeys(DECODER_TYPES, _build_mlc_decoder),
    **dict.fromkeys(ENCODER_TYPES, _build_encoder),
}


class ReferenceKernels:
    """The kernel ABI in NumPy; ``logits(handle)`` is an extra for tests.

    ``kv_f16``: decoders keep an f16 KV cache, the twin of the WGSL backend's (its default on
    GPUs with shader-f16); else f32, as that backend keeps it elsewhere.
    """

    def __init__(self, kv_f16: bool = False) -> None:
        self._kv_f16 = kv_f16
        self._sessions: dict[int, _Session] = {}
        self._next_handle = 1

    # -- loading -------------------------------------------------------------------------------

    async def load(self, record: dict[str, Any], progress: ProgressFn) -> LoadedModel:
        root = Path(str(record["model"]))
        pins: dict[str, str] = dict(record.get("sha256") or {})
        progress(0.0, "Start to fetch params")
        if root.suffix.lower() == ".gguf":
            return self._register(self._load_gguf(root, record, pins), progress)
        config_bytes = _read(root / "mlc-chat-config.json")
        _check_pin("mlc-chat-config.json", config_bytes, pins.get("mlc-chat-config.json"))
        config = {**json.loads(config_bytes), **(record.get("overrides") or {})}
        cache_path = cache_file(root)
        cache_bytes = _read(cache_path)
        _check_pin(cache_path.name, cache_bytes, pins.get(cache_path.name))
        cache = json.loads(cache_bytes)
        digests: dict[str, str] = cache.get("metadata", {}).get("sha256", {})
        tokenizer_files = list(config.get("tokenizer_files") or ["tokenizer.json"])
        for name in tokenizer_files:
            _check_pin(name, _read(root / name), pins.get(name))

        model_type = str(config.get("model_type"))
        builder = _BUILDERS.get(model_type)
        if builder is None:
            raise UnsupportedArchitectureError(
                f"model_type {model_type} is not an architecture we run "
                f"(supported: {', '.join((*DECODER_TYPES, *ENCODER_TYPES))})",
                architecture=model_type,
                supported=[*DECODER_TYPES, *ENCODER_TYPES],
            )
        tensors: dict[str, Array] = {}
        shards = cache["records"]
        loaded_bytes = 0
        for i, shard in enumerate(shards, start=1):
            data_path = str(shard["dataPath"])
            blob = _read(root / data_path)
            _check_pin(data_path, blob, digests.get(data_path))
            _check_pin(data_path, blob, pins.get(data_path))
            tensors.update(read_shard(blob, shard["records"]))
            loaded_bytes += len(blob)
            progress(
                i / len(shards),
                f"Loading model from cache[{i}/{len(shards)}]: {loaded_bytes / 2**20:.0f}MB loaded.",
            )
        tokenizer = ReferenceTokenizer(root / "tokenizer.json")
        session = _Session(config=config, tokenizer=tokenizer, kv_f16=self._kv_f16)
        builder(session, dequantize_tensors(tensors))
        return self._register(session, progress)

    def _load_gguf(self, path: Path, record: dict[str, Any], pins: dict[str, str]) -> _Session:
        """A GGUF file: pinned like a shard, every tensor dequantised exactly (gguf_model.py)."""
        _check_pin(path.name, _read(path), pins.get(path.name))
        config, weights, reader = load_gguf(path)
        config.update(record.get("overrides") or {})
        tokenizer = ReferenceTokenizer(json_text=tokenizer_json_from_gguf(metadata(reader)))
        session = _Session(config=config, tokenizer=tokenizer, kv_f16=self._kv_f16)
        _build_decoder(session, weights)
        return session

    def _register(self, session: _Session, progress: ProgressFn) -> LoadedModel:
        handle = self._next_handle
        self._next_handle += 1
        self._sessions[handle] = session
        progress(1.0, "Finish loading on NumPy reference (CPU)")
        return LoadedModel(handle, session.config)

    async def unload(self, handle: int) -> None:
        self._session(handle)
        del self._sessions[handle]

    # -- text ----------------------------------------------------------------------------------

    async def tokenize(self, handle: int, text: str) -> list[int]:
        return self._session(handle).tokenizer.encode(text)

    async def detokenize(self, handle: int, ids: list[int]) -> str:
        return self._session(handle).tokenizer.decode(ids)

    # -- decoding ------------------------------------------------------------------------------

    async def prefill(self, handle: int, ids: list[int]) -> None:
        """Append ``ids``, ``prefill_chunk_size`` at a time (a longer list is split here too)."""
        s = self._session(handle)
        model, cache = self._decoder(s)
        self._ensure_room(s, cache, len(ids))
        chunk = max(1, int(s.config.get("prefill_chunk_size") or len(ids) or 1))
        started = time.perf_counter()
        for at in range(0, len(ids), chunk):
            s.logits = model.forward(list(ids[at : at + chunk]), cache)
        s.pending = None
        s.counters["prefill_tokens"] += len(ids)
        s.counters["prefill_seconds"] += time.perf_counter() - started

    async def decode(self, handle: int, token: int) -> None:
        s = self._session(handle)
        self._decode_one(s, int(token))
        s.pending = None

    async def sample(self, handle: int, params: SamplingParams) -> Sampled:
        s = self._session(handle)
        self._decoder(s)
        if s.logits is None:
            raise RuntimeError("sample needs logits: prefill or decode first")
        uniform = params.uniforms[0] if params.uniforms else 0.0
        out, _ = self._sample(s, params, uniform)
        s.pending = out.token
        return out

    def _sample(self, s: _Session, params: SamplingParams, uniform: float) -> tuple[Sampled, bool]:
        """One step by the rule; with ``params.grammar`` masked by it and advancing it. Returns
        the sample and whether the grammar has ended."""
        if params.grammar is None:
            return sample(s.logits, params, uniform), False
        grammars = self._grammars(s)
        out = sample(s.logits, params, uniform, grammars.mask(params.grammar))
        return out, grammars.accept(params.grammar, out.token)

    async def decode_steps(self, handle: int, n: int, params: SamplingParams) -> list[Sampled]:
        """n x (decode the pending sampled id, sample the next); each sample joins the history."""
        s = self._session(handle)
        self._decoder(s)
        if n <= 0:
            return []
        if s.pending is None:
            raise InvalidRequestFieldError("decode_steps needs a sample() first (none since the last change)")
        if len(params.uniforms) < n:
            raise InvalidRequestFieldError(
                f"decode_steps({n}) needs {n} uniforms, got {len(params.uniforms)}"
            )
        out: list[Sampled] = []
        for step in range(n):
            self._decode_one(s, s.pending)
            step_params = with_history(params, (x.token for x in out))
            picked, ended = self._sample(s, step_params, params.uniforms[step])
            out.append(picked)
            s.pending = picked.token
            if ended:  # the grammar is done: the rest of the batch would be unconstrained
                break
        return out

    async def open_grammar(self, handle: int, spec: dict[str, Any]) -> int:
        return self._grammars(self._session(handle)).open(spec)

    async def close_grammar(self, handle: int, grammar: int) -> None:
        self._grammars(self._session(handle)).close(grammar)

    async def rewind(self, handle: int, length: int) -> None:
        s = self._session(handle)
        _, cache = self._decoder(s)
        if not 0 <= length <= cache.length:
            raise InvalidRequestFieldError(f"cannot rewind a KV cache of {cache.length} tokens to {length}")
        if length != cache.length:
            cache.length = length
            s.logits = None
        s.pending = None

    async def reset(self, handle: int) -> None:
        s = self._session(handle)
        if s.cache is not None:
            s.cache.length = 0
        s.logits = None
        s.pending = None

    # -- embeddings and stats ------------------------------------------------------------------

    async def embed(self, handle: int, batch: list[list[int]]) -> list[list[float]]:
        s = self._session(handle)
        if s.encoder is None:
            raise EmbeddingUnsupportedModelError(
                f"model_type {s.config.get('model_type')!r} is not an embedding model",
                model_type=s.config.get("model_type"),
            )
        s.counters["embed_tokens"] += sum(len(x) for x in batch)
        return s.encoder.embed(batch)

    async def stats(self, handle: int) -> dict[str, Any]:
        s = self._session(handle)
        kv = s.cache.length if s.cache is not None else 0
        return {**s.counters, "kv_length": kv, "context_window_size": s.config.get("context_window_size")}

    async def device_info(self) -> dict[str, Any]:
        """The host CPU in WebGPU's terms; f16 weights are dequantised, so shader-f16 is "there"."""
        return {
            "vendor": "numpy",
            "architecture": "cpu",
            "maxStorageBufferBindingSize": 2**31 - 1,
            "features": ["shader-f16"],
        }

    def logits(self, handle: int) -> Array:
        """The raw logits the next ``sample`` would use (a copy), for tests."""
        s = self._session(handle)
        if s.logits is None:
            raise RuntimeError("no logits yet")
        return np.array(s.logits, copy=True)

    # -- helpers -------------------------------------------------------------------------------

    def _session(self, handle: int) -> _Session:
        try:
            return self._sessions[handle]
        except KeyError:
            raise ModelNotLoadedError(f"no model loaded with handle {handle}", handle=handle) from None

    def _grammars(self, s: _Session) -> Grammars:
        self._decoder(s)
        assert s.grammars is not None
        return s.grammars

    @staticmethod
    def _decoder(s: _Session) -> tuple[LlamaModel, KVCache]:
        if s.decoder is None or s.cache is None:
            raise IncorrectPipelineLoadedError(
                f"model_type {s.config.get('model_type')!r} cannot generate text",
                model_type=s.config.get("model_type"),
            )
        return s.decoder, s.cache

    @staticmethod
    def _ensure_room(s: _Session, cache: KVCache, n: int) -> None:
        if cache.length + n > cache.capacity:
            raise ContextWindowSizeExceededError(
                f"{cache.length} + {n} tokens exceed the context window of {cache.capacity}",
                length=cache.length,
                added=n,
                context_window_size=cache.capacity,
            )

    def _decode_one(self, s: _Session, token: int) -> None:
        model, cache = self._decoder(s)
        self._ensure_room(s, cache, 1)
        started = time.perf_counter()
        s.logits = model.forward([token], cache)
        s.counters["decode_tokens"] += 1
        s.counters["decode_seconds"] += time.perf_counter() - started
