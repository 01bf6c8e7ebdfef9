// Module Web Worker for the Chromium harness: runs scenarios posted by harness.html.
import { runScenario, runLoads } from "./harness.js";

self.onmessage = async (ev) => {
  const { id, kind, payload } = ev.data;
  try {
    const value = kind === "loads" ? await runLoads(payload.options, payload.records, payload.prefetch) : await runScenario(payload);
    self.postMessage({ id, value });
  } catch (e) {
    self.postMessage({ id, error: { name: e.name, message: e.message, stack: e.stack } });
  }
};
