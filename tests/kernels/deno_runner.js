// Deno entry: `deno run --allow-read --allow-env runner.js scenario.json` prints the result JSON.
// Paths in the scenario are resolved against the repository root; no cache (Deno's Cache API
// is partial) unless the scenario asks.
import { runScenario } from "./harness.js";

const root = new URL("../../", import.meta.url);
const scenario = JSON.parse(await Deno.readTextFile(Deno.args[0]));
scenario.options = {
  cache: "none",
  baseURL: root.href,
  tokenizersURL: new URL("node_modules/@mlc-ai/web-tokenizers/lib/index.js", root).href,
  xgrammarURL: new URL("node_modules/@mlc-ai/web-xgrammar/lib/index.js", root).href,
  ...(scenario.options || {}),
};
const out = await runScenario(scenario);
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(out) + "\n"));
