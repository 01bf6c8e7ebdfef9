// The site's module worker (site/worker.js, unchanged) with its WebGPU buffers counted from
// before it starts (deno_engine_counter.js, evaluated first).
import "./deno_engine_counter.js";
import "../../site/worker.js";
