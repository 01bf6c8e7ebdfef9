// Types for `deno check` only (see pyodide.d.ts): the emscripten module factory host-handler.js hands to loadPyodide (through host.js).
declare const createPyodideModule: (settings: Record<string, unknown>) => Promise<unknown>;
export default createPyodideModule;
