// ggml (GGUF) weights read in place: a tensor's file bytes, uploaded unchanged as one
// `wq: array<u32>` (byte length padded to 4), dequantised inside the kernel. A GGUF tensor of
// ggml shape [cols, rows] is rows x cols row-major, each row a run of blocks along cols; K = cols.
// `ggmlWeights(type, K, binding)` declares `wq` and `fn dq32(row, g) -> array<vec4<f32>, 8>`:
// inputs [32g, 32g + 32) of row `row`, inputs 4c..4c+3 in element c. The NumPy twin of every
// decoder is py_worker/reference/ggml.py (checked there against the gguf package).
//
// Layouts (ggml's dequantize_row_*; d, dmin, m are f16, read with unpack2x16float):
//   F32  (0)  4 bytes per input.                     F16 (1)  2 bytes per input.
//   Q4_0 (2)  32 inputs, 18 bytes: d, qs[16]. Input j in the low nibble of qs[j], j+16 in the
//             high nibble; value (q - 8) * d.
//   Q4_1 (3)  32 inputs, 20 bytes: d, m, qs[16] (nibbles as Q4_0); value q * d + m.
//   Q8_0 (8)  32 inputs, 34 bytes: d, int8 qs[32]; value q * d.
//   Q4_K (12) 256 inputs, 144 bytes: d, dmin, scales[12] (8 six-bit scales and mins, packed as
//             in scaleMinK4 below), qs[128]. Sub-block j (32 inputs) is the low (j even) or high
//             (j odd) nibble of qs[32 * (j / 2) + l]; value d * sc[j] * q - dmin * m[j].
//   Q5_K (13) 256 inputs, 176 bytes: d, dmin, scales[12], qh[32], qs[128]: Q4_K plus bit 4 of
//             input l of sub-block j = bit j of qh[l].
//   Q6_K (14) 256 inputs, 210 bytes: ql[128], qh[64], int8 scales[16], d. Half h = j / 4 of the
//             block, r = j % 4: low 4 bits from nibble r / 2 of ql[64h + 32 * (r % 2) + l], top
//             2 bits from qh[32h + l] >> 2r; inputs 16s..16s+15 use scales[s];
//             value d * scale * (q - 32).
// Every block size is even but not always a multiple of 4 (Q4_0, Q8_0, Q6_K), so a block may
// start 2 bytes into a word: ggWord joins the halves of two words there. It always loads both
// words and selects (no branch: faster on the CPU backends); the second load, unused when the
// offset is aligned, is clamped to the buffer so it never reads past the tensor's last word.
import { namedError } from "../errors.js";

export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14 };

/** @typedef {{name: string, inputs: number, bytes: number}} GgmlBlock */

/**
 * Per supported ggml type id: its name, inputs per block and bytes per block.
 * @type {Record<number, GgmlBlock>}
 */
export const GGML_BLOCKS = {
  0: { name: "F32", inputs: 1, bytes: 4 },
  1: { name: "F16", inputs: 1, bytes: 2 },
  2: { name: "Q4_0", inputs: 32, bytes: 18 },
  3: { name: "Q4_1", inputs: 32, bytes: 20 },
  8: { name: "Q8_0", inputs: 32, bytes: 34 },
  12: { name: "Q4_K", inputs: 256, bytes: 144 },
  13: { name: "Q5_K", inputs: 256, bytes: 176 },
  14: { name: "Q6_K", inputs: 256, bytes: 210 },
};

// ggml's names of the types it has and we do not read, so the error says what the file holds.
/** @type {Record<number, string>} */
const OTHER_NAMES = {
  6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
  18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16",
  26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
};

/**
 * The block of a supported type, else UnsupportedWeightFormatError (as py_worker/reference/ggml.py).
 * @param {number} type ggml type id
 * @param {string} [tensor] the tensor's name, for the error
 * @returns {GgmlBlock}
 */
export function ggmlBlock(type, tensor = "") {
  const blk = GGML_BLOCKS[type];
  if (!blk) {
    const name = OTHER_NAMES[type] || `type ${type}`;
    const where = tensor ? `tensor '${tensor}' ` : "";
    const names = Object.values(GGML_BLOCKS).map((b) => b.name).join(", ");
    throw namedError("UnsupportedWeightFormatError", `${where}uses ggml type ${name} (${type}); supported: ${names}`, {
      tensor,
      ggml_type: type,
      type_name: name,
    });
  }
  return blk;
}

/**
 * Bytes of one row of K inputs.
 * @param {number} type ggml type id
 * @param {number} K
 */
export function ggmlRowBytes(type, K) {
  const { inputs, bytes } = ggmlBlock(type);
  return (K / inputs) * bytes;
}

/** @param {number} n */
const range = (n) => Array.from({ length: n }, (_, i) => i);
/** @param {(c: number) => string} f */
const array8 = (f) => `return array<vec4<f32>, 8>(\n    ${range(8).map(f).join(",\n    ")});`;

// Byte helpers. `at` is a byte offset into wq; ggHalf and ggWord need it even.
const HELPERS = `fn ggByte(at: u32) -> u32 { return (wq[at >> 2u] >> ((at & 3u) * 8u)) & 0xffu; }
fn ggHalf(at: u32) -> f32 { return unpack2x16float(wq[at >> 2u] >> ((at & 2u) * 8u)).x; }
fn ggWord(at: u32) -> u32 {
  let w = at >> 2u;
  let lo = wq[w];
  let hi = wq[min(w + 1u, arrayLength(&wq) - 1u)];
  return select((lo >> 16u) | (hi << 16u), lo, (at & 2u) == 0u);
}
fn ggInt8(at: u32) -> f32 { return f32(bitcast<i32>(ggByte(at) << 24u) >> 24u); }
// The \`mask\` bits at bit s of each of w's 4 bytes (byte i -> element i).
fn ggBits4(w: u32, s: u32, mask: u32) -> vec4<u32> {
  return (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + s)) & vec4<u32>(mask);
}
fn ggInt8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}
// ggml's get_scale_min_k4: (scale, min) of sub-block j from the 12 bytes at s.
fn ggScaleMinK4(s: u32, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(ggByte(s + j) & 63u), f32(ggByte(s + j + 4u) & 63u)); }
  let hi = ggByte(s + j + 4u); // bytes 8..11: low 4 bits of scale (low nibble) and min (high)
  return vec2<f32>(f32((hi & 15u) | ((ggByte(s + j - 4u) >> 6u) << 4u)), f32((hi >> 4u) | ((ggByte(s + j) >> 6u) << 4u)));
}`;

// One body of dq32(row, g) per type; RB = bytes per row.
/** @type {Record<number, (K: number, RB: number) => string>} */
const DECODERS = {
  0: (K) => `let o = row * ${K}u + g * 32u;
  ${array8((c) => `bitcast<vec4<f32>>(vec4<u32>(wq[o + ${4 * c}u], wq[o + ${4 * c + 1}u], wq[o + ${4 * c + 2}u], wq[o + ${4 * c + 3}u]))`)}`,
  1: (K) => `let o = row * ${K / 2}u + g * 16u;
  ${array8((c) => `vec4<f32>(unpack2x16float(wq[o + ${2 * c}u]), unpack2x16float(wq[o + ${2 * c + 1}u]))`)}`,
  2: (_K, RB) => `let at = row * ${RB}u + g * 18u;
  let d = ggHalf(at);
  ${range(4).map((i) => `let q${i} = ggWord(at + ${2 + 4 * i}u);`).join(" ")}
  ${array8((c) => `(vec4<f32>(ggBits4(q${c % 4}, ${c < 4 ? 0 : 4}u, 15u)) - 8.0) * d`)}`,
  3: (_K, RB) => `let w = (row * ${RB}u + g * 20u) >> 2u; // 20-byte blocks in 4-aligned rows
  let dm = unpack2x16float(wq[w]);
  ${array8((c) => `vec4<f32>(ggBits4(wq[w + ${1 + (c % 4)}u], ${c < 4 ? 0 : 4}u, 15u)) * dm.x + dm.y`)}`,
  8: (_K, RB) => `let at = row * ${RB}u + g * 34u;
  let d = ggHalf(at);
  ${array8((c) => `ggInt8x4(ggWord(at + ${2 + 4 * c}u)) * d`)}`,
  12: (_K, RB) => `let at = row * ${RB}u + (g / 8u) * 144u; // 4-aligned
  let j = g % 8u;
  let dm = unpack2x16float(wq[at >> 2u]);
  let sm = ggScaleMinK4(at + 4u, j);
  let dl = dm.x * sm.x;
  let ml = dm.y * sm.y;
  let qs = (at + 16u + 32u * (j / 2u)) >> 2u;
  let s = 4u * (j % 2u);
  ${array8((c) => `vec4<f32>(ggBits4(wq[qs + ${c}u], s, 15u)) * dl - ml`)}`,
  13: (_K, RB) => `let at = row * ${RB}u + (g / 8u) * 176u; // 4-aligned
  let j = g % 8u;
  let dm = unpack2x16float(wq[at >> 2u]);
  let sm = ggScaleMinK4(at + 4u, j);
  let dl = dm.x * sm.x;
  let ml = dm.y * sm.y;
  let qh = (at + 16u) >> 2u;
  let qs = (at + 48u + 32u * (j / 2u)) >> 2u;
  let s = 4u * (j % 2u);
  ${array8((c) => `vec4<f32>(ggBits4(wq[qs + ${c}u], s, 15u) | (ggBits4(wq[qh + ${c}u], j, 1u) << vec4<u32>(4u))) * dl - ml`)}`,
  14: (_K, RB) => `let at = row * ${RB}u + (g / 8u) * 210u;
  let h = (g % 8u) / 4u;
  let r = g % 4u;
  let ql = at + 64u * h + 32u * (r % 2u);
  let qh = at + 128u + 32u * h;
  let d = ggHalf(at + 208u);
  let d0 = d * ggInt8(at + 192u + 8u * h + 2u * r);
  let d1 = d * ggInt8(at + 193u + 8u * h + 2u * r);
  let s = 4u * (r / 2u);
  ${array8((c) => `(vec4<f32>(ggBits4(ggWord(ql + ${4 * c}u), s, 15u) | (ggBits4(ggWord(qh + ${4 * c}u), 2u * r, 3u) << vec4<u32>(4u))) - 32.0) * d${c < 4 ? 0 : 1}`)}`,
};

/**
 * WGSL declaring `wq` (the tensor's bytes as array<u32>) at `binding` of group 0, the byte
 * helpers and `dq32(row, g)` for rows of K inputs (K a multiple of 32 and of the block).
 * @param {number} type ggml type id
 * @param {number} K
 * @param {number} [binding]
 */
export function ggmlWeights(type, K, binding = 2) {
  const { inputs } = ggmlBlock(type);
  if (K % Math.max(32, inputs) !== 0) {
    throw namedError("ModelLoadError", `ggml ${GGML_BLOCKS[type].name} rows of ${K} inputs are not whole blocks`);
  }
  return `@group(0) @binding(${binding}) var<storage, read> wq: array<u32>;
${HELPERS}
fn dq32(row: u32, g: u32) -> array<vec4<f32>, 8> {
  ${DECODERS[type](K, ggmlRowBytes(type, K))}
}`;
}
