from conftest import TINY, Guarded
LOAD = """async ([models, extra]) => {
  window.engine = await within(PyWorker.CreateWebWorkerMLCEngine(models, extra || {}), 120000, "load");
  return engine.modelId;
}"""

def test_sizes(guarded: Guarded) -> None:
    guarded.open("bare.html")
    guarded.js(LOAD, [TINY, {"heartbeatTimeoutMs": 600000}])
    for kind in ["aaa", "b64"]:
        r = guarded.js("""async (kind) => {
          const n = 1 << 20;
          let content = "";
          if (kind === "aaa") content = "a".repeat(n); else if (kind === "b64") { let s = ""; for (let i = 0; i < n; i++) s += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[Math.floor(Math.random()*64)]; content = s; }
          else { const parts = []; for (let i = 0; i < (kind === "emoji" ? n/2 : n); i++) {
            parts.push(kind === "cjk" ? String.fromCharCode(0x4e00 + Math.floor(Math.random() * 20000)) :
                       kind === "emoji" ? String.fromCodePoint(0x1f300 + Math.floor(Math.random() * 700)) :
                       String.fromCharCode(33 + Math.floor(Math.random() * 90))); } content = parts.join(""); }
          const t0 = performance.now();
          let out;
          try { await engine.chat.completions.create({messages: [{role: "user", content}], max_tokens: 2}); out = "ok"; }
          catch (e) { out = e.name + ": " + e.message.slice(0, 100); }
          return [content.length, out, performance.now() - t0];
        }""", kind)
        print(kind, r)
