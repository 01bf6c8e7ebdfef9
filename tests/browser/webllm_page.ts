// A TypeScript page in the style of web-llm's examples (get-started, streaming, multi-models,
// cache usage, web worker and service worker), with only the import specifiers pointing at
// py_worker's files. test_webllm_dropin.py type-checks it against the .d.ts files with `deno check`.
import * as webllm from "../../js_glue/proxy.js";
import { WebWorkerMLCEngineHandler } from "../../js_glue/worker-handler.js";
import { ServiceWorkerMLCEngineHandler, SharedWorkerMLCEngineHandler } from "../../js_glue/host-handler.js";

function setLabel(id: string, text: string) {
  const label = document.getElementById(id);
  if (label == null) throw Error("Cannot find label " + id);
  label.innerText = text;
}

const initProgressCallback = (report: webllm.InitProgressReport) => setLabel("init-label", report.text);

export async function getStarted(): Promise<string> {
  const selectedModel = "SmolLM2-135M-Instruct-Q4_1";
  const engine: webllm.MLCEngineInterface = await webllm.CreateMLCEngine(selectedModel, {
    initProgressCallback,
    logLevel: "INFO",
  });
  const messages: webllm.ChatCompletionMessageParam[] = [
    { role: "system", content: "You are a helpful AI assistant." },
    { role: "user", content: "Hello!" },
  ];
  const reply: webllm.ChatCompletion = await engine.chat.completions.create({ messages, n: 1, temperature: 1.0, max_tokens: 256 });
  console.log(reply.choices[0].message.content, reply.usage?.completion_tokens);
  const chunks = await engine.chat.completions.create({ messages, stream: true, stream_options: { include_usage: true }, seed: 1 });
  let text = "";
  for await (const chunk of chunks) {
    text += chunk.choices[0]?.delta.content || "";
    if (chunk.usage) console.log(chunk.usage.prompt_tokens);
  }
  console.log(await engine.runtimeStatsText(), await engine.getMessage());
  await engine.resetChat();
  return text;
}

export async function webWorker(): Promise<void> {
  const engine = await webllm.CreateWebWorkerMLCEngine(
    new Worker(new URL("./worker.ts", import.meta.url), { type: "module" }),
    ["SmolLM2-135M-Instruct-Q4_1", "all-MiniLM-L6-v2-q0f32"],
    { initProgressCallback },
  );
  const vectors: webllm.CreateEmbeddingResponse = await engine.embeddings.create({ input: ["a", "b"], model: "all-MiniLM-L6-v2-q0f32" });
  console.log(vectors.data[0].embedding.length, engine.modelId);
  const completion: webllm.Completion = await engine.completions.create({ prompt: "Once", max_tokens: 5, model: "SmolLM2-135M-Instruct-Q4_1" });
  console.log(completion.choices[0].text);
  await engine.unload();
}

export async function serviceWorker(): Promise<void> {
  await navigator.serviceWorker.register(new URL("./sw.ts", import.meta.url), { type: "module" });
  const engine: webllm.ServiceWorkerMLCEngine = await webllm.CreateServiceWorkerMLCEngine("SmolLM2-135M-Instruct-Q4_1", { initProgressCallback });
  await engine.interruptGenerate();
}

export async function cacheUsage(): Promise<number> {
  const appConfig: webllm.AppConfig = structuredClone(webllm.prebuiltAppConfig);
  appConfig.useIndexedDBCache = true;
  const model = appConfig.model_list[0].model_id;
  const engine = await webllm.CreateMLCEngine(model, { appConfig, initProgressCallback });
  await engine.reload(model);
  console.log(await webllm.hasModelInCache(model, appConfig), webllm.modelVersion, webllm.modelLibURLPrefix);
  await webllm.deleteModelWeightsInCache(model, appConfig);
  await webllm.deleteModelInCache(model, appConfig);
  await webllm.deleteChatConfigInCache(model, appConfig);
  await webllm.deleteModelWasmInCache(model, appConfig);
  await webllm.deleteModelAllInfoInCache(model, appConfig);
  const listed: webllm.CachedModel[] = await webllm.listCachedModels(appConfig);
  const { usage } = await webllm.storageEstimate();
  return listed.reduce((n, m) => n + m.bytes, 0) + (usage ?? 0);
}

export async function errors(): Promise<string | null> {
  try {
    await webllm.CreateMLCEngine("no-such-model");
  } catch (err) {
    if (err instanceof webllm.ModelNotFoundError) return err.name;
    if (err instanceof webllm.PyWorkerError) return JSON.stringify(err.fields);
  }
  return null;
}

// What the worker scripts of those examples hold.
export function workerScript(): void {
  const handler = new WebWorkerMLCEngineHandler();
  self.onmessage = (msg: MessageEvent) => handler.onmessage(msg);
}

export function serviceWorkerScript(): void {
  let handler: ServiceWorkerMLCEngineHandler | undefined;
  self.addEventListener("activate", () => {
    handler = new ServiceWorkerMLCEngineHandler();
  });
  console.log(handler);
}

export function sharedWorkerScript(): SharedWorkerMLCEngineHandler {
  return new SharedWorkerMLCEngineHandler();
}
