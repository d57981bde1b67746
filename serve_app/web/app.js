// Dehaze Serve demo page: plain JavaScript, no build step.
// Talks to GET /v1/models and POST /v1/dehaze/{model}?variant=... (raw image bytes in the body).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], file: null, inputUrl: null, resultUrl: null, busy: false };

// Plain words for the service's error codes ({"error": {"code", "message"}}).
const PLAIN = {
  unsupported_media_type: "That file is not an image this service can read. Use PNG, JPEG, WebP, BMP, TIFF or GIF.",
  invalid_image: "The image could not be read: it is empty, damaged or too small.",
  payload_too_large: "The image is too large for this service.",
  unknown_model: "That model is not available on this service.",
  unknown_variant: "That variant does not exist for this model.",
  weights_unavailable: "This model cannot run right now: its weights are missing or broken.",
  bad_checkpoint: "This model cannot run right now: its weights file is broken.",
  unauthorized: "This service needs an access token. Enter it under “Access token” and try again.",
  rate_limited: "Too many requests in a short time. Wait a moment and try again.",
  overloaded: "The model is busy. Try again in a few seconds.",
  model_failed: "The model failed on this image. Try again, or pick another model.",
  storage_unavailable: "The service's storage is not reachable right now.",
  invalid_request: "The request was not understood by the service.",
  bad_request: "The request was not understood by the service.",
  internal_error: "Something went wrong inside the service.",
};

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function showMessage(kind, title, detail) {
  const box = $("message");
  box.className = `message ${kind}`;
  box.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  box.appendChild(strong);
  if (detail) {
    const small = document.createElement("span");
    small.className = "detail";
    small.textContent = detail;
    box.appendChild(small);
  }
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
}

// A failed response -> {title, detail} in plain words.
async function describeFailure(resp) {
  let code = "", message = "";
  try {
    const body = await resp.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not JSON */ }
  let title = PLAIN[code];
  if (!title) {
    if (resp.status === 401 || resp.status === 403) title = PLAIN.unauthorized;
    else if (resp.status === 429) title = PLAIN.rate_limited;
    else if (resp.status >= 500) title = PLAIN.internal_error;
    else title = "The request failed.";
  }
  const detail = message ? `${message} (HTTP ${resp.status})` : `HTTP ${resp.status}`;
  return { title, detail };
}

// ---- models ---------------------------------------------------------------------------------
async function loadModels() {
  const select = $("model");
  select.disabled = true;
  try {
    const resp = await fetch("/v1/models", { headers: authHeaders() });
    if (!resp.ok) {
      const f = await describeFailure(resp);
      showMessage("error", f.title, f.detail);
      select.replaceChildren(new Option("no models", ""));
      return;
    }
    const body = await resp.json();
    state.models = body.models || [];
    state.device = body.device;
    select.replaceChildren();
    for (const m of state.models) {
      const usable = m.variants.some((v) => v.available);
      const opt = new Option(usable ? `${m.name} · ${m.type}` : `${m.name} · unavailable`, m.name);
      opt.disabled = !usable;
      if (!usable) opt.title = m.variants.map((v) => v.reason).filter(Boolean).join("; ");
      select.appendChild(opt);
    }
    const first = state.models.find((m) => m.variants.some((v) => v.available));
    if (first) select.value = first.name;
    select.disabled = state.models.length === 0;
    if ($("message").classList.contains("error") && $("message").textContent.includes("token")) clearMessage();
    onModelChange();
  } catch (err) {
    showMessage("error", "The service could not be reached.", String(err));
  }
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

function currentVariant() {
  const m = currentModel();
  return m && m.variants.find((v) => v.name === $("variant").value);
}

function onModelChange() {
  const m = currentModel();
  const vs = $("variant");
  vs.replaceChildren();
  if (!m) return updateFacts();
  for (const v of m.variants) {
    const label = v.available ? `${v.name} · ${v.type}` : `${v.name} · unavailable`;
    const opt = new Option(label, v.name);
    opt.disabled = !v.available;
    if (!v.available) opt.title = v.reason || "unavailable";
    vs.appendChild(opt);
  }
  const preferred = m.variants.find((v) => v.name === m.default_variant && v.available)
    || m.variants.find((v) => v.available);
  if (preferred) vs.value = preferred.name;
  vs.disabled = false;
  updateFacts();
}

function updateFacts() {
  const m = currentModel(), v = currentVariant();
  const avail = $("availability");
  const dl = $("facts");
  dl.replaceChildren();
  const add = (k, val) => {
    if (val === undefined || val === null || val === "") return;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = val;
    dl.append(dt, dd);
  };
  if (!m) { avail.textContent = ""; updateRunButton(); return; }
  const unavailable = m.variants.filter((x) => !x.available);
  if (unavailable.length) {
    avail.className = "availability warn";
    avail.textContent = `${m.variants.length - unavailable.length} of ${m.variants.length} variants available. `
      + `Unavailable: ${unavailable.map((x) => `${x.name} (${x.reason || "unavailable"})`).join("; ")}`;
  } else {
    avail.className = "availability ok";
    avail.textContent = m.variants.length > 1 ? `All ${m.variants.length} variants available.` : "Available.";
  }
  add("Algorithm", `${m.name} (${m.type})`);
  add("About", m.description);
  add("Paper", m.paper);
  if (v) {
    add("Variant", `${v.name} (${v.type})`);
    add("Variant notes", v.description);
    const params = Object.entries(v.params || {}).map(([k, x]) => `${k}=${x}`).join(", ");
    add("Parameters", params);
    add("Weights", v.path || "none needed");
    add("Legacy modelId", v.id ?? m.id);
  }
  add("Device", state.lastDevice || state.device);
  updateRunButton();
}

function updateRunButton() {
  const v = currentVariant();
  $("run").disabled = state.busy || !state.file || !v || !v.available;
}

// ---- input ----------------------------------------------------------------------------------
function setFile(file) {
  if (!file) return;
  state.file = file;
  $("file-name").textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KB`;
  if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
  state.inputUrl = URL.createObjectURL(file);
  clearResult();
  clearMessage();
  const before = $("before");
  before.onerror = () => {
    // The browser cannot preview it; the service still decides (and explains) on upload.
    before.hidden = true;
    $("placeholder").hidden = false;
    $("placeholder").querySelector("p").textContent = `${file.name}: no preview; press Dehaze to send it.`;
  };
  before.src = state.inputUrl;
  before.hidden = false;
  $("placeholder").hidden = true;
  $("compare").classList.remove("empty");
  updateRunButton();
}

function clearResult() {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  for (const id of ["after", "divider", "slider"]) $(id).hidden = true;
  document.querySelectorAll(".tag").forEach((t) => { t.hidden = true; });
  $("download").hidden = true;
  $("timing").replaceChildren();
  $("compare").classList.remove("has-result");
  document.body.dataset.state = state.file ? "ready" : "idle";
}

// ---- dehaze ---------------------------------------------------------------------------------
function parseServerTiming(header) {
  const out = [];
  for (const part of (header || "").split(",")) {
    const [name, ...attrs] = part.trim().split(";");
    if (!name) continue;
    const dur = attrs.map((a) => a.trim()).find((a) => a.startsWith("dur="));
    if (dur) out.push([name.trim(), parseFloat(dur.slice(4))]);
  }
  return out;
}

function showTiming(resp, roundTripMs) {
  const t = $("timing");
  t.replaceChildren();
  let stages = parseServerTiming(resp.headers.get("Server-Timing"));
  if (!stages.length) {
    // fall back to X-Timing-<Stage>-Ms headers (when a proxy strips Server-Timing)
    for (const [k, val] of resp.headers.entries()) {
      const m = /^x-timing-(.+)-ms$/i.exec(k);
      if (m) stages.push([m[1].toLowerCase(), parseFloat(val)]);
    }
  }
  const chip = (label, value, cls = "") => {
    const s = document.createElement("span");
    s.className = `chip ${cls}`;
    s.innerHTML = "<b></b> <i></i>";
    s.querySelector("b").textContent = label;
    s.querySelector("i").textContent = value;
    t.appendChild(s);
  };
  chip("round trip", `${roundTripMs.toFixed(0)} ms`, "total");
  for (const [name, ms] of stages) {
    if (name === "model") continue; // the sum of queue + load + inference, shown by its parts
    chip(name, `${ms.toFixed(1)} ms`);
  }
  const cache = resp.headers.get("X-Cache");
  if (cache) chip("cache", cache, cache === "hit" ? "hit" : "");
}

async function dehaze() {
  const m = currentModel(), v = currentVariant();
  if (!state.file || !m || !v) return;
  state.busy = true;
  updateRunButton();
  clearMessage();
  clearResult();
  document.body.dataset.state = "busy";
  $("busy").hidden = false;
  const started = performance.now();
  try {
    const url = `/v1/dehaze/${encodeURIComponent(m.name)}?variant=${encodeURIComponent(v.name)}`;
    const resp = await fetch(url, {
      method: "POST",
      body: state.file,
      headers: { "Content-Type": state.file.type || "application/octet-stream", ...authHeaders() },
    });
    const roundTrip = performance.now() - started;
    if (!resp.ok) {
      const f = await describeFailure(resp);
      showMessage("error", f.title, f.detail);
      document.body.dataset.state = "error";
      return;
    }
    const blob = await resp.blob();
    state.resultUrl = URL.createObjectURL(blob);
    state.lastDevice = resp.headers.get("X-Device") || state.lastDevice;
    const after = $("after");
    await new Promise((resolve, reject) => {
      after.onload = resolve;
      after.onerror = () => reject(new Error("the result could not be displayed"));
      after.src = state.resultUrl;
    });
    // the input preview may have failed in the browser: show the service's view of it then
    for (const id of ["after", "divider", "slider"]) $(id).hidden = false;
    document.querySelectorAll(".tag").forEach((tag) => { tag.hidden = false; });
    $("placeholder").hidden = true;
    $("compare").classList.add("has-result");
    setSlider($("slider").value);
    showTiming(resp, roundTrip);
    const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
    const stem = (state.file.name || "image").replace(/\.[^.]+$/, "");
    const dl = $("download");
    dl.href = state.resultUrl;
    dl.download = `${stem}-${m.name}-${v.name}.${ext}`;
    dl.hidden = false;
    const notes = resp.headers.get("X-Input-Notes");
    if (notes) showMessage("info", "Note about the input", notes);
    updateFacts();
    document.body.dataset.state = "done";
  } catch (err) {
    showMessage("error", "The service could not be reached.", String(err));
    document.body.dataset.state = "error";
  } finally {
    state.busy = false;
    $("busy").hidden = true;
    updateRunButton();
  }
}

// ---- comparison slider ----------------------------------------------------------------------
function setSlider(value) {
  const pct = Math.max(0, Math.min(100, Number(value)));
  $("after").style.clipPath = `inset(0 0 0 ${pct}%)`;
  $("divider").style.left = `${pct}%`;
}

// ---- wiring ---------------------------------------------------------------------------------
function wire() {
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => setFile(e.dataTransfer.files[0]));
  // a drop anywhere on the page works too
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("model").addEventListener("change", onModelChange);
  $("variant").addEventListener("change", updateFacts);
  $("run").addEventListener("click", dehaze);
  $("slider").addEventListener("input", (e) => setSlider(e.target.value));
  const token = $("token");
  token.value = sessionStorage.getItem("dehaze-token") || "";
  token.addEventListener("change", () => {
    sessionStorage.setItem("dehaze-token", token.value.trim());
    loadModels();
  });
  document.body.dataset.state = "idle";
  loadModels();
}

wire();
