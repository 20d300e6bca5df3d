// Attention-map editor: paints on the model's map M(x) at input resolution, re-scores after
// every stroke, saves through the server. Plain JS, no build step, no network beyond the page's
// own server.
"use strict";

const TOKEN = document.querySelector('meta[name="token"]').content;
const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const MAX_HISTORY = 100;

const state = {
  config: null, index: 0, item: null, image: null,
  orig: null, cur: null, saved: null, undo: [], redo: [],
  painting: false, last: null, scoreSeq: 0, overlayOn: true, pointer: null,
};

async function api(path, body) {
  const opts = {headers: {"X-Explain-Token": TOKEN}};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
  return data;
}

function status(text) { $("status").textContent = text; }
function tool() { return document.querySelector('input[name="tool"]:checked').value; }
function scale() { return canvas.width / Math.max(state.item.width, state.item.height); }
function dirty() { return state.cur.some((v, k) => v !== state.saved[k]); }

// ---- drawing -------------------------------------------------------------------------------
const mapCanvas = document.createElement("canvas");

function draw() {
  const {width: w, height: h} = state.item;
  const s = scale();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = w >= 64;
  ctx.drawImage(state.image, 0, 0, w * s, h * s);
  if (state.overlayOn) {
    mapCanvas.width = w;
    mapCanvas.height = h;
    const mctx = mapCanvas.getContext("2d");
    const img = mctx.createImageData(w, h);
    const lut = state.config.lut;
    const alpha = Math.round($("opacity").value * 2.55);
    for (let k = 0; k < w * h; k++) {
      const c = lut[Math.max(0, Math.min(255, Math.round(state.cur[k] * 255)))];
      img.data.set([c[0], c[1], c[2], alpha], 4 * k);
    }
    mctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(mapCanvas, 0, 0, w * s, h * s);
  }
  if (state.pointer) {
    ctx.beginPath();
    ctx.arc(state.pointer.x, state.pointer.y, Number($("radius").value), 0, 2 * Math.PI);
    ctx.strokeStyle = "white";
    ctx.setLineDash([4, 3]);
    ctx.stroke();
    ctx.setLineDash([]);
  }
}

// ---- painting ------------------------------------------------------------------------------
// A map pixel whose centre lies within the brush (in display pixels) is changed by weight
// w = strength * falloff: remove -> v (1 - w), add -> v + (1 - v) w, eraser -> towards M(x).
function dab(px, py) {
  const {width: w, height: h} = state.item;
  const s = scale();
  const r = Number($("radius").value);
  const strength = Number($("strength").value) / 100;
  const hard = $("hard").checked;
  const mode = tool();
  const x0 = Math.max(0, Math.floor((px - r) / s)), x1 = Math.min(w - 1, Math.floor((px + r) / s));
  const y0 = Math.max(0, Math.floor((py - r) / s)), y1 = Math.min(h - 1, Math.floor((py + r) / s));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const d = Math.hypot((x + 0.5) * s - px, (y + 0.5) * s - py);
      if (d > r) continue;
      const wgt = strength * (hard ? 1 : (1 - d / r) ** 2);
      const k = y * w + x;
      const v = state.cur[k];
      if (mode === "remove") state.cur[k] = v * (1 - wgt);
      else if (mode === "add") state.cur[k] = v + (1 - v) * wgt;
      else state.cur[k] = v + (state.orig[k] - v) * wgt;
    }
  }
}

function eventPoint(ev) {
  const rect = canvas.getBoundingClientRect();
  return {x: (ev.clientX - rect.left) * canvas.width / rect.width,
          y: (ev.clientY - rect.top) * canvas.height / rect.height};
}

function remember() {
  state.undo.push(state.cur.slice());
  if (state.undo.length > MAX_HISTORY) state.undo.shift();
  state.redo = [];
}

canvas.addEventListener("pointerdown", (ev) => {
  if (!state.item) return;
  canvas.setPointerCapture(ev.pointerId);
  remember();
  state.painting = true;
  state.last = eventPoint(ev);
  dab(state.last.x, state.last.y);
  draw();
});

canvas.addEventListener("pointermove", (ev) => {
  if (!state.item) return;
  const p = eventPoint(ev);
  state.pointer = p;
  if (state.painting) {  // dabs along the segment, a third of the radius apart
    const step = Math.max(1, Number($("radius").value) / 3);
    const n = Math.ceil(Math.hypot(p.x - state.last.x, p.y - state.last.y) / step);
    for (let i = 1; i <= n; i++) {
      dab(state.last.x + (p.x - state.last.x) * i / n, state.last.y + (p.y - state.last.y) * i / n);
    }
    state.last = p;
  }
  draw();
});

function endStroke() {
  if (!state.painting) return;
  state.painting = false;
  rescore();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
canvas.addEventListener("pointerleave", () => { state.pointer = null; if (state.item) draw(); });

// ---- history -------------------------------------------------------------------------------
function restore(from, to) {
  if (!from.length) return;
  to.push(state.cur.slice());
  state.cur = from.pop();
  draw();
  rescore();
}
const undo = () => restore(state.undo, state.redo);
const redo = () => restore(state.redo, state.undo);
function reset() {
  remember();
  state.cur = state.orig.slice();
  draw();
  rescore();
}

// ---- server round trips --------------------------------------------------------------------
function showTopk(id, topk) {
  const ol = $(id);
  ol.replaceChildren(...topk.map((t) => {
    const li = document.createElement("li");
    li.textContent = `${t.name} ${(100 * t.probability).toFixed(2)}%`;
    return li;
  }));
  ol.dataset.topk = JSON.stringify(topk);
}

async function rescore() {
  const seq = ++state.scoreSeq;
  const index = state.index;
  try {
    const res = await api(`api/score/${index}`, {map: Array.from(state.cur)});
    if (seq !== state.scoreSeq || index !== state.index) return;  // a newer stroke won
    showTopk("edited-topk", res.topk);
    $("edited-topk").dataset.scored = String(seq);
  } catch (e) {
    status(`re-scoring failed: ${e.message}`);
  }
}

async function save() {
  const label = $("label").value === "" ? null : Number($("label").value);
  const snapshot = state.cur.slice();
  const res = await api(`api/save/${state.index}`, {map: Array.from(snapshot), label});
  state.saved = snapshot;
  state.item.label = label;
  status(`saved ${state.item.name} (revision ${res.revision})`);
  return res;
}

async function load(index) {
  const item = await api(`api/item/${index}`);
  const image = new Image();
  image.src = `image/${index}?token=${encodeURIComponent(TOKEN)}`;
  await image.decode();
  state.index = index;
  state.item = item;
  state.image = image;
  state.orig = Float32Array.from(item.original.flat());
  state.cur = item.edited ? Float32Array.from(item.edited.flat()) : state.orig.slice();
  state.saved = state.cur.slice();
  state.undo = [];
  state.redo = [];
  $("position").textContent = `${index + 1} / ${state.config.count} · ${item.name}`;
  $("label").value = item.label === null ? "" : String(item.label);
  $("warning").hidden = !item.warning;
  $("warning").textContent = item.warning ? `Stored edit not applied: ${item.warning}. ` +
    "Saving replaces it." : "";
  showTopk("original-topk", item.topk);
  $("edited-topk").dataset.scored = "0";
  status(item.edited ? `restored saved edit (revision ${item.revision})` : "no saved edit yet");
  draw();
  rescore();
}

async function go(delta) {
  const next = state.index + delta;
  if (next < 0 || next >= state.config.count) return;
  try {
    if (dirty()) await save();  // autosave on navigation
    await load(next);
  } catch (e) {
    status(`error: ${e.message}`);
  }
}

// ---- controls ------------------------------------------------------------------------------
for (const id of ["radius", "strength", "opacity"]) {
  $(id).addEventListener("input", () => {
    $(`${id}-out`).textContent = $(id).value;
    if (state.item) draw();
  });
}
$("undo").onclick = undo;
$("redo").onclick = redo;
$("reset").onclick = reset;
$("save").onclick = () => save().catch((e) => status(`save failed: ${e.message}`));
$("prev").onclick = () => go(-1);
$("next").onclick = () => go(1);

function nudge(id, delta) {
  const el = $(id);
  el.value = String(Math.max(Number(el.min), Math.min(Number(el.max), Number(el.value) + delta)));
  el.dispatchEvent(new Event("input"));
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT" && ev.target.type !== "radio"
      && ev.target.type !== "checkbox") return;
  const key = ev.key.toLowerCase();
  const pick = (v) => { document.querySelector(`input[name="tool"][value="${v}"]`).checked = true; };
  if (ev.ctrlKey || ev.metaKey) {
    if (key === "z" && !ev.shiftKey) undo();
    else if (key === "z" || key === "y") redo();
    else if (key === "s") $("save").click();
    else return;
  } else if (key === "r") pick("remove");
  else if (key === "a") pick("add");
  else if (key === "e") pick("erase");
  else if (key === "h") $("hard").checked = !$("hard").checked;
  else if (key === "[") nudge("radius", -2);
  else if (key === "]") nudge("radius", 2);
  else if (key === "-") nudge("strength", -5);
  else if (key === "=") nudge("strength", 5);
  else if (key === "o") { state.overlayOn = !state.overlayOn; draw(); }
  else if (key === "0") reset();
  else if (key === "s") $("save").click();
  else if (key === "arrowleft" || key === "p") go(-1);
  else if (key === "arrowright" || key === "n") go(1);
  else return;
  ev.preventDefault();
});

// Exposed for scripted checks (the browser tests read the map being edited).
window.editor = {current: () => Array.from(state.cur), state};

(async function start() {
  try {
    state.config = await api("api/config");
    const stops = [0, 32, 64, 96, 128, 160, 192, 224, 255].map(
      (i) => `rgb(${state.config.lut[i].join(",")}) ${(100 * i / 255).toFixed(1)}%`);
    $("ramp").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
    $("model").textContent = `model ${state.config.model} · edits → ${state.config.edits}`;
    const none = new Option("(no label)", "");
    $("label").replaceChildren(none, ...state.config.classes.map((c, i) => new Option(c, String(i))));
    await load(0);
  } catch (e) {
    status(`error: ${e.message}`);
  }
})();
