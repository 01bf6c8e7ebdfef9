// Types for `deno check` only (see pyodide.d.ts): the emscripten module factory host.js hands to loadPyodide.
declare const createPyodideModule: (settings: Record<string, unknown>) => Promise<unknown>;
export default createPyodideModule;
