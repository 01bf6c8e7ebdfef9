// Types for `deno check` only (js_glue/deno.json maps ./pyodide/pyodide.mjs here; tools/site.py does
// not copy this folder). Pyodide's own pyodide.d.ts does not type-check on its own (it names an
// undeclared `FS`), so the two modules the hosts import are declared here as they use them.
// deno-lint-ignore no-explicit-any
export type PyodideAPI = any;
export declare function loadPyodide(options?: Record<string, unknown>): Promise<PyodideAPI>;
