// The fake tvmjs (fake_tvmjs.js) and the tvmjs-facing side of mlc.js must match the real API of
// the installed @mlc-ai/web-runtime, so the recorded contract cannot silently drift from it:
// every method the fake defines, and every tvmjs method mlc/*.js calls, must exist in the
// package's .d.ts with the same parameter names.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { makeFakeTvmjs } from "./fake_tvmjs.js";
import { ArtifactStore } from "../../js_glue/kernels/mlc/artifacts.js";

const LIB = new URL("../../node_modules/@mlc-ai/web-runtime/lib/", import.meta.url);
const DTS = readdirSync(LIB)
  .filter((f) => f.endsWith(".d.ts"))
  .map((f) => readFileSync(new URL(f, LIB), "utf8"))
  .join("\n");

/** Split "a: X<b, c>, d?: (e: f) => g" at top-level commas. */
function splitTop(s) {
  const out = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if ("<([{".includes(ch)) depth++;
    if (">)]}".includes(ch) && !(ch === ">" && cur.endsWith("="))) depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out;
}

const names = (params) => splitTop(params).map((p) => p.trim().replace(/^\.\.\./, "").split(/[?:=\s]/)[0]).filter(Boolean);

/** Parameter-name lists of `member` in the declaration block `block` (overloads: several). */
function declared(block, member) {
  const re = new RegExp(`^\\s+${member}(?:<[^(]*>)?\\((.*)\\)(?::|;)`, "gm");
  return [...block.matchAll(re)].map((m) => names(m[1]));
}

function blockOf(kind, name) {
  const start = DTS.search(new RegExp(`export (?:declare )?${kind} ${name}\\b`));
  assert.ok(start >= 0, `${kind} ${name} is not in the .d.ts`);
  const end = DTS.indexOf("\n}", start);
  return DTS.slice(start, end);
}

/** Parameter names of a JS function from its source (a leading `_`, lint's "unused", dropped). */
function jsParams(fn) {
  const src = fn.toString();
  const m = src.match(/^[^(]*\(([^)]*)\)/);
  return names(m[1]).map((n) => n.replace(/^_(?=\w)/, ""));
}

function checkClass(name, proto, { kind = "class", skip = [] } = {}) {
  const block = blockOf(kind, name);
  const methods = Object.getOwnPropertyNames(proto).filter((m) => m !== "constructor" && !skip.includes(m));
  assert.ok(methods.length > 0, `${name} defines no methods`);
  for (const m of methods) {
    const decl = declared(block, m);
    assert.ok(decl.length, `${name}.${m} is not declared by tvmjs`);
    const mine = jsParams(proto[m]);
    assert.ok(
      decl.some((d) => d.join() === mine.join()),
      `${name}.${m}(${mine}) differs from tvmjs: ${decl.map((d) => `(${d})`).join(" | ")}`,
    );
  }
  return methods;
}

test("the fake's Instance, VirtualMachine, Tensor, DLDevice and TVMArray match tvmjs's .d.ts", async () => {
  const { tvmjs } = makeFakeTvmjs({ metadata: {} });
  const inst = await tvmjs.instantiate(Uint8Array.of(0, 0x61, 0x73, 0x6d).buffer);
  inst.beginScope();
  const dev = inst.webgpu();
  const tensor = inst.empty([2], "float32", dev);
  const vm = inst.createVirtualMachine(dev);
  const checked = [
    ...checkClass("Instance", Object.getPrototypeOf(inst), { skip: ["viewIds"] }),
    ...checkClass("VirtualMachine", Object.getPrototypeOf(vm)),
    ...checkClass("Tensor", Object.getPrototypeOf(tensor)),
    ...checkClass("DLDevice", Object.getPrototypeOf(dev)),
  ];
  inst.endScope();
  for (const m of ["fetchTensorCache", "getParamsFromCacheByName", "asyncLoadWebGPUPipelines", "initWebGPU", "detachFromCurrentScope"]) {
    assert.ok(checked.includes(m), `${m} is checked`);
  }
});

test("the fake's module functions match tvmjs's exported functions", () => {
  const { tvmjs } = makeFakeTvmjs({ metadata: {} });
  for (const fn of ["instantiate", "detectGPUDevice", "createPolyfillWASI"]) {
    const decl = [...DTS.matchAll(new RegExp(`export declare function ${fn}\\((.*)\\):`, "g"))].map((m) => names(m[1]));
    assert.ok(decl.length, `${fn} is not exported by tvmjs`);
    assert.deepEqual(jsParams(tvmjs[fn]), decl[0], fn);
  }
  assert.ok(/export \{[^}]*\bScalar\b/.test(DTS) && /constructor\(value: number, dtype: string\)/.test(blockOf("class", "Scalar")));
});

test("ArtifactStore implements tvmjs's ArtifactCacheTemplate", () => {
  checkClass("ArtifactCacheTemplate", ArtifactStore.prototype, {
    kind: "interface",
    skip: ["pin", "bytes", "json"],
  });
});

test("every tvmjs call in js_glue/kernels/mlc* names a declared tvmjs member", () => {
  const dir = new URL("../../js_glue/kernels/", import.meta.url);
  const src = [readFileSync(new URL("mlc.js", dir), "utf8"), readFileSync(new URL("mlc/model.js", dir), "utf8")].join("\n");
  const calls = new Set([...src.matchAll(/\b(?:tvm|lib|this\.tvm|this\.vm|this\.dev|this\.logits|host|hidden|emb|logits)\.(\w+)\(/g)].map((m) => m[1]));
  const mine = new Set(["dispose"]); // Disposable
  for (const c of calls) {
    if (mine.has(c)) continue;
    assert.ok(new RegExp(`^\\s+${c}(?:<[^(]*>)?\\(`, "m").test(DTS) || new RegExp(`function ${c}\\(`).test(DTS), `${c} is not in tvmjs`);
  }
  assert.ok(calls.size >= 15, [...calls].join());
});
