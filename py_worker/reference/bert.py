"""NumPy BERT encoder: the host reference for the ``bert`` embedding models (all-MiniLM-L6-v2).

Reads HF BERT tensor names (``embeddings.*``, ``encoder.layer.{i}.*``) as an MLC q0f32 directory
stores them, and returns what the kernel ABI's ``embed`` returns: mean-pooled, L2-normalised
sentence vectors. The WGSL kernels are checked against this, and this against sentence-transformers.
Host only (NumPy); never imported inside Pyodide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray; numpy is untyped for mypy here (pyproject ignores its imports)


def _erf(x: Array) -> Array:
    """erf to ~1e-7 absolute (Abramowitz & Stegun 7.1.26); NumPy has none and scipy is not a dependency."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def gelu(x: Array) -> Array:
    """Exact (erf) GELU, as BERT's ``hidden_act: "gelu"`` means, not the tanh approximation."""
    return 0.5 * x * (1.0 + _erf(x * 0.7071067811865476))


def layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


@dataclass
class BertConfig:
    """The few numbers the forward pass needs (from ``mlc-chat-config.json``'s ``model_config``)."""

    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    layer_norm_eps: float = 1e-12
    max_length: int = 256
    normalize: bool = True
    cls_token_id: int | None = None
    sep_token_id: int | None = None

    @classmethod
    def from_chat_config(cls, config: Mapping[str, Any]) -> BertConfig:
        mc = config.get("model_config", config)
        return cls(
            hidden_size=int(mc["hidden_size"]),
            num_attention_heads=int(mc["num_attention_heads"]),
            num_hidden_layers=int(mc["num_hidden_layers"]),
            layer_norm_eps=float(mc.get("layer_norm_eps", 1e-12)),
            max_length=int(config.get("context_window_size", mc.get("max_length", 256))),
            normalize=bool(config.get("normalize", True)),
            cls_token_id=_opt_int(config.get("cls_token_id")),
            sep_token_id=_opt_int(config.get("sep_token_id")),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


class BertEncoder:
    """BERT forward in f32: embeddings + LayerNorm, N post-LN layers of MHA + GELU FFN, mean pool."""

    def __init__(self, params: Mapping[str, Array], config: BertConfig) -> None:
        self.p = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
        self.cfg = config

    def _linear(self, x: Array, name: str) -> Array:
        return x @ self.p[name + ".weight"].T + self.p[name + ".bias"]

    def _layer(self, h: Array, i: int, mask_add: Array) -> Array:
        pre = f"encoder.layer.{i}."
        b, s, d = h.shape
        nh = self.cfg.num_attention_heads
        hd = d // nh

        def heads(t: Array) -> Array:
            return t.reshape(b, s, nh, hd).transpose(0, 2, 1, 3)

        q = heads(self._linear(h, pre + "attention.self.query"))
        k = heads(self._linear(h, pre + "attention.self.key"))
        v = heads(self._linear(h, pre + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hd)) + mask_add
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, d)
        eps = self.cfg.layer_norm_eps
        attn = self._linear(ctx, pre + "attention.output.dense") + h
        h = layer_norm(attn, self.p[pre + "attention.output.LayerNorm.weight"],
                       self.p[pre + "attention.output.LayerNorm.bias"], eps)
        ffn = self._linear(gelu(self._linear(h, pre + "intermediate.dense")), pre + "output.dense") + h
        return layer_norm(ffn, self.p[pre + "output.LayerNorm.weight"],
                          self.p[pre + "output.LayerNorm.bias"], eps)

    def hidden_states(self, ids: Array, mask: Array) -> Array:
        """Last-layer token states ``[batch, seq, hidden]`` for padded ``ids`` and 0/1 ``mask``."""
        s = ids.shape[1]
        emb = (self.p["embeddings.word_embeddings.weight"][ids]
               + self.p["embeddings.position_embeddings.weight"][:s][None]
               + self.p["embeddings.token_type_embeddings.weight"][0][None, None])
        h = layer_norm(emb, self.p["embeddings.LayerNorm.weight"], self.p["embeddings.LayerNorm.bias"],
                       self.cfg.layer_norm_eps).astype(np.float32)
        # Padding keys get a large negative score (HF uses the dtype's min; any value that underflows works).
        mask_add = ((1.0 - mask[:, None, None, :]) * np.float32(-1e9)).astype(np.float32)
        for i in range(self.cfg.num_hidden_layers):
            h = self._layer(h, i, mask_add).astype(np.float32)
        return h

    def with_specials(self, ids: list[int]) -> list[int]:
        """``[CLS] ids [SEP]``, truncated to ``max_length`` as HF truncates (the specials stay).

        Tokenizers here encode without special tokens (web-tokenizers does), so the encoder adds
        the ones the config names; ids that already start with [CLS] and end with [SEP] are
        taken as they are. Without ``cls_token_id``/``sep_token_id`` ids are only truncated.
        """
        cls, sep = self.cfg.cls_token_id, self.cfg.sep_token_id
        if cls is None or sep is None:
            return ids[: self.cfg.max_length]
        if len(ids) >= 2 and ids[0] == cls and ids[-1] == sep:
            ids = ids[1:-1]
        return [cls, *ids[: self.cfg.max_length - 2], sep]

    def embed(self, batch: list[list[int]]) -> list[list[float]]:
        """The kernel ABI's ``embed``: one mean-pooled (L2-normalised) vector per id list.

        Sequences run in padded groups of similar length (the mask keeps padding out of the
        attention and the mean), so one long input does not make every short one cost as much.
        """
        if not batch:
            raise ValueError("embed needs a non-empty batch")
        seqs = [self.with_specials(list(x)) for x in batch]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out: list[list[float]] = [[] for _ in seqs]
        while order:
            limit = 2 * len(seqs[order[0]])
            group = [i for i in order if len(seqs[i]) <= limit]
            order = order[len(group) :]
            for i, vec in zip(group, self._embed_padded([seqs[i] for i in group]), strict=True):
                out[i] = vec
        return out

    def _embed_padded(self, seqs: list[list[int]]) -> list[list[float]]:
        s = max(len(x) for x in seqs)
        ids = np.zeros((len(seqs), s), dtype=np.int64)
        mask = np.zeros((len(seqs), s), dtype=np.float32)
        for r, x in enumerate(seqs):
            ids[r, : len(x)] = x
            mask[r, : len(x)] = 1.0
        h = self.hidden_states(ids, mask)
        pooled = (h * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        if self.cfg.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return [[float(v) for v in row] for row in pooled]
