"""MLC's tensor names for each decoder architecture we run, and their renaming to the reference's.

A model directory as MLC publishes it names its tensors after MLC's own module tree
(mlc-ai/mlc-llm ``python/mlc_llm/model/<arch>/<arch>_model.py``); Qwen2's list is also checked
against the parameter list embedded in MLC's own library (``../shared/mlc-libs/meta/``). The
reference forward pass (``llama.py``) reads one set of names, MLC's Llama ones plus a few of its
own for roles Llama lacks; ``reference_weights`` renames a directory's tensors into them (joining
Gemma 3's separate q, k, v into the fused rows) and names the first missing tensor;
``model_config`` flattens Gemma 3's nested chat-config ``model_config``.
``js_glue/kernels/llama.js`` (``MLC_NAMES``) holds the same table for the WGSL loader;
tests/kernels/test_mlc_zoo.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from py_worker.errors import ModelLoadError, UnsupportedArchitectureError

Array = Any  # numpy.ndarray

LLAMA_ROLES: dict[str, str] = {
    "qkv": "self_attn.qkv_proj",  # q, k, v rows fused in that order
    "o": "self_attn.o_proj",
    "gate_up": "mlp.gate_up_proj",  # gate rows, then up rows
    "down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "mlp_norm": "post_attention_layernorm",  # Llama's name for the norm before the MLP
}
"""Role -> MLC's Llama stem inside ``model.layers.{i}.``; also the reference's names for them.
Every table lists its roles in MLC's parameter order (module definition order), the order
MLC's shards and its library's parameter list follow."""

EXTRA_ROLES: dict[str, str] = {
    "q_norm": "self_attn.q_norm",  # RMSNorm over each q head (Qwen3)
    "k_norm": "self_attn.k_norm",
    "attn_out_norm": "attn_output_norm",  # RMSNorm of the attention output (Gemma 2)
    "mlp_out_norm": "mlp_output_norm",  # RMSNorm of the MLP output (Gemma 2)
}
"""The reference's stems for roles MLC's Llama has not (the reference's own names)."""

LINEARS = ("qkv", "q", "k", "v", "o", "gate_up", "down")

SPLIT_QKV = ("q", "k", "v")
"""Roles of an architecture that keeps q, k and v as three linears (Gemma 3); the reference and
the kernels fuse them into ``qkv`` rows in that order."""


@dataclass(frozen=True)
class Naming:
    """Where one architecture keeps its tensors (stems without ``.weight`` / ``.q_weight``)."""

    roles: Mapping[str, str]
    """Role -> stem inside a layer, for every role this architecture has, in MLC's order."""
    embed: str = "model.embed_tokens"
    layer: str = "model.layers.{i}."
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"
    biases: tuple[str, ...] = ()
    """Roles whose linear always has a bias (``<stem>.bias``)."""
    optional_biases: tuple[str, ...] = ()
    """Roles with a bias when the model config's ``attention_bias`` is true (Qwen3)."""
    always_tied: bool = False
    """The lm_head is the embedding whatever ``tie_word_embeddings`` says (Gemma has no lm_head)."""

    def bias_roles(self, model_config: Mapping[str, Any]) -> set[str]:
        return set(self.biases) | (set(self.optional_biases) if model_config.get("attention_bias") else set())

    def tied(self, model_config: Mapping[str, Any]) -> bool:
        return self.always_tied or bool(model_config.get("tie_word_embeddings"))


_QWEN2 = {**LLAMA_ROLES, "qkv": "self_attn.c_attn"}

_GEMMA3 = Naming(
    {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "q_norm": "self_attn.q_norm",
        "k_norm": "self_attn.k_norm",
        "gate_up": "mlp.gate_up_proj",
        "down": "mlp.down_proj",
        "attn_norm": "input_layernorm",
        "attn_out_norm": "post_attention_layernorm",  # on the attention output, as in Gemma 2
        "mlp_norm": "pre_feedforward_layernorm",
        "mlp_out_norm": "post_feedforward_layernorm",
    },
    embed="language_model.model.embed_tokens",
    layer="language_model.model.layers.{i}.",
    final_norm="language_model.model.norm",
    lm_head="language_model.lm_head",
    always_tied=True,
)

NAMINGS: dict[str, Naming] = {
    # mlc_llm/model/llama/llama_model.py: HF's q/k/v and gate/up fused, HF's other names kept.
    "llama": Naming(LLAMA_ROLES),
    "mistral": Naming(LLAMA_ROLES),
    # qwen2_model.py: the fused projection is `c_attn`, with a bias (MLC's Qwen2 library agrees).
    "qwen2": Naming(_QWEN2, biases=("qkv",)),
    # qwen3_model.py: c_attn (bias only with attention_bias), per-head q_norm / k_norm.
    "qwen3": Naming(
        {
            "qkv": "self_attn.c_attn",
            "o": "self_attn.o_proj",
            "q_norm": "self_attn.q_norm",
            "k_norm": "self_attn.k_norm",
            "gate_up": "mlp.gate_up_proj",
            "down": "mlp.down_proj",
            "attn_norm": "input_layernorm",
            "mlp_norm": "post_attention_layernorm",
        },
        optional_biases=("qkv", "o"),
    ),
    # phi3_model.py: transformer.embd / transformer.h.N.{ln, mixer.*, mlp.*} / transformer.norm.
    "phi3": Naming(
        {
            "attn_norm": "ln",
            "qkv": "mixer.qkv_proj",
            "o": "mixer.out_proj",
            "gate_up": "mlp.gate_up_proj",
            "down": "mlp.down_proj",
            "mlp_norm": "post_attention_layernorm",
        },
        embed="transformer.embd",
        layer="transformer.h.{i}.",
        final_norm="transformer.norm",
    ),
    # gemma2_model.py: four norms per layer (MLC's loader stores 1 + w), tied embedding always.
    "gemma2": Naming(
        {
            "qkv": "self_attn.qkv_proj",
            "o": "self_attn.o_proj",
            "gate_up": "mlp.gate_up_proj",
            "down": "mlp.down_proj",
            "attn_norm": "input_layernorm",
            "attn_out_norm": "post_attention_layernorm",  # on the attention output, in Gemma 2
            "mlp_norm": "pre_feedforward_layernorm",
            "mlp_out_norm": "post_feedforward_layernorm",
        },
        always_tied=True,
    ),
    # gemma3/gemma3_model.py: everything under `language_model.`, q/k/v NOT fused (three linears),
    # Gemma 2's four norms plus per-head q_norm / k_norm (all stored as 1 + w), tied embedding.
    "gemma3": _GEMMA3,
    "gemma3_text": _GEMMA3,  # MLC's name for the text-only checkpoints (gemma-3-1b)
}
"""model_type -> naming, for every decoder architecture the reference and the kernels run."""

SUPPORTED = tuple(NAMINGS)


def naming(model_type: str) -> Naming:
    """The naming of ``model_type``, or UnsupportedArchitectureError naming it."""
    if model_type not in NAMINGS:
        raise UnsupportedArchitectureError(
            f"model_type {model_type} is not an architecture we run (supported: {', '.join(SUPPORTED)})",
            architecture=model_type,
            supported=list(SUPPORTED),
        )
    return NAMINGS[model_type]


def reference_stem(role: str) -> str:
    return LLAMA_ROLES.get(role) or EXTRA_ROLES[role]


def model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``model_config`` of a chat config as one flat dict of the text model's numbers.

    Most architectures keep them flat. MLC's Gemma 3 nests them: ``model_config.text_config``
    holds the text model's fields, and its ``kwargs`` the Hugging Face keys MLC has no field for
    (``rope_local_base_freq``, ``sliding_window_pattern``, ``sliding_window`` in some releases);
    ``model_config`` itself keeps ``vocab_size``, the context window and the prefill chunk. The
    text config's own numbers win over its kwargs; the outer ones fill what it lacks.
    """
    mc = dict(config.get("model_config") or {})
    text = mc.pop("text_config", None)
    if not isinstance(text, Mapping):
        return mc
    inner = {k: v for k, v in text.items() if k != "kwargs"}
    flat = {**mc, **dict(text.get("kwargs") or {}), **inner}
    if "vocab_size" in mc:  # the embedding's rows: Gemma3Config's, not the text config's
        flat["vocab_size"] = mc["vocab_size"]
    return flat


def reference_weights(config: Mapping[str, Any], weights: Mapping[str, Array]) -> dict[str, Array]:
    """f32 tensors by MLC name (``q_weight``/``q_scale`` already joined) -> the reference's names.

    Raises ModelLoadError naming the stored tensor that is missing (``…q_weight`` for a
    quantised model), so a directory of another naming fails on its first unknown tensor.
    """
    model_type = str(config.get("model_type"))
    n = naming(model_type)
    mc = model_config(config)
    quantised = not str(config.get("quantization", "q0f32")).startswith("q0")

    def take(stem: str, kind: str = "weight", matrix: bool = True) -> Array:
        name = f"{stem}.{kind}"
        if name in weights:
            return weights[name]
        stored = f"{stem}.q_weight" if quantised and matrix and kind == "weight" else name
        raise ModelLoadError(
            f"the model directory has no tensor {stored}", tensor=stored, model_type=model_type
        )

    biases = n.bias_roles(mc)
    out: dict[str, Array] = {
        "model.embed_tokens.weight": take(n.embed),
        "model.norm.weight": take(n.final_norm, matrix=False),
    }
    if not n.tied(mc):
        out["lm_head.weight"] = take(n.lm_head)
    for i in range(int(mc["num_hidden_layers"])):
        src, dst = n.layer.format(i=i), f"model.layers.{i}."
        split: dict[str, list[Array]] = {"weight": [], "bias": []}
        for role, stem in n.roles.items():
            if role in SPLIT_QKV:  # joined below into the reference's fused q|k|v rows
                split["weight"].append(take(src + stem))
                if role in biases:
                    split["bias"].append(take(src + stem, "bias", matrix=False))
                continue
            out[dst + reference_stem(role) + ".weight"] = take(src + stem, matrix=role in LINEARS)
            if role in biases:
                out[dst + reference_stem(role) + ".bias"] = take(src + stem, "bias", matrix=False)
        for kind, parts in split.items():
            if parts:
                out[dst + LLAMA_ROLES["qkv"] + "." + kind] = np.concatenate(parts, axis=0)
    return out
