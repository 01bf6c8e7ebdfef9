// The demo chat over the script-tag build (window.PyWorker). Also the page the headless mode of
// tools/serve.py and the browser tests drive: ?prompt=…[&model=…] loads the model, asks, and
// reports each streamed delta to window.__pyworkerDelta and each load progress text to
// window.__pyworkerProgress (when the driver exposes them);
// window.demoState mirrors what the page is doing so a driver can wait on it (`progress`: the
// [fraction, text] reports of the last load), and
// window.demoEngine is the page's engine. Driver options: seed, max_tokens, temperature, ignore_eos,
// backend (wgsl | mlc | wasm: every model on that backend, instead of each record's choice).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = (window.demoState = {
  loaded: [], busy: false, done: false, error: null, text: "", finish: null, stats: "", longTasks: [], progress: [],
});
const history = [];
let engine = null;
let records = [];

// Main-thread long tasks (> 50 ms): the benchmark reads these; the goal is none.
if (window.PerformanceObserver && PerformanceObserver.supportedEntryTypes.includes("longtask")) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) state.longTasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: "longtask", buffered: true });
}

function fail(err) {
  state.error = `${err.name || "Error"}: ${err.message || err}`;
  state.busy = false;
  state.done = true;
  $("progress-text").textContent = state.error;
  $("progress-text").classList.add("error");
  console.error(state.error);
}

function pickDefault(pattern) {
  const r = records.find((x) => pattern.test(x.model_id));
  return r ? r.model_id : "";
}

function fillPickers() {
  for (const select of [$("model-a"), $("model-b")]) {
    for (const r of records) select.add(new Option(`${r.model_id}${r.model_type === "embedding" ? " (embeddings)" : ""}`, r.model_id));
  }
  $("model-a").value = params.get("model") || pickDefault(/SmolLM2.*Q4_1$/) || pickDefault(/SmolLM2/i) || (records[0] && records[0].model_id) || "";
  $("model-b").value = params.get("model2") || "";
}

function onProgress(report) {
  state.progress.push([report.progress, report.text]);
  $("progress-bar").style.width = `${Math.round(100 * report.progress)}%`;
  $("progress-text").textContent = report.text;
  if (window.__pyworkerProgress) window.__pyworkerProgress(report.text);
}

async function loadModels() {
  const ids = [$("model-a").value, $("model-b").value].filter((x, i, a) => x && a.indexOf(x) === i);
  if (!ids.length) return;
  setBusy(true, "load");
  state.progress = [];
  $("progress-text").classList.remove("error");
  try {
    if (!engine) {
      const config = { initProgressCallback: onProgress };
      const backend = params.get("backend");
      if (backend) {
        config.appConfig = await PyWorker.defaultAppConfig();
        for (const r of config.appConfig.model_list) r.backend = backend;
      }
      engine = window.demoEngine = await PyWorker.createEngine(config);
    }
    await engine.reload(ids);
    state.loaded = ids;
    const kind = (id) => (records.find((r) => r.model_id === id) || {}).model_type;
    const chatModels = ids.filter((id) => kind(id) !== "embedding");
    $("chat-model").replaceChildren(...chatModels.map((id) => new Option(id, id)));
    $("embed-stats").textContent = ids.some((id) => kind(id) === "embedding") ? "" : $("embed-stats").textContent;
    $("progress-text").textContent = `Loaded: ${ids.join(", ")}`;
    $("progress-bar").style.width = "100%";
  } finally {
    setBusy(false);
  }
}

function setBusy(busy, what = "") {
  state.busy = busy;
  $("load").disabled = busy;
  $("send").disabled = busy || $("chat-model").options.length === 0;
  $("stop").disabled = !(busy && what === "chat");
  $("embed-run").disabled = busy || !state.loaded.some((id) => /MiniLM|bert/i.test(id));
}

function addMessage(role, text, model) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "you" : model;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("messages").append(div);
  return { div, body };
}

async function ask(prompt) {
  const model = $("chat-model").value;
  history.push({ role: "user", content: prompt });
  addMessage("user", prompt);
  const out = addMessage("assistant", "", model);
  out.div.classList.add("streaming");
  setBusy(true, "chat");
  state.text = "";
  state.finish = null;
  const started = performance.now();
  let chunks = 0;
  let usage = null;
  try {
    const request = { messages: history, model, stream: true, stream_options: { include_usage: true } };
    const seed = params.get("seed");
    if (seed !== null) request.seed = Number(seed);
    if (params.get("max_tokens")) request.max_tokens = Number(params.get("max_tokens"));
    if (params.get("ignore_eos")) request.ignore_eos = true;
    if (params.get("temperature") !== null) request.temperature = Number(params.get("temperature"));
    for await (const chunk of await engine.chat.completions.create(request)) {
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta ? chunk.choices[0].delta.content : "";
      if (delta) {
        chunks += 1;
        state.text += delta;
        out.body.textContent = state.text;
        $("messages").scrollTop = $("messages").scrollHeight;
        if (window.__pyworkerDelta) await window.__pyworkerDelta(delta); // a driver may pause here
      }
      if (chunk.usage) usage = chunk.usage;
      if (chunk.choices && chunk.choices[0] && chunk.choices[0].finish_reason) state.finish = chunk.choices[0].finish_reason;
    }
    history.push({ role: "assistant", content: state.text });
    const seconds = (performance.now() - started) / 1000;
    const decode = usage && usage.extra ? usage.extra.decode_tokens_per_s : null;
    const tokens = usage ? usage.completion_tokens : chunks;
    state.stats = `${tokens} tokens in ${seconds.toFixed(1)} s` + (decode ? `, ${decode.toFixed(2)} tokens/s decode` : "");
    $("stats").textContent = state.stats;
  } finally {
    out.div.classList.remove("streaming");
    setBusy(false);
  }
}

async function embed() {
  const texts = $("embed-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const model = state.loaded.find((id) => /MiniLM|bert/i.test(id));
  setBusy(true, "embed");
  try {
    const t0 = performance.now();
    const reply = await engine.embeddings.create({ input: texts, model });
    const vectors = reply.data.map((d) => d.embedding);
    const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
    const header = `<tr><th></th>${texts.map((_, j) => `<th>${j + 1}</th>`).join("")}</tr>`;
    const rows = vectors.map((a, i) => `<tr><th>${i + 1}</th>${vectors.map((b) => `<td>${dot(a, b).toFixed(3)}</td>`).join("")}</tr>`);
    $("embed-table").innerHTML = header + rows.join("");
    $("embed-stats").textContent = `${vectors.length} × ${vectors[0].length}-d in ${((performance.now() - t0) / 1000).toFixed(2)} s (cosine similarity)`;
  } finally {
    setBusy(false);
  }
}

const MB = (n) => `${(n / (1024 * 1024)).toFixed(1)} MB`;

/** The Cache tab: every cached model with its size, a Delete button each, and the origin's storage. */
async function showCache() {
  const api = await PyWorker.ready;
  const [models, estimate] = await Promise.all([api.listCachedModels(api.prebuiltAppConfig), api.storageEstimate()]);
  const table = $("cache-table");
  table.replaceChildren();
  const row = (cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (typeof cell === "string") td.textContent = cell;
      else td.append(cell);
      tr.append(td);
    }
    table.append(tr);
  };
  row(["model", "size", "files", "complete", ""]);
  for (const m of models) {
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.onclick = () => api.deleteModelAllInfoInCache(m.model_id, api.prebuiltAppConfig).then(showCache).catch(fail);
    row([m.model_id, MB(m.bytes), String(m.files.length), m.complete ? "yes" : "no", del]);
  }
  if (!models.length) row(["nothing cached yet", "", "", "", ""]);
  const used = estimate.usage === null ? "unknown" : MB(estimate.usage);
  const quota = estimate.quota === null ? "unknown" : MB(estimate.quota);
  $("cache-estimate").textContent = `This origin uses ${used} of ${quota}.`;
}

function wire() {
  $("load").onclick = () => loadModels().catch(fail);
  $("chat-form").onsubmit = (event) => {
    event.preventDefault();
    const prompt = $("prompt").value.trim();
    if (!prompt || state.busy) return;
    $("prompt").value = "";
    ask(prompt).catch(fail);
  };
  $("stop").onclick = () => engine && engine.interruptGenerate();
  $("embed-run").onclick = () => embed().catch(fail);
  $("cache-refresh").onclick = () => showCache().catch(fail);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.onclick = () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const body of document.querySelectorAll(".tab-body")) body.classList.toggle("hidden", body.id !== tab.dataset.tab);
      if (tab.dataset.tab === "cache") showCache().catch(fail);
    };
  }
}

async function main() {
  wire();
  records = (await PyWorker.defaultAppConfig()).model_list || [];
  fillPickers();
  const prompt = params.get("prompt");
  if (prompt === null) return;
  await loadModels();
  await ask(prompt);
  state.done = true;
}

main().catch(fail);
