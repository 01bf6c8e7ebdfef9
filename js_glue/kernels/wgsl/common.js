// Shared WGSL snippets. `Fwd` is the per-forward uniform every position-aware kernel reads:
// pos = KV length before this forward, n = tokens in it, step = decode-loop step (sampler slot).
// In the GPU-resident loop it is rewritten between steps by a buffer copy, not by the CPU.

export const FWD = `struct Fwd { pos: u32, n: u32, step: u32, pad: u32 }`;

/** Workgroup size used by the element-wise kernels. */
export const WG = 64;
