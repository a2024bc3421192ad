// happysad page: send images to /api/predict and draw what comes back. No libraries, no network but
// this server. Everything from the server or the user is put in the page as text, never as HTML.
"use strict";

const PALETTE = ["#2f6fdf", "#e08a00", "#2e9d5b", "#b23ac7", "#d6453d", "#16a0b8", "#7a5a2f", "#5b6470"];
const CLASS_COLORS = { happy: "#e08a00", sad: "#2f6fdf" };
const $ = (sel) => document.querySelector(sel);
let model = null;          // GET /api/model
let objectUrls = [];       // previews to free on Clear

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function colorOf(label) {
  if (CLASS_COLORS[label]) return CLASS_COLORS[label];
  const i = model ? model.classes.indexOf(label) : -1;
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

const pct = (p) => (100 * p).toFixed(1) + "%";

function setStatus(text, isError) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

async function loadModel() {
  try {
    const r = await apiFetch("/api/model");
    model = await r.json();
    const inp = model.input || {};
    const parts = [`model ${model.name}`, `classes: ${model.classes.join(", ")}`,
                   model.kind === "photo" ? "photo model: faces + whole scene"
                     : `input ${inp.width}×${inp.height} ${inp.color_mode || ""}`.trim()];
    const m = model.metrics;
    if (m && typeof m.accuracy === "number") parts.push(`${m.split || "test"} accuracy ${pct(m.accuracy)} on ${m.n} images`);
    $("#model-info").textContent = parts.join(" · ");
    const l = model.limits || {};
    $("#limits").textContent = `Up to ${l.max_files} images and ${l.max_upload_mb} MB per upload. ` +
      (model.kind === "photo" ? "Each photo is judged from its faces and its whole scene; each face is labelled too."
        : model.faces ? "Each face is labelled." : "The whole image is classified (no face detector yet).");
    if (model.kind !== "photo" && !model.faces) {  // Live tracks faces: a whole-image model has none
      $("#live-toggle").disabled = true;
      $("#live-toggle").title = "Live needs a face or photo model (e.g. happysad serve --model fer-happy-sad)";
    }
  } catch (e) {
    $("#model-info").textContent = "cannot reach the server";
  }
}

// ---- sending

function chunks(list, n) {
  const out = [];
  for (let i = 0; i < list.length; i += n) out.push(list.slice(i, i + n));
  return out;
}

async function send(files) {
  files = Array.from(files);
  if (!files.length) return;
  const maxFiles = (model && model.limits && model.limits.max_files) || 16;
  let done = 0;
  for (const batch of chunks(files, maxFiles)) {
    setStatus(`classifying ${files.length === 1 ? "1 image" : files.length + " images"}…`);
    const fd = new FormData();
    batch.forEach((f, i) => fd.append("files", f, f.name || `image${i}.jpg`));
    const t0 = performance.now();
    let resp, body;
    try {
      resp = await apiFetch("/api/predict", { method: "POST", body: fd });
      body = await resp.json().catch(() => null);
    } catch (e) {
      setStatus("the server did not answer: " + e, true);
      return;
    }
    const rtt = performance.now() - t0;
    if (!resp.ok) {
      const err = (body && body.error) || { message: `HTTP ${resp.status}` };
      showError(err, resp.status, batch);
      setStatus(`error ${resp.status}: ${err.message}`, true);
      continue;
    }
    body.results.forEach((r, i) => showResult(r, batch[i], body.timing, rtt));
    done += batch.length;
    setStatus(`done: ${done} image${done === 1 ? "" : "s"} in ${Math.round(rtt)} ms`);
  }
}

// ---- drawing

function regions(r) {
  // Face results when the server has a detector; until then one box: the region the model looked at.
  if (Array.isArray(r.faces)) return r.faces.map((f, i) => ({ ...f, name: `face ${i + 1}` }));
  return [{ box: r.box || [0, 0, r.width, r.height], label: r.label, probabilities: r.probabilities,
            name: "whole image" }];
}

function drawBox(frame, region, w, h, box) {
  // `box`: an element drawn before (a live person's), moved and relabelled instead of drawn anew
  const [x, y, bw, bh] = region.box;
  box = box || el("div", "box");
  box.style.left = (100 * x / w) + "%";
  box.style.top = (100 * y / h) + "%";
  box.style.width = (100 * bw / w) + "%";
  box.style.height = (100 * bh / h) + "%";
  box.style.setProperty("--c", colorOf(region.label));
  box.classList.toggle("inside", y / h < 0.12);  // no room above: put the tag inside the box
  const p = region.probabilities[region.label];
  const who = region.track !== undefined ? `#${region.track} ` : "";  // live faces carry a person number
  const tag = box.querySelector(".tag") || box.appendChild(el("span", "tag"));
  tag.textContent = `${who}${region.label} ${pct(p)}`;
  box.dataset.label = region.label;
  if (!box.parentNode) frame.append(box);
  return box;
}

function bars(region, showName) {
  const g = el("div", "bars");
  if (showName) g.append(el("div", "sub", region.name));
  const sorted = Object.entries(region.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [cls, p] of sorted) {
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = pct(p);
    fill.style.setProperty("--c", colorOf(cls));
    track.append(fill);
    track.setAttribute("role", "meter");
    track.setAttribute("aria-label", cls);
    track.setAttribute("aria-valuenow", (100 * p).toFixed(1));
    g.append(el("span", "cls", cls), track, el("span", "val", pct(p)));
  }
  return g;
}

function preview(file, r, frame) {
  const img = el("img");
  const url = URL.createObjectURL(file);
  objectUrls.push(url);
  img.alt = r.path;
  img.src = url;
  if (Math.max(r.width, r.height) < 160) img.classList.add("tiny");  // a 48×48 face: show it bigger
  img.addEventListener("error", () => {
    img.replaceWith(el("div", "no-preview", "(this browser cannot show this format; the server read it)"));
  });
  frame.append(img);
}

function showResult(r, file, timing, rtt) {
  const card = el("article", "result");
  card.dataset.label = r.label;
  const frame = el("div", "frame");
  preview(file, r, frame);
  const regs = regions(r);
  regs.forEach((g) => drawBox(frame, g, r.width, r.height));

  const info = el("div", "info");
  // A photo model judges the whole photo (faces and scene together): its own label leads.
  const photoModel = typeof r.decided_by === "string";
  const headLabel = photoModel ? r.label : (regs.length ? regs[0].label : "no face found");
  const head = el("h3", "label", headLabel);
  head.style.color = colorOf(photoModel || regs.length ? headLabel : "");
  const what = Array.isArray(r.faces) ? `${regs.length} face${regs.length === 1 ? "" : "s"}` : "whole image classified";
  info.append(head, el("div", "name muted small", `${r.path} · ${r.width}×${r.height} · ${what}`));
  if (photoModel) {
    info.append(el("div", "decided small", `decided by the ${r.decided_by} branch`));
    info.append(bars({ name: "photo", probabilities: r.probabilities }, true));
  }
  regs.forEach((g) => info.append(bars(g, regs.length > 1 || Array.isArray(r.faces))));
  const t = el("div", "timing");
  t.textContent = `model ${r.ms} ms/image (batch of ${timing.batch}) · server ${timing.total_ms} ms · ` +
                  `round trip ${Math.round(rtt)} ms`;
  info.append(t);
  const media = el("div", "media");
  media.append(frame);
  card.append(media, info);
  addCard(card);
}

function showError(err, status, batch) {
  const card = el("article", "result error");
  const names = err.file || batch.map((f) => f.name).join(", ");
  card.append(el("strong", null, `Could not classify ${names} (HTTP ${status})`), el("div", null, err.message));
  addCard(card);
}

function addCard(card) {
  const results = $("#results");
  results.prepend(card);
  $("#results-title").hidden = false;
  $("#clear").hidden = false;
}

function clearResults() {
  $("#results").replaceChildren();
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
  $("#results-title").hidden = true;
  $("#clear").hidden = true;
  setStatus("");
}

// ---- webcam

let stream = null;

async function openCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (e) {
    setStatus("webcam not available: " + (e.message || e.name), true);
    return;
  }
  $("#camera-video").srcObject = stream;
  $("#camera").hidden = false;
}

function closeCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("#camera-video").srcObject = null;
  $("#camera").hidden = true;
}

function snap() {
  const v = $("#camera-video");
  if (!v.videoWidth) return;
  const c = document.createElement("canvas");
  c.width = v.videoWidth;
  c.height = v.videoHeight;
  c.getContext("2d").drawImage(v, 0, 0);
  c.toBlob((blob) => {
    const stamp = new Date().toISOString().slice(11, 19).replace(/:/g, "");
    send([new File([blob], `webcam-${stamp}.jpg`, { type: "image/jpeg" })]);
  }, "image/jpeg", 0.92);
}

// ---- live camera: frames over one WebSocket, one frame in flight, boxes drawn over the video

const LIVE_SIDE = 320;        // px: frames are downscaled to this longest side before sending
const LIVE_INTERVAL = 200;    // ms between frames at most (5 per second)
let live = null;              // {stream, ws, busy, sentAt, times, timer} while Live is on

let liveStarting = false;  // a second click while the browser asks for the camera does nothing

async function startLive() {
  if (live || liveStarting) return;
  liveStarting = true;
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (e) {
    setStatus("webcam not available: " + (e.message || e.name), true);
    return;
  } finally {
    liveStarting = false;
  }
  const ws = new WebSocket(apiSocketUrl("/api/live"));  // carries the API key when the server asks for one
  ws.binaryType = "arraybuffer";
  live = { stream: media, ws, busy: false, sentAt: 0, times: [], timer: null, canvas: document.createElement("canvas") };
  const v = $("#live-video");
  v.srcObject = media;
  $("#live").hidden = false;
  $("#live-toggle").setAttribute("aria-checked", "true");
  $("#live-stats").textContent = "connecting…";
  ws.addEventListener("open", () => { live && (live.timer = setInterval(sendLiveFrame, LIVE_INTERVAL / 2)); });
  ws.addEventListener("message", (e) => onLiveAnswer(e.data));
  ws.addEventListener("close", () => { if (live && live.ws === ws) { setStatus("live: the server closed the connection", true); stopLive(); } });
}

function sendLiveFrame() {
  const v = $("#live-video");
  // One frame in flight at most; none while the page is hidden or the camera has no picture yet.
  if (!live || live.busy || document.hidden || !v.videoWidth || live.ws.readyState !== WebSocket.OPEN) return;
  if (performance.now() - live.sentAt < LIVE_INTERVAL) return;
  const k = Math.min(1, LIVE_SIDE / Math.max(v.videoWidth, v.videoHeight));
  const c = live.canvas;
  c.width = Math.round(v.videoWidth * k);
  c.height = Math.round(v.videoHeight * k);
  c.getContext("2d").drawImage(v, 0, 0, c.width, c.height);
  live.busy = true;
  live.sentAt = performance.now();
  c.toBlob((blob) => {
    if (!live || !blob) { if (live) live.busy = false; return; }
    live.ws.send(blob);
  }, "image/jpeg", 0.8);
}

function onLiveAnswer(text) {
  if (!live) return;
  const now = performance.now();
  const latency = now - live.sentAt;
  live.busy = false;
  let r;
  try { r = JSON.parse(text); } catch (e) { return; }
  if (r.error) { setStatus(`live: ${r.error.message}`, true); return; }
  live.times.push(now);
  while (live.times.length && now - live.times[0] > 3000) live.times.shift();
  const fps = live.times.length > 1 ? 1000 * (live.times.length - 1) / (now - live.times[0]) : 0;
  const frame = document.querySelector("#live .live-frame");
  // Labels come smoothed over time from the server (each person's probabilities, half-life 0.5 s);
  // each person keeps one box, which glides to its new place (CSS transition) instead of jumping.
  const gone = new Map(Array.from(frame.querySelectorAll(".box"), (b) => [b.dataset.track, b]));
  r.faces.forEach((f) => {
    const key = String(f.track);
    drawBox(frame, f, r.width, r.height, gone.get(key)).dataset.track = key;
    gone.delete(key);
  });
  gone.forEach((b) => b.remove());
  const n = r.faces.length;
  $("#live-stats").textContent = `${fps.toFixed(1)} frames/s · latency ${Math.round(latency)} ms ` +
    `(server ${r.server_ms} ms) · ${n ? n + (n === 1 ? " face" : " faces") : "no face"}`;
}

function stopLive() {
  if (!live) return;
  const l = live;
  live = null;
  clearInterval(l.timer);
  l.ws.close();
  l.stream.getTracks().forEach((t) => t.stop());
  $("#live-video").srcObject = null;
  document.querySelectorAll("#live .box").forEach((b) => b.remove());
  $("#live").hidden = true;
  $("#live-toggle").setAttribute("aria-checked", "false");
}

// ---- wiring

function init() {
  const drop = $("#drop");
  const input = $("#file-input");
  input.addEventListener("change", () => { send(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  // A file dropped anywhere on the page is sent, instead of the browser navigating away to show it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) send(e.dataTransfer.files);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  document.addEventListener("paste", (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
    if (files.length) send(files);
  });
  const cam = $("#camera-open");
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
    cam.disabled = true;
    cam.title = "browsers allow the webcam only on secure pages (https, or a localhost address)";
  }
  cam.addEventListener("click", openCamera);
  const liveBtn = $("#live-toggle");
  liveBtn.disabled = cam.disabled;
  liveBtn.addEventListener("click", () => (live ? stopLive() : startLive()));
  // A hidden tab sends nothing: Live stops (and frees the camera) until switched on again.
  document.addEventListener("visibilitychange", () => { if (document.hidden) stopLive(); });
  $("#camera-close").addEventListener("click", closeCamera);
  $("#camera-snap").addEventListener("click", snap);
  $("#clear").addEventListener("click", clearResults);
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);
