// A pre-norm decoder on the WGSL kernels, for every architecture of MLC_NAMES (Llama, SmolLM2,
// Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3): weights, KV cache and activations live on the GPU; a
// forward pass is a list of dispatches recorded top to bottom. Weights come from an MLC model
// dir as MLC publishes it (f32 or f16, or MLC q4 words + scales, under MLC's own tensor names)
// or from a GGUF file (each tensor's ggml blocks uploaded byte for byte and dequantised inside
// the kernels). NumPy twin: py_worker/reference/llama.py (+ architectures.py for the names).
// Every position-aware kernel reads the `fwd` uniform (pos, n, step), which the GPU-resident
// decode loop rewrites between steps with a buffer copy, so n decode steps are one submit.

import { namedError } from "./errors.js";
import { Program } from "./program.js";
import { embedF32, embedQ4, embedGgml } from "./wgsl/embed.js";
import { rmsnorm, rmsnormWg } from "./wgsl/rmsnorm.js";
import { matmul, MATMUL_WG } from "./wgsl/matmul.js";
import { gemv, gemvRows, PLAIN_INPUT } from "./wgsl/gemv.js";
import { normInput } from "./wgsl/gemv_norm.js";
import { ropeKvOutput, ropeKvFits } from "./wgsl/gemv_rope_kv.js";
import { mergeInput, MERGE_MAX_INPUTS } from "./wgsl/gemv_merge.js";
import { gluInput } from "./wgsl/gemv_glu.js";
import { rope } from "./wgsl/rope.js";
import { kvAppend } from "./wgsl/kv_append.js";
import { attention } from "./wgsl/attention.js";
import { attentionPartial, attentionCombine, SPLIT } from "./wgsl/attention_split.js";
import { swiglu } from "./wgsl/swiglu.js";
import { geglu } from "./wgsl/geglu.js";
import { headRmsnorm } from "./wgsl/head_rmsnorm.js";
import { softcap } from "./wgsl/softcap.js";
import { sample, OUT_STRIDE, MAX_TOP_LOGPROBS } from "./wgsl/sample.js";
import { sampleBlocks, SAMPLE_BLOCK } from "./wgsl/sample_blocks.js";
import { WG } from "./wgsl/common.js";
import { GGML } from "./wgsl/ggml.js";

/** @typedef {import("./gpu.js").Gpu} Gpu */
/** @typedef {import("./gpu.js").Recorder} Recorder */
/** @typedef {import("./wgsl/gemv.js").GemvInput} GemvInput */
/** @typedef {import("./wgsl/gemv.js").GemvOutput} GemvOutput */
/** @typedef {import("./grammar.js").Constraint} Constraint */
/** @typedef {import("../proxy.d.ts").ChatOptions} ChatOptions */
/**
 * A model's mlc-chat-config.json (or a GGUF's config in its shape: gguf.js ggufConfig), JSON
 * whose fields vary by model.
 * @typedef {Record<string, any>} ChatConfig
 */
/**
 * A tensor as the loaders give it: an MLC one with its dtype (loader.js), a GGUF one with its ggml
 * type id (gguf.js); `shape` outermost first, `bytes` as stored.
 * @typedef {{dtype: string, shape: number[], bytes: Uint8Array}} MlcTensor
 * @typedef {{type: number, shape: number[], bytes: Uint8Array}} GgufTensor
 */
/**
 * One sampling step's parameters as py_worker/kernels.py SamplingParams.to_wire sends them (a
 * missing field takes its neutral value); `uniforms`: the draws in [0, 1), one per step.
 * @typedef {{
 *   temperature?: number, top_p?: number, frequency_penalty?: number, presence_penalty?: number,
 *   repetition_penalty?: number, logit_bias?: [number, number][], history?: number[],
 *   uniforms?: number[], logprobs?: boolean, top_logprobs?: number,
 * }} SampleParams
 */
/**
 * One sampled id, with its log-probability and the most likely ids' ([id, logprob]) when params.logprobs is set.
 * @typedef {{token: number, logprob?: number, top_logprobs?: [number, number][]}} Sampled
 */

const FWD_BYTES = 16;
const PREFILL_TM = 4;
/** decodeSteps submits every this many steps: the GPU starts on them while the CPU records more. */
const FLUSH_STEPS = 4;

/**
 * MLC's tensor names per model_type, from mlc-llm's model definitions
 * (python/mlc_llm/model/<arch>/<arch>_model.py; Qwen2's also from the parameter list of MLC's
 * own library, ../shared/mlc-libs/meta/). Twin of NAMINGS in py_worker/reference/architectures.py
 * (tests/kernels/test_mlc_zoo.py checks they agree). roles: role -> stem inside a layer, in MLC's
 * parameter order; biases: roles whose linear always has a bias; optionalBiases: roles with one
 * when model_config.attention_bias; alwaysTied: no lm_head whatever tie_word_embeddings says.
 * @typedef {{embed: string, layer: string, final_norm: string, lm_head: string, roles: Record<string, string>,
 *   biases?: string[], optionalBiases?: string[], alwaysTied?: boolean}} MlcNaming
 */
const LLAMA_ROLES = {
  qkv: "self_attn.qkv_proj", // q, k, v rows fused in that order
  o: "self_attn.o_proj",
  gate_up: "mlp.gate_up_proj", // gate rows, then up rows
  down: "mlp.down_proj",
  attn_norm: "input_layernorm",
  mlp_norm: "post_attention_layernorm",
};
const LLAMA_LAYOUT = { embed: "model.embed_tokens", layer: "model.layers.{i}.", final_norm: "model.norm", lm_head: "lm_head" };
// Gemma 3: everything under language_model., q/k/v three linears (fused here into qkv rows),
// Gemma 2's four norms plus per-head q_norm / k_norm (MLC stores them all as 1 + w).
const GEMMA3_NAMES = {
  embed: "language_model.model.embed_tokens",
  layer: "language_model.model.layers.{i}.",
  final_norm: "language_model.model.norm",
  lm_head: "language_model.lm_head",
  roles: {
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
    gate_up: "mlp.gate_up_proj",
    down: "mlp.down_proj",
    attn_norm: "input_layernorm",
    attn_out_norm: "post_attention_layernorm",
    mlp_norm: "pre_feedforward_layernorm",
    mlp_out_norm: "post_feedforward_layernorm",
  },
  alwaysTied: true,
};
/** @type {Record<string, MlcNaming>} */
export const MLC_NAMES = {
  llama: { ...LLAMA_LAYOUT, roles: LLAMA_ROLES },
  mistral: { ...LLAMA_LAYOUT, roles: LLAMA_ROLES },
  qwen2: { ...LLAMA_LAYOUT, roles: { ...LLAMA_ROLES, qkv: "self_attn.c_attn" }, biases: ["qkv"] },
  qwen3: {
    ...LLAMA_LAYOUT,
    roles: {
      qkv: "self_attn.c_attn",
      o: "self_attn.o_proj",
      q_norm: "self_attn.q_norm",
      k_norm: "self_attn.k_norm",
      gate_up: "mlp.gate_up_proj",
      down: "mlp.down_proj",
      attn_norm: "input_layernorm",
      mlp_norm: "post_attention_layernorm",
    },
    optionalBiases: ["qkv", "o"],
  },
  phi3: {
    embed: "transformer.embd",
    layer: "transformer.h.{i}.",
    final_norm: "transformer.norm",
    lm_head: "lm_head",
    roles: {
      attn_norm: "ln",
      qkv: "mixer.qkv_proj",
      o: "mixer.out_proj",
      gate_up: "mlp.gate_up_proj",
      down: "mlp.down_proj",
      mlp_norm: "post_attention_layernorm",
    },
  },
  gemma2: {
    ...LLAMA_LAYOUT,
    roles: {
      qkv: "self_attn.qkv_proj",
      o: "self_attn.o_proj",
      gate_up: "mlp.gate_up_proj",
      down: "mlp.down_proj",
      attn_norm: "input_layernorm",
      attn_out_norm: "post_attention_layernorm", // on the attention output, in Gemma 2
      mlp_norm: "pre_feedforward_layernorm",
      mlp_out_norm: "post_feedforward_layernorm",
    },
    alwaysTied: true,
  },
  gemma3: GEMMA3_NAMES,
  gemma3_text: GEMMA3_NAMES, // MLC's model_type of the text-only checkpoints (gemma-3-1b)
};

/** Every model_type this decoder runs. */
export const DECODER_TYPES = Object.keys(MLC_NAMES);

/**
 * The named refusal of a model_type we do not run (UnsupportedArchitectureError, as for GGUF).
 * @param {string} type
 * @param {string[]} [supported]
 */
export function unsupportedArchitecture(type, supported = DECODER_TYPES) {
  return namedError("UnsupportedArchitectureError", `model_type ${type} is not an architecture we run (supported: ${supported.join(", ")})`, {
    architecture: type,
    supported,
  });
}

/**
 * model_config as one flat object of the text model's numbers. MLC's Gemma 3 nests them:
 * model_config.text_config holds the text model's fields and, under kwargs, the Hugging Face
 * keys MLC has no field for (rope_local_base_freq, sliding_window_pattern, sliding_window);
 * model_config keeps vocab_size, the context window and the prefill chunk. The text config's
 * own numbers win over its kwargs, the outer ones fill the rest. Twin of model_config in
 * py_worker/reference/architectures.py.
 * @param {ChatConfig} config
 * @returns {Record<string, any>}
 */
export function flatModelConfig(config) {
  const { text_config: text, ...mc } = config.model_config || {};
  if (!text || typeof text !== "object") return mc;
  const { kwargs, ...inner } = text;
  const flat = { ...mc, ...(kwargs || {}), ...inner };
  if ("vocab_size" in mc) flat.vocab_size = mc.vocab_size;
  return flat;
}

/**
 * A decoder's dimensions and quirks (llamaDims): what the WGSL generators read. ropeScaling is the
 * config's rope_scaling JSON (its keys depend on its kind: ropeFrequencies); act "gelu_tanh" or "silu".
 * @typedef {{
 *   type: string, hidden: number, inter: number, heads: number, kvHeads: number, headDim: number,
 *   rotaryDim: number, layers: number, eps: number, theta: number, ropeScaling: Record<string, any> | null,
 *   vocab: number, ctx: number, chunk: number, tied: boolean, ropeInterleaved: boolean, act: string,
 *   embedScale: number, attnScale: number | undefined, attnSoftcap: number, finalSoftcap: number,
 *   window: number, slidingLayers: boolean[], localTheta: number, kvF16?: boolean,
 * }} LlamaDims
 * kvF16: the KV cache holds f16 (LlamaModel.create sets it; llamaDims leaves it out).
 */

/** Gemma 3: every 6th layer attends to every key, the others within the window (a config's pattern wins). */
const SLIDING_PATTERN = 6;

/**
 * Model dimensions and quirks from mlc-chat-config.json (MLC's keys). For the numbers MLC
 * compiles into its library (context window, prefill chunk) the chat config's top level wins
 * over model_config (which holds the model's own, e.g. 131072 for Llama 3.2); overrides win over
 * both. A sliding window (Mistral's sliding_window_size, Gemma 2's sliding_window) caps the KV
 * cache at the window, as MLC does for Gemma 2: inside it, windowed and full attention agree.
 * Gemma 3 is not capped: layer i with (i + 1) % pattern != 0 attends within its window (keys
 * p - window < j <= p) with RoPE base rope_local_base_freq, the others to the whole cache.
 * @param {ChatConfig} config
 * @param {ChatOptions} [overrides]
 * @returns {LlamaDims}
 */
export function llamaDims(config, overrides = {}) {
  const mc = flatModelConfig(config);
  /** @param {string} k @param {unknown} [d] */
  const pick = (k, d) => overrides[k] ?? mc[k] ?? config[k] ?? d;
  /** @param {string} k @param {number} d */
  const top = (k, d) => overrides[k] ?? (config[k] > 0 ? config[k] : null) ?? (mc[k] > 0 ? mc[k] : null) ?? d;
  const type = config.model_type || "llama";
  const gemma = type.startsWith("gemma");
  const hidden = pick("hidden_size");
  const heads = pick("num_attention_heads");
  const headDim = pick("head_dim", hidden / heads);
  let ctx = top("context_window_size", 2048);
  const sliding = [mc.sliding_window, mc.sliding_window_size].find((w) => w > 0);
  const perLayer = type.startsWith("gemma3");
  if (sliding && !perLayer) ctx = Math.min(ctx, sliding);
  const layers = pick("num_hidden_layers");
  const pattern = mc.sliding_window_pattern || SLIDING_PATTERN;
  const window = perLayer && sliding ? sliding : 0;
  return {
    type,
    hidden,
    inter: pick("intermediate_size"),
    heads,
    kvHeads: pick("num_key_value_heads", heads),
    headDim,
    rotaryDim: Math.trunc(headDim * (mc.partial_rotary_factor ?? 1)),
    layers,
    eps: pick("rms_norm_eps", 1e-6),
    theta: mc.rope_theta ?? mc.position_embedding_base ?? config.rope_theta ?? 10000,
    ropeScaling: mc.rope_scaling || null,
    vocab: pick("vocab_size"),
    ctx,
    chunk: top("prefill_chunk_size", 128),
    tied: gemma || !!pick("tie_word_embeddings", false),
    ropeInterleaved: !!pick("rope_interleaved", false),
    act: gemma ? "gelu_tanh" : "silu",
    embedScale: gemma ? Math.sqrt(hidden) : 1,
    attnScale: mc.query_pre_attn_scalar ? mc.query_pre_attn_scalar ** -0.5 : undefined,
    attnSoftcap: mc.attn_logit_softcapping || 0,
    finalSoftcap: mc.final_logit_softcapping || 0,
    window,
    slidingLayers: Array.from({ length: layers }, (_, i) => !!window && (i + 1) % pattern !== 0),
    localTheta: mc.rope_local_base_freq ?? 10000,
  };
}

/**
 * Per-pair RoPE frequencies (float64, rotaryDim/2 of them) and the cos/sin gain. Llama 3
 * scaling slows the low frequencies by `factor` with a smooth ramp between low_freq_factor and
 * high_freq_factor (MLC's rope_freq_llama3, HF's _compute_llama3_parameters); LongRoPE (Phi-3)
 * divides pair i by short_factor[i] while the context stays within
 * original_max_position_embeddings (else long_factor) and scales cos/sin by
 * sqrt(1 + ln(s) / ln(original)), s = max_position_embeddings / original.
 * @param {Pick<LlamaDims, "rotaryDim" | "theta" | "ropeScaling" | "ctx">} d
 */
function ropeFrequencies({ rotaryDim, theta, ropeScaling, ctx }) {
  const inv = Array.from({ length: rotaryDim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / rotaryDim));
  const rs = ropeScaling || {};
  const kind = rs.rope_type || rs.type;
  if (kind === "llama3") {
    const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: old } = rs;
    const freqs = inv.map((f) => {
      const smooth = Math.min(1, Math.max(0, ((old / (2 * Math.PI)) * f) / (high - low) - low / (high - low)));
      return ((1 - smooth) * f) / factor + smooth * f;
    });
    return { freqs, gain: 1 };
  }
  if (kind === "linear") return { freqs: inv.map((f) => f / rs.factor), gain: 1 }; // Gemma 3 4B+ (global layers)
  if (kind === "longrope" || kind === "su") {
    const original = rs.original_max_position_embeddings;
    const ext = ctx > original ? rs.long_factor : rs.short_factor;
    const scale = rs.max_position_embeddings / original;
    const gain = scale > 1 ? Math.sqrt(1 + Math.log(scale) / Math.log(original)) : 1;
    return { freqs: inv.map((f, i) => f / ext[i]), gain };
  }
  if (kind && kind !== "default") {
    throw namedError("ModelLoadError", `RoPE scaling ${kind} is not implemented`, { rope_type: kind });
  }
  return { freqs: inv, gain: 1 };
}

/**
 * gain * cos/sin of position * freq, computed in float64, stored f32 as [ctx, rotaryDim/2, 2].
 * @param {Pick<LlamaDims, "rotaryDim" | "theta" | "ropeScaling" | "ctx">} d
 */
function ropeTable(d) {
  const { freqs, gain } = ropeFrequencies(d);
  const half = freqs.length;
  const tab = new Float32Array(d.ctx * half * 2);
  for (let i = 0; i < half; i++) {
    for (let p = 0; p < d.ctx; p++) {
      tab[(p * half + i) * 2] = Math.cos(p * freqs[i]) * gain;
      tab[(p * half + i) * 2 + 1] = Math.sin(p * freqs[i]) * gain;
    }
  }
  return tab;
}

/** IEEE half -> float (for f16 norms and scales, widened once at load). @param {number} h */
function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * A tensor's bytes as a typed array ready for upload (f16 widened to f32 unless kept).
 * @param {Pick<MlcTensor, "dtype" | "bytes">} t
 * @param {boolean} [keepF16]
 */
function tensorData(t, keepF16 = false) {
  if (t.dtype === "float16" && keepF16) return t.bytes;
  if (t.dtype === "float16") {
    const h = new Uint16Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 2);
    return Float32Array.from(h, halfToFloat);
  }
  if (t.dtype === "float32" || t.dtype === "uint32" || t.dtype === "int32") return t.bytes;
  throw namedError("ModelLoadError", `unsupported tensor dtype ${t.dtype}`);
}

/**
 * An F32 or F16 GGUF vector (a norm or a bias) as f32 data; other types are refused by name.
 * @param {GgufTensor} t
 * @param {string} name
 */
function ggufFloats(t, name) {
  if (t.type !== GGML.F32 && t.type !== GGML.F16) {
    throw namedError("ModelLoadError", `${name} is ggml type ${t.type}; norms and biases must be F32 or F16`, {
      tensor: name,
      ggml_type: t.type,
    });
  }
  const data = tensorData({ dtype: t.type === GGML.F32 ? "float32" : "float16", bytes: t.bytes });
  return new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
}

/**
 * One row range of a linear's weights on the GPU. #compile sets the rest before any forward pass:
 * `embedPipe` (embedding parts: their lookup's pipeline), `pipes` (pipeline name by row tile TM) and,
 * on the GPU set, `rows` (output rows per GEMV workgroup).
 * @typedef {{kind: "f32" | "f16" | "q4" | "ggml", type?: number, bufs: GPUBuffer[], N: number, yoff: number, bias: GPUBuffer | null,
 *   embedPipe: string, pipes: Record<number, string>, rows: number}} LinearPart
 */
/**
 * One decoder layer on the GPU: its norms' weights and its linears, by #upload's field names.
 * Qwen3 and Gemma 3 norm each q and k head (qNorm and kNorm, or neither); Gemma 2 and 3 norm the
 * attention and MLP outputs too (attnOutNorm, mlpOutNorm).
 * @typedef {{inNorm: GPUBuffer, qkv: LinearPart[], o: LinearPart[], postNorm: GPUBuffer, gateUp: LinearPart[],
 *   down: LinearPart[], attnOutNorm?: GPUBuffer, mlpOutNorm?: GPUBuffer}
 *   & ({qNorm: GPUBuffer, kNorm: GPUBuffer} | {qNorm?: undefined, kNorm?: undefined})} Layer
 */
/** A layer's linears by field name. @typedef {"qkv" | "o" | "gateUp" | "down"} LayerLinear */

export class LlamaModel extends Program {
  /** @type {string} "gpu" (split-K GEMVs, split attention) or "cpu" (register tiles); set by create. */
  kernels;
  // Set while the constructor uploads the weights and allocates the caches:
  /** @type {LinearPart[]} */
  embedParts;
  /** @type {LinearPart[]} */
  lmHead;
  /** @type {Layer[]} */
  layers;
  /** @type {GPUBuffer[]} */
  kc;
  /** @type {GPUBuffer[]} */
  vc;
  /** @type {number} */
  maxSteps;
  /** @type {boolean} q4 scales stay f16 (the adapter has shader-f16) */
  f16Scales;
  /** @type {boolean} f16 matrices (q0f16) stay f16 */
  f16Weights;
  /** @type {boolean} the decode GEMVs of q4f16 weights do f16 arithmetic in each group (gemv.js f16Math) */
  f16Math;
  /** @type {GPUBuffer} */
  finalNorm;
  /** @type {boolean} Gemma 2's norms on the attention and MLP outputs */
  sandwich;
  /** @type {GPUBuffer} where a sandwich's block output lands before its norm (made only then, else null) */
  blockOut;
  // The activations, tables and sampling buffers (#allocate, #ensureSteps say what each holds).
  /** @type {GPUBuffer} */ fwd;
  /** @type {GPUBuffer} */ fwd1;
  /** @type {GPUBuffer} */ ids;
  /** @type {GPUBuffer} */ x;
  /** @type {GPUBuffer} */ xn;
  /** @type {GPUBuffer} */ qkv;
  /** @type {GPUBuffer} */ att;
  /** @type {GPUBuffer} */ gu;
  /** @type {GPUBuffer} */ act;
  /** @type {GPUBuffer} */ xlast;
  /** @type {GPUBuffer} */ xlastn;
  /** @type {GPUBuffer} */ logitsBuf;
  /** @type {GPUBuffer} */ ropeTab;
  /** @type {GPUBuffer} */ ropeLocal;
  /** @type {GPUBuffer} */ sp;
  /** @type {GPUBuffer} */ bias;
  /** @type {GPUBuffer} */ counts;
  /** @type {GPUBuffer} */ mask;
  /** @type {GPUBuffer} */ work;
  /** @type {GPUBuffer} */ sampleBlocks;
  /** @type {GPUBuffer} */ attnPart;
  /** @type {GPUBuffer} */ draws;
  /** @type {GPUBuffer} */ fwdTable;
  /** @type {GPUBuffer} */ out;
  // Set by #compile: which element-wise kernels ride in the GPU set's decode GEMVs.
  /** @type {boolean} RoPE and the KV append in the qkv GEMV (gemv_rope_kv.js) */
  ropeInGemv;
  /** @type {boolean} the split attention's merge in the o_proj GEMV (gemv_merge.js) */
  mergeInGemv;

  /**
   * Upload weights, allocate caches and compile every pipeline (progress per shader). kvF16: the
   * KV cache holds f16 (halving its bytes and attention's reads of it); by default where the
   * device has shader-f16 and is not a CPU backend (lavapipe converts f16 slowly: with an f16
   * cache SmolLM2's prefill of 448 tokens took 2.5x as long, its decode 1.4x). True without
   * shader-f16 is a ShaderF16SupportError. f16Math: the decode GEMVs of q4 weights with f16
   * scales (q4f16_1) do f16 arithmetic inside each 32-input group (gemv.js), with the same
   * error; off unless asked for: on an H200 (Vulkan, bench/gemv.py) it made gate_up 0.91x,
   * down 0.86x and qkv 0.94x as fast as the f32 arithmetic. It takes effect only where there
   * are such GEMVs (the "gpu" set; the field says whether it did).
   * @param {Gpu} gpu
   * @param {ChatConfig} config
   * @param {Map<string, MlcTensor> | Map<string, GgufTensor>} tensors GGUF ones where config.source is "gguf"
   * @param {ChatOptions} overrides
   * @param {(fraction: number, text: string) => void} progress
   * @param {string} [kernels] "gpu" or "cpu" (the field)
   * @param {number} [maxBinding] most bytes one weight buffer may hold (tests of the splitting)
   * @param {boolean} [kvF16]
   * @param {boolean} [f16Math]
   */
  static async create(gpu, config, tensors, overrides, progress, kernels = gpu.isCpu ? "cpu" : "gpu", maxBinding = Infinity, kvF16 = gpu.hasF16 && !gpu.isCpu, f16Math = false) {
    for (const [wanted, what] of [[kvF16, "an f16 KV cache"], [f16Math, "f16 arithmetic"]]) {
      if (wanted && !gpu.hasF16) {
        throw namedError("ShaderF16SupportError", `${what} needs the WebGPU feature shader-f16, which this device lacks`, {
          feature: "shader-f16",
        });
      }
    }
    const dims = { ...llamaDims(config, overrides), kvF16 };
    const m = new LlamaModel(gpu, config, dims, tensors, config.source === "gguf", maxBinding);
    m.kernels = kernels;
    m.f16Math = !!f16Math && m.f16Scales && kernels === "gpu";
    await m.#compile(progress);
    return m;
  }

  /**
   * @param {Gpu} gpu
   * @param {ChatConfig} config
   * @param {LlamaDims} dims
   * @param {Map<string, MlcTensor> | Map<string, GgufTensor>} tensors GGUF ones where `gguf`
   * @param {boolean} [gguf]
   * @param {number} [maxBinding]
   */
  constructor(gpu, config, dims, tensors, gguf = false, maxBinding = Infinity) {
    super(gpu);
    this.config = config;
    // Most bytes one weight buffer may hold: the adapter's binding limit (or a smaller cap).
    this.maxBinding = Math.min(maxBinding, gpu.device.limits.maxStorageBufferBindingSize);
    this.d = dims;
    this.qkvLen = (dims.heads + 2 * dims.kvHeads) * dims.headDim;
    this.len = 0;
    this.sampledOnDevice = false;
    this.stats = { prefill_tokens: 0, prefill_seconds: 0, decode_tokens: 0, decode_seconds: 0 };
    this.#upload(tensors, gguf);
    this.#allocate();
  }

  /**
   * Weights to GPU buffers. A linear layer is a list of parts, each {kind: "f32" | "f16" | "q4" |
   * "ggml", type (ggml), bufs (weight buffers in binding order), N (output columns), yoff (first
   * column), bias}; parts of one layer write side by side into one output row (fused q|k|v,
   * gate|up). MLC dirs have one part per layer, found by MLC's names for the model_type
   * (MLC_NAMES), or several row ranges where a tensor is larger than the adapter's
   * maxStorageBufferBindingSize (split, not refused; the embedding too, one lookup per range).
   * A missing tensor is a ModelLoadError naming it. Where the adapter has shader-f16, q4f16_1
   * scales and q0f16 matrices stay f16 (the kernels read them as f16); otherwise they, like f16
   * norms and biases, are widened.
   * @param {Map<string, any>} tensors MlcTensor values, or GgufTensor ones where `gguf` (the flag says which)
   * @param {boolean} gguf
   */
  #upload(tensors, gguf) {
    if (gguf) return this.#uploadGguf(tensors);
    const d = this.d;
    const names = MLC_NAMES[d.type];
    if (!names) throw unsupportedArchitecture(d.type);
    const scale = [...tensors.keys()].find((n) => n.endsWith(".q_scale"));
    this.f16Scales = !!scale && tensors.get(scale).dtype === "float16" && this.gpu.hasF16;
    const matrix = [...tensors.values()].find((t) => t.shape.length === 2);
    this.f16Weights = !scale && !!matrix && matrix.dtype === "float16" && this.gpu.hasF16;
    const quantised = !!scale;
    /** @param {string} name */
    const missing = (name) =>
      namedError("ModelLoadError", `the model directory has no tensor ${name} (model_type ${d.type})`, {
        tensor: name,
        model_type: d.type,
      });
    /** @param {string} name @returns {MlcTensor} */
    const need = (name) => {
      const t = tensors.get(name);
      if (!t) throw missing(name);
      return t;
    };
    /** @param {string} label @param {MlcTensor} t @param {boolean} [keep] */
    const upload = (label, t, keep = false) => this.own("storage", tensorData(t, keep), label);
    /** @param {string} name */
    const get = (name) => upload(name, need(name));
    /**
     * Rows [r0, r1) of a row-major tensor, as a view (no copy).
     * @param {MlcTensor} t @param {number} r0 @param {number} r1 @returns {MlcTensor}
     */
    const rows = (t, r0, r1) => {
      const per = t.bytes.byteLength / t.shape[0];
      return { ...t, shape: [r1 - r0, ...t.shape.slice(1)], bytes: t.bytes.subarray(r0 * per, r1 * per) };
    };
    /** @type {(stem: string, N: number, biasName?: string | null, yoff0?: number) => LinearPart[]} */
    const linear = (stem, N, biasName = null, yoff0 = 0) => {
      const kind = quantised ? "q4" : this.f16Weights ? "f16" : "f32";
      const ts = quantised ? [need(`${stem}.q_weight`), need(`${stem}.q_scale`)] : [need(`${stem}.weight`)];
      const keep = quantised ? [false, this.f16Scales] : [this.f16Weights];
      const bias = biasName ? need(biasName) : null;
      /** @param {MlcTensor} t @param {number} j */
      const widened = (t, j) => (t.dtype === "float16" && !keep[j] ? 2 : 1);
      const rowBytes = Math.max(...ts.map((t, j) => (t.bytes.byteLength / t.shape[0]) * widened(t, j)));
      const step = N * rowBytes <= this.maxBinding ? N : Math.max(8, Math.floor(this.maxBinding / rowBytes / 8) * 8);
      const parts = [];
      for (let r0 = 0; r0 < N; r0 += step) {
        const r1 = Math.min(N, r0 + step);
        /** @param {MlcTensor} t */
        const part = (t) => (step === N ? t : rows(t, r0, r1));
        const label = step === N ? stem : `${stem}[${r0}:${r1}]`;
        const bufs = ts.map((t, j) => upload(label, part(t), keep[j]));
        parts.push(/** @type {LinearPart} */ ({ kind, bufs, N: r1 - r0, yoff: yoff0 + r0, bias: bias && upload(`${biasName}`, part(bias)) }));
      }
      return parts;
    };
    const mc = flatModelConfig(this.config);
    const biases = new Set([...(names.biases || []), ...(mc.attention_bias ? names.optionalBiases || [] : [])]);
    this.embedParts = linear(names.embed, d.vocab);
    this.lmHead = d.tied || names.alwaysTied ? this.embedParts : linear(names.lm_head, d.vocab);
    this.finalNorm = get(`${names.final_norm}.weight`);
    const qRows = d.heads * d.headDim;
    const kvRows = d.kvHeads * d.headDim;
    /** @type {Record<string, number>} */
    const outRows = { qkv: this.qkvLen, q: qRows, k: kvRows, v: kvRows, o: d.hidden, gate_up: 2 * d.inter, down: d.hidden };
    // Gemma 3's separate q, k, v: parts of the one qkv linear, writing their rows of each qkv row.
    /** @type {Record<string, number>} */
    const qkvOffset = { q: 0, k: qRows, v: qRows + kvRows };
    /** @type {Record<string, string>} */
    const field = { qkv: "qkv", o: "o", gate_up: "gateUp", down: "down", attn_norm: "inNorm", mlp_norm: "postNorm",
      q_norm: "qNorm", k_norm: "kNorm", attn_out_norm: "attnOutNorm", mlp_out_norm: "mlpOutNorm" }; // prettier-ignore
    this.layers = [];
    for (let i = 0; i < d.layers; i++) {
      const p = names.layer.replace("{i}", String(i));
      /** @type {any} filled role by role: a Layer once every role of names.roles is in */
      const L = {};
      for (const [role, stem] of Object.entries(names.roles)) {
        const bias = biases.has(role) ? `${p}${stem}.bias` : null;
        if (!(role in outRows)) L[field[role]] = get(`${p}${stem}.weight`);
        else if (role in qkvOffset) L.qkv = [...(L.qkv || []), ...linear(`${p}${stem}`, outRows[role], bias, qkvOffset[role])];
        else L[field[role]] = linear(`${p}${stem}`, outRows[role], bias);
      }
      this.layers.push(L);
    }
  }

  /**
   * GGUF tensors (llama.cpp names: blk.N.attn_q, ...). Parts of a fused linear that share a ggml
   * type are joined row after row into one buffer (rows are independent blocks, so this is
   * lossless); parts of different types (q4_K_M files mix Q4_K and Q6_K) stay separate dispatches.
   * @param {Map<string, GgufTensor>} tensors
   */
  #uploadGguf(tensors) {
    this.f16Scales = false;
    this.f16Weights = false;
    const d = this.d;
    /** @param {string} name */
    const need = (name) => {
      const t = tensors.get(name);
      if (!t) throw namedError("ModelLoadError", `the GGUF has no tensor ${name}`, { tensor: name });
      return t;
    };
    /** @param {string} name */
    const floats = (name) => this.own("storage", ggufFloats(need(name), name), name);
    /**
     * gpu.storage pads to 16 bytes, so a tensor's view is uploaded as it is (no copy).
     * @param {string} name @param {GgufTensor[]} parts
     */
    const raw = (name, parts) => {
      if (parts.length === 1) return this.own("storage", parts[0].bytes, name);
      const out = new Uint8Array(parts.reduce((a, t) => a + t.bytes.byteLength, 0));
      let at = 0;
      for (const t of parts) {
        out.set(t.bytes, at);
        at += t.bytes.byteLength;
      }
      return this.own("storage", out, name);
    };
    /** @param {string[]} names @param {string[]} [biasNames] */
    const linear = (names, biasNames = []) => {
      const ts = names.map(need);
      const K = ts[0].shape[1];
      /** @type {{type: number, members: number[], yoff: number}[]} */
      const parts = [];
      let yoff = 0;
      ts.forEach((t, j) => {
        if (t.shape[1] !== K) throw namedError("ModelLoadError", `${names[j]} has ${t.shape[1]} inputs, expected ${K}`);
        const last = parts.at(-1);
        if (last && last.type === t.type) last.members.push(j);
        else parts.push({ type: t.type, members: [j], yoff });
        yoff += t.shape[0];
      });
      return parts.map((p) => {
        const members = p.members.map((j) => ts[j]);
        const N = members.reduce((a, t) => a + t.shape[0], 0);
        const biasParts = biasNames.length ? p.members.map((j) => need(biasNames[j])) : [];
        const bias = biasParts.length ? this.#joinedFloats(biasParts, `${names[p.members[0]]}.bias`) : null;
        return /** @type {LinearPart} */ ({ kind: "ggml", type: p.type, bufs: [raw(names[p.members[0]], members)], N, yoff: p.yoff, bias });
      });
    };
    this.embedParts = linear(["token_embd.weight"]);
    this.lmHead = tensors.has("output.weight") ? linear(["output.weight"]) : this.embedParts;
    this.finalNorm = floats("output_norm.weight");
    this.layers = [];
    for (let i = 0; i < d.layers; i++) {
      const b = `blk.${i}.`;
      const qkv = ["attn_q", "attn_k", "attn_v"].map((n) => `${b}${n}.weight`);
      const qkvBias = ["attn_q", "attn_k", "attn_v"].map((n) => `${b}${n}.bias`);
      this.layers.push({
        inNorm: floats(`${b}attn_norm.weight`),
        qkv: linear(qkv, tensors.has(qkvBias[0]) ? qkvBias : []),
        o: linear([`${b}attn_output.weight`]),
        postNorm: floats(`${b}ffn_norm.weight`),
        gateUp: linear([`${b}ffn_gate.weight`, `${b}ffn_up.weight`]),
        down: linear([`${b}ffn_down.weight`]),
      });
    }
  }

  /**
   * F32/F16 GGUF vectors joined into one f32 buffer (the q|k|v biases).
   * @param {GgufTensor[]} ts
   * @param {string} label
   */
  #joinedFloats(ts, label) {
    const parts = ts.map((t) => ggufFloats(t, label));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return this.own("storage", out, label);
  }

  #allocate() {
    const { hidden, inter, heads, kvHeads, headDim, ctx, chunk, vocab } = this.d;
    /** @type {Record<"storage" | "uniform", (x: number | ArrayBufferView, label: string) => GPUBuffer>} */
    const g = { storage: (x, l) => this.own("storage", x, l), uniform: (x, l) => this.own("uniform", x, l) };
    const f = 4;
    this.fwd = g.uniform(FWD_BYTES, "fwd");
    this.fwd1 = g.uniform(new Uint32Array([0, 1, 0, 0]), "fwd1");
    this.ids = g.storage(chunk * 4, "ids");
    this.x = g.storage(chunk * hidden * f, "x");
    this.xn = g.storage(chunk * hidden * f, "xn");
    this.qkv = g.storage(chunk * this.qkvLen * f, "qkv");
    this.att = g.storage(chunk * heads * headDim * f, "att");
    this.gu = g.storage(chunk * 2 * inter * f, "gu");
    // Gemma 2 norms the attention and MLP outputs before the residual add: they land here first.
    this.sandwich = !!this.layers[0]?.attnOutNorm;
    this.blockOut = /** @type {GPUBuffer} */ (this.sandwich ? g.storage(chunk * hidden * f, "block-out") : null); // read only where sandwich
    this.act = g.storage(chunk * inter * f, "act");
    this.xlast = g.storage(hidden * f, "xlast");
    this.xlastn = g.storage(hidden * f, "xlastn"); // the CPU set's; the GPU set's lm_head norms in its GEMV
    this.logitsBuf = g.storage(vocab * f, "logits");
    this.ropeTab = g.storage(ropeTable(this.d), "rope");
    // Gemma 3's sliding layers turn q and k by their own base, with no frequency scaling.
    const local = { ...this.d, theta: this.d.localTheta, ropeScaling: null };
    this.ropeLocal = this.d.window ? g.storage(ropeTable(local), "rope-local") : this.ropeTab;
    const kvBytes = ctx * kvHeads * headDim * (this.d.kvF16 ? 2 : f); // [ctx, kvHeads, headDim] of f16 or f32
    this.kc = [];
    this.vc = [];
    for (let i = 0; i < this.d.layers; i++) {
      this.kc.push(g.storage(kvBytes, `k${i}`));
      this.vc.push(g.storage(kvBytes, `v${i}`));
    }
    this.sp = g.uniform(32, "sample-params");
    this.bias = g.storage(vocab * f, "bias");
    this.counts = g.storage(vocab * 4, "counts");
    this.mask = g.storage(Math.ceil(vocab / 32) * 4, "grammar-mask"); // 1 bit per id (grammar.js)
    this.work = g.storage(vocab * f, "work");
    this.sampleBlocks = g.storage(Math.ceil(vocab / SAMPLE_BLOCK) * 16, "sample-blocks"); // (best, id, sum, 0) a block
    this.attnPart = g.storage(heads * Math.ceil(ctx / SPLIT) * (headDim + 2) * f, "attn-partials");
    this.#ensureSteps(1);
  }

  /** Per-step buffers (draws, fwd table, sample output) sized for n steps of one call. @param {number} n */
  #ensureSteps(n) {
    if (this.maxSteps >= n) return;
    this.release([this.draws, this.fwdTable, this.out]);
    this.maxSteps = Math.max(n, 16);
    this.draws = this.own("storage", this.maxSteps * 4, "draws");
    this.fwdTable = this.own("storage", this.maxSteps * FWD_BYTES, "fwd-table");
    this.out = this.own("storage", this.maxSteps * OUT_STRIDE * 4, "sample-out");
  }

  /**
   * WGSL for every pipeline. Decode linears are GEMVs: split-K workgroups on a GPU, register
   * tiles (matmul.js, TM = 1) on the CPU backends; prefill always uses TM x 4 register tiles.
   * Decode attention on a GPU is split over 64-key chunks (attention_split.js), and the GPU
   * set's GEMVs fold in the kernels around them (the hooks below). A linear part's
   * pipeline is named by everything its WGSL depends on, so layers of the same formats share one.
   * @param {(fraction: number, text: string) => void} progress
   */
  async #compile(progress) {
    const d = this.d;
    const splitK = this.kernels === "gpu";
    const norm = splitK ? rmsnormWg : rmsnorm;
    /** @type {Record<string, string>} */
    const src = {};
    for (const part of this.embedParts) {
      // A split table: each range looks up only the ids in [yoff, yoff + N).
      const range = this.embedParts.length > 1 ? { rowStart: part.yoff, rows: part.N } : {};
      part.embedPipe = `embed:${part.yoff}`;
      src[part.embedPipe] = {
        ggml: () => embedGgml(d, /** @type {number} */ (part.type)), // a ggml part has its type
        q4: () => embedQ4(d, this.f16Scales, range),
        f16: () => embedF32(d, true, range),
        f32: () => embedF32(d, false, range),
      }[part.kind]();
    }
    // The GPU set's GEMVs (decode, and the lm_head) take in the element-wise kernels around
    // them (gemv.js hooks): the norms before qkv, gate_up and lm_head, SwiGLU / GeGLU before
    // down, the attention merge before o where it fits in workgroup memory, and RoPE + the KV
    // append after qkv where heads turn whole with no q/k norm and every binding fits.
    const maxStorage = this.gpu.device.limits.maxStorageBuffersPerShaderStage;
    /** @param {LinearPart} part */
    const ropeBindings = (part) => 2 + part.bufs.length + (part.bias ? 1 : 0) + 4; // x, w.., y, bias, norm, table, kc, vc
    this.ropeInGemv =
      splitK && !this.layers[0]?.qNorm && this.layers.every((L) => ropeKvFits(d, L.qkv) && L.qkv.every((p) => ropeBindings(p) <= maxStorage));
    this.mergeInGemv = splitK && d.heads * d.headDim <= MERGE_MAX_INPUTS;
    Object.assign(src, {
      rmsnorm: norm(d),
      ...(this.sandwich ? { rmsnormAdd: norm(d, true) } : {}),
      ...(this.layers[0]?.qNorm ? { headNorm: headRmsnorm(d) } : {}),
      rope: rope(d),
      kv: kvAppend(d),
      attn: attention(d),
      ...(splitK ? { attnPartial: attentionPartial(d) } : {}),
      ...(splitK && !this.mergeInGemv ? { attnCombine: attentionCombine(d) } : {}),
      ...(d.window ? { attnLocal: attention(d, true, d.window) } : {}),
      ...(d.window && splitK ? { attnPartialLocal: attentionPartial(d, d.window) } : {}),
      act: d.act === "gelu_tanh" ? geglu(d) : swiglu(d),
      ...(d.finalSoftcap ? { softcap: softcap(d, d.finalSoftcap) } : {}),
      sampleBlocks: sampleBlocks(d),
      sample: sample(d),
    });
    // [role, K, ldy, accumulate]: o and down add into the residual stream unless their output is
    // normed first (Gemma 2), when they write block-out and rmsnormAdd adds it.
    /** @type {[LayerLinear, number, number, boolean][]} */
    const roles = [
      ["qkv", d.hidden, this.qkvLen, false],
      ["o", d.heads * d.headDim, d.hidden, !this.sandwich],
      ["gateUp", d.hidden, 2 * d.inter, false],
      ["down", d.inter, d.hidden, !this.sandwich],
    ];
    /** @type {Record<LayerLinear | "lmHead", (part: LinearPart) => {input: GemvInput, output?: GemvOutput | null}>} */
    const hooks = {
      qkv: (part) => ({ input: normInput(d), output: this.ropeInGemv ? ropeKvOutput(d, part.yoff, part.N) : null }),
      o: () => ({ input: this.mergeInGemv ? mergeInput(d) : PLAIN_INPUT }),
      gateUp: () => ({ input: normInput(d) }),
      down: () => ({ input: gluInput(d) }),
      lmHead: () => ({ input: normInput(d) }),
    };
    /**
     * @param {LayerLinear | "lmHead"} role @param {LinearPart} part @param {number} K
     * @param {number} ldy @param {boolean} accumulate @param {number} TM
     */
    const add = (role, part, K, ldy, accumulate, TM) => {
      part.pipes ??= {};
      const key = `lin:${role}:${K}x${part.N}:${part.kind}${part.type ?? ""}:${ldy}+${part.yoff}:${!!part.bias}:${accumulate}:${TM}`;
      part.pipes[TM] = key;
      const hook = TM === 1 && splitK ? hooks[role](part) : null;
      if (hook) part.rows = gemvRows({ K, N: part.N, q4: part.kind === "q4", ...hook });
      if (src[key]) return;
      const fmt = {
        q4: part.kind === "q4",
        f16: part.kind === "q4" && this.f16Scales,
        f16w: part.kind === "f16",
        ...(hook && part.kind === "q4" && this.f16Math ? { f16Math: true } : {}),
        ...(part.kind === "ggml" ? { ggml: part.type } : {}),
      };
      const opts = { K, N: part.N, ldy, yoff: part.yoff, bias: !!part.bias, accumulate, ...fmt };
      src[key] = hook ? gemv({ ...opts, ...hook }) : matmul({ ...opts, TM, TN: part.N % 4 === 0 ? 4 : 1 });
    };
    for (const L of this.layers) {
      for (const [role, K, ldy, accumulate] of roles) {
        for (const part of L[role]) for (const TM of [1, PREFILL_TM]) add(role, part, K, ldy, accumulate, TM);
      }
    }
    for (const part of this.lmHead) add("lmHead", part, d.hidden, d.vocab, false, 1);
    await this.compile(src, progress);
  }

  /**
   * Dispatch every part of a linear layer over n rows of `input` (row tiles of tm); `extra`:
   * the GEMV hooks' buffers, bound after the bias.
   * @param {Recorder} rec
   * @param {LinearPart[]} parts
   * @param {GPUBuffer} input
   * @param {GPUBuffer} output
   * @param {number} n
   * @param {number} tm
   * @param {GPUBuffer[]} [extra]
   * @param {GPUBuffer} [fwd]
   */
  #linear(rec, parts, input, output, n, tm, extra = [], fwd = this.fwd) {
    for (const part of parts) {
      const bufs = [fwd, input, ...part.bufs, output];
      if (part.bias) bufs.push(part.bias);
      bufs.push(...extra);
      const name = part.pipes[tm];
      if (tm === 1 && this.kernels === "gpu") this.run(rec, name, bufs, Math.ceil(part.N / part.rows));
      else this.run(rec, name, bufs, Math.ceil(part.N / (part.N % 4 === 0 ? 4 : 1) / MATMUL_WG), Math.ceil(n / tm));
    }
  }

  /**
   * Record the forward pass for n tokens (ids and fwd already on the device); logits of the
   * last. kvEnd = KV length after it (sizes the split attention grid). One token on the GPU
   * set takes the fused GEMVs (#compile): norm+qkv(+RoPE+KV append), attention partials,
   * merge+o_proj, norm+gate_up, act+down a layer, the other kernels only where those cannot.
   * @param {Recorder} rec
   * @param {number} n
   * @param {number} kvEnd
   */
  #forward(rec, n, kvEnd) {
    const d = this.d;
    const tm = n === 1 ? 1 : PREFILL_TM;
    const F = this.fwd;
    const fused = n === 1 && this.kernels === "gpu";
    for (const E of this.embedParts) {
      const perVec4 = E.kind === "f32" || E.kind === "f16";
      this.run(rec, E.embedPipe, [F, this.ids, ...E.bufs, this.x], Math.ceil((n * d.hidden) / (perVec4 ? 4 : 32) / WG));
    }
    for (let i = 0; i < d.layers; i++) {
      const L = this.layers[i];
      const local = d.slidingLayers[i]; // Gemma 3: attends within its window, its own RoPE base
      const ropeTab = local ? this.ropeLocal : this.ropeTab;

      // Attention block: x += [norm](o_proj(attention(rope([norm] q), rope([norm] k), v))).
      if (fused) {
        const ropeKv = this.ropeInGemv ? [ropeTab, this.kc[i], this.vc[i]] : [];
        this.#linear(rec, L.qkv, this.x, this.qkv, 1, 1, [L.inNorm, ...ropeKv]);
      } else {
        this.run(rec, "rmsnorm", [F, this.x, L.inNorm, this.xn], this.#normGroups(n));
        this.#linear(rec, L.qkv, this.xn, this.qkv, n, tm);
      }
      if (!(fused && this.ropeInGemv)) {
        if (L.qNorm) this.run(rec, "headNorm", [F, this.qkv, L.qNorm, L.kNorm], Math.ceil((n * (d.heads + d.kvHeads)) / WG));
        this.run(rec, "rope", [F, ropeTab, this.qkv], Math.ceil((n * (d.heads + d.kvHeads) * d.rotaryDim) / 2 / WG));
        this.run(rec, "kv", [F, this.qkv, this.kc[i], this.vc[i]], Math.ceil((n * d.kvHeads * d.headDim) / WG));
      }
      if (fused) {
        const partial = local ? "attnPartialLocal" : "attnPartial";
        this.run(rec, partial, [F, this.qkv, this.kc[i], this.vc[i], this.attnPart], d.heads, Math.ceil(kvEnd / SPLIT));
        if (!this.mergeInGemv) this.run(rec, "attnCombine", [F, this.attnPart, this.att], Math.ceil((d.heads * d.headDim) / WG));
        this.#residual(rec, L.o, this.mergeInGemv ? this.attnPart : this.att, L.attnOutNorm, n, tm);
      } else {
        const attn = local ? "attnLocal" : "attn";
        this.run(rec, attn, [F, this.qkv, this.kc[i], this.vc[i], this.att], Math.ceil((n * d.heads) / 16));
        this.#residual(rec, L.o, this.att, L.attnOutNorm, n, tm);
      }

      // MLP block: x += [norm](down(act(gate) * up)).
      if (fused) {
        this.#linear(rec, L.gateUp, this.x, this.gu, 1, 1, [L.postNorm]);
        this.#residual(rec, L.down, this.gu, L.mlpOutNorm, n, tm);
      } else {
        this.run(rec, "rmsnorm", [F, this.x, L.postNorm, this.xn], this.#normGroups(n));
        this.#linear(rec, L.gateUp, this.xn, this.gu, n, tm);
        this.run(rec, "act", [F, this.gu, this.act], Math.ceil((n * d.inter) / 4 / WG));
        this.#residual(rec, L.down, this.act, L.mlpOutNorm, n, tm);
      }
    }
    // The GPU set's lm_head norms its input itself; one token's x is already the last row.
    const last = n === 1 ? this.x : this.xlast;
    if (n > 1) rec.copy(this.x, (n - 1) * d.hidden * 4, this.xlast, 0, d.hidden * 4);
    if (this.kernels === "gpu") {
      this.#linear(rec, this.lmHead, last, this.logitsBuf, 1, 1, [this.finalNorm], this.fwd1);
    } else {
      this.run(rec, "rmsnorm", [this.fwd1, last, this.finalNorm, this.xlastn], this.#normGroups(1));
      this.#linear(rec, this.lmHead, this.xlastn, this.logitsBuf, 1, 1, [], this.fwd1);
    }
    if (d.finalSoftcap) this.run(rec, "softcap", [this.logitsBuf], Math.ceil(d.vocab / WG));
  }

  /**
   * x += linear(input), or (Gemma 2) x += rmsnorm(linear(input)) * outNorm through block-out.
   * @param {Recorder} rec
   * @param {LinearPart[]} parts
   * @param {GPUBuffer} input
   * @param {GPUBuffer | undefined} outNorm
   * @param {number} n
   * @param {number} tm
   */
  #residual(rec, parts, input, outNorm, n, tm) {
    if (!outNorm) return this.#linear(rec, parts, input, this.x, n, tm);
    this.#linear(rec, parts, input, this.blockOut, n, tm);
    this.run(rec, "rmsnormAdd", [this.fwd, this.blockOut, outNorm, this.x], this.#normGroups(n));
  }

  /** Workgroups of the RMSNorm dispatch: one per row on a GPU, 8 rows each on the CPU backends. @param {number} n */
  #normGroups(n) {
    return this.kernels === "gpu" ? n : Math.ceil(n / 8);
  }

  /** @param {number} n */
  #checkRoom(n) {
    if (this.len + n > this.d.ctx) {
      throw namedError("ContextWindowSizeExceededError", `KV cache holds ${this.d.ctx} tokens; ${this.len} + ${n} do not fit`, {
        context_window_size: this.d.ctx,
      });
    }
  }

  /** Append ids to the KV cache (in prefill_chunk_size pieces); leaves the last token's logits. @param {Iterable<number>} ids */
  async prefill(ids) {
    const t0 = performance.now();
    const all = Uint32Array.from(ids);
    if (all.length === 0) return;
    this.#checkRoom(all.length);
    for (let s = 0; s < all.length; s += this.d.chunk) {
      const part = all.subarray(s, s + this.d.chunk);
      this.gpu.write(this.ids, part);
      this.gpu.write(this.fwd, new Uint32Array([this.len, part.length, 0, 0]));
      const rec = this.gpu.recorder();
      this.#forward(rec, part.length, this.len + part.length);
      rec.submit();
      this.len += part.length;
    }
    await Promise.race([this.gpu.device.queue.onSubmittedWorkDone(), this.gpu.whenLost]);
    this.gpu.check();
    this.sampledOnDevice = false;
    this.stats.prefill_tokens += all.length;
    this.stats.prefill_seconds += (performance.now() - t0) / 1000;
  }

  /** @param {number} token */
  async decode(token) {
    const t0 = performance.now();
    this.#checkRoom(1);
    this.gpu.write(this.ids, new Uint32Array([token]));
    this.gpu.write(this.fwd, new Uint32Array([this.len, 1, 0, 0]));
    const rec = this.gpu.recorder();
    this.#forward(rec, 1, this.len + 1);
    rec.submit();
    this.len += 1;
    await Promise.race([this.gpu.device.queue.onSubmittedWorkDone(), this.gpu.whenLost]);
    this.gpu.check();
    this.sampledOnDevice = false;
    this.stats.decode_tokens += 1;
    this.stats.decode_seconds += (performance.now() - t0) / 1000;
  }

  /**
   * Upload what sampling needs: params uniform, draws, counts of history, dense logit bias.
   * @param {SampleParams} params
   * @param {number} steps
   * @param {boolean} [masked]
   */
  #prepareSampling(params, steps, masked = false) {
    const vocab = this.d.vocab;
    const draws = Float32Array.from(params.uniforms || [], Number);
    if (draws.length < steps) throw namedError("InvalidRequestFieldError", `need ${steps} uniforms, got ${draws.length}`);
    this.#ensureSteps(steps);
    const counts = new Uint32Array(vocab);
    for (const id of params.history || []) if (id >= 0 && id < vocab) counts[id]++;
    const bias = params.logit_bias || [];
    if (bias.length) {
      const dense = new Float32Array(vocab);
      for (const [id, b] of bias) if (id >= 0 && id < vocab) dense[id] += Number(b);
      this.gpu.write(this.bias, dense);
    }
    const topK = params.logprobs ? Math.min(params.top_logprobs || 0, MAX_TOP_LOGPROBS) : 0;
    const sp = new ArrayBuffer(32);
    new Float32Array(sp, 0, 5).set([
      params.temperature ?? 1,
      params.top_p ?? 1,
      params.frequency_penalty ?? 0,
      params.presence_penalty ?? 0,
      params.repetition_penalty ?? 1,
    ]);
    new Uint32Array(sp, 20, 3).set([bias.length ? 1 : 0, topK, masked ? 1 : 0]);
    this.gpu.write(this.sp, new Uint8Array(sp));
    this.gpu.write(this.counts, counts);
    this.gpu.write(this.draws, draws.subarray(0, Math.max(steps, 1)));
  }

  /** The two sampling stages: every block of ids in parallel (sample_blocks.js), then one workgroup. @param {Recorder} rec */
  #recordSample(rec) {
    const blocks = this.sampleBlocks;
    this.run(rec, "sampleBlocks", [this.sp, this.logitsBuf, this.bias, this.counts, this.mask, this.work, blocks], Math.ceil(this.d.vocab / SAMPLE_BLOCK));
    this.run(rec, "sample", [this.fwd, this.sp, this.draws, this.counts, this.work, this.ids, this.out, blocks], 1);
  }

  /**
   * Samples [first, first + steps) of the output buffer.
   * @param {Recorder} rec
   * @param {number} steps
   * @param {SampleParams} params
   * @param {number} [first]
   * @returns {Promise<Sampled[]>}
   */
  async #readSamples(rec, steps, params, first = 0) {
    const raw = await this.gpu.readback(rec, this.out, steps * OUT_STRIDE * 4, first * OUT_STRIDE * 4);
    const u = new Uint32Array(raw);
    const f = new Float32Array(raw);
    const res = [];
    for (let s = 0; s < steps; s++) {
      const o = s * OUT_STRIDE;
      /** @type {Sampled} */
      const r = { token: u[o] };
      if (params.logprobs) {
        r.logprob = f[o + 1];
        r.top_logprobs = [];
        for (let j = 0; j < u[o + 2]; j++) r.top_logprobs.push([u[o + 4 + 2 * j], f[o + 5 + 2 * j]]);
      }
      res.push(r);
    }
    return res;
  }

  /**
   * Sample from the current logits (rule in py_worker/kernels.py); the id stays on the device
   * too. `grammar` (one matcher's Constraint, grammar.js) masks the step and is advanced.
   * @param {SampleParams} params
   * @param {Constraint | null} [grammar]
   * @returns {Promise<Sampled>}
   */
  async sample(params, grammar = null) {
    this.#prepareSampling(params, 1, !!grammar);
    if (grammar) this.gpu.write(this.mask, await grammar.mask());
    this.gpu.write(this.fwd, new Uint32Array([this.len, 1, 0, 0]));
    const rec = this.gpu.recorder();
    this.#recordSample(rec);
    const [r] = await this.#readSamples(rec, 1, params);
    this.sampledOnDevice = true;
    grammar?.accept(r.token);
    return r;
  }

  /**
   * n x (append the last sampled id, sample the next), submitted every FLUSH_STEPS steps so the
   * GPU runs while the rest is recorded; one readback of n samples.
   * @param {number} n
   * @param {SampleParams} params
   * @param {Constraint | null} [grammar]
   * @returns {Promise<Sampled[]>}
   */
  async decodeSteps(n, params, grammar = null) {
    if (n <= 0) return [];
    if (!this.sampledOnDevice) throw namedError("InvalidRequestFieldError", "decodeSteps needs a sample() first");
    if (grammar) return this.#constrainedSteps(n, params, grammar);
    const t0 = performance.now();
    this.#checkRoom(n);
    this.#prepareSampling(params, n);
    const table = new Uint32Array(n * 4);
    for (let i = 0; i < n; i++) table.set([this.len + i, 1, i, 0], i * 4);
    this.gpu.write(this.fwdTable, table);
    const rec = this.gpu.recorder();
    for (let i = 0; i < n; i++) {
      rec.copy(this.fwdTable, i * FWD_BYTES, this.fwd, 0, FWD_BYTES);
      this.#forward(rec, 1, this.len + i + 1);
      this.#recordSample(rec);
      if ((i + 1) % FLUSH_STEPS === 0 && i + 1 < n) rec.flush();
    }
    const res = await this.#readSamples(rec, n, params);
    this.len += n;
    this.stats.decode_tokens += n;
    this.stats.decode_seconds += (performance.now() - t0) / 1000;
    return res;
  }

  /**
   * decodeSteps under a grammar: a step's mask depends on the id the step before it picked, so
   * each step is one submit and one readback. Stops after the step whose id ends the grammar.
   * @param {number} n
   * @param {SampleParams} params
   * @param {Constraint} grammar
   */
  async #constrainedSteps(n, params, grammar) {
    const t0 = performance.now();
    this.#checkRoom(n);
    this.#prepareSampling(params, n, true);
    const res = [];
    for (let i = 0; i < n; i++) {
      this.gpu.write(this.mask, await grammar.mask());
      this.gpu.write(this.fwd, new Uint32Array([this.len, 1, i, 0]));
      const rec = this.gpu.recorder();
      this.#forward(rec, 1, this.len + 1);
      this.#recordSample(rec);
      const [r] = await this.#readSamples(rec, 1, params, i);
      this.len += 1;
      res.push(r);
      if (grammar.accept(r.token)) break;
    }
    this.stats.decode_tokens += res.length;
    this.stats.decode_seconds += (performance.now() - t0) / 1000;
    return res;
  }

  /** @param {number} length */
  rewind(length) {
    if (!(length >= 0 && length <= this.len)) {
      throw namedError("InvalidRequestFieldError", `cannot rewind a KV cache of ${this.len} tokens to ${length}`);
    }
    this.len = length;
    this.sampledOnDevice = false;
  }

  reset() {
    this.len = 0;
    this.sampledOnDevice = false;
  }

  /** The current logits (test hook, mirrors ReferenceKernels.logits). */
  async logits() {
    const rec = this.gpu.recorder();
    return new Float32Array(await this.gpu.readback(rec, this.logitsBuf, this.d.vocab * 4));
  }
}
