// Shared WGSL snippets. `Fwd` is the per-forward uniform every position-aware kernel reads:
// pos = KV length before this forward, n = tokens in it, step = decode-loop step (sampler slot).
// In the GPU-resident loop it is rewritten between steps by a buffer copy, not by the CPU.

export const FWD = `struct Fwd { pos: u32, n: u32, step: u32, pad: u32 }`;

/** Workgroup size used by the element-wise kernels. */
export const WG = 64;

/**
 * tanh for any f32 (or vecN) argument: sign(x) (1 - e) / (1 + e) with e = exp(-2|x|), which
 * never overflows (a builtin tanh may be exp(2x) / ... and give NaN for large x on some drivers).
 * Used by the soft-caps and GeGLU; the NumPy twins use np.tanh.
 */
export const TANH = `fn tanh_safe(x: f32) -> f32 { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn tanh4(x: vec4<f32>) -> vec4<f32> { let e = exp(-2.0 * abs(x)); return sign(x) * (1.0 - e) / (1.0 + e); }`;

/** A JS number as a WGSL f32 literal that parses back to the same f32. @param {number} x */
export const f32Literal = (x) => Math.fround(x).toExponential(9);
