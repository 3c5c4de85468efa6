// The drawing page: a canvas for mouse, pen and touch (pointer events), a picture
// drop, and the answer of POST /api/predict?explain=1 drawn as it arrives.
//
// While the user draws, a request leaves at most every THROTTLE_MS and never while
// another is in flight: when one returns and the drawing changed meanwhile, the
// latest drawing is sent next. A slow server thus sees one request at a time from
// a page, not a pile of stale ones.
"use strict";

const THROTTLE_MS = 120;
const STROKE = 20; // px on the 280-px canvas: MNIST strokes are about 2 of 28 pixels

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const digitEl = document.getElementById("digit");
const statusEl = document.getElementById("status");
const top3El = document.getElementById("top3");
const insideEl = document.getElementById("inside");
const answerEl = document.querySelector(".answer");

let inFlight = false;
let dirty = false; // the picture changed since the last request left
let timer = null;
let generation = 0; // bumped by Clear: answers to older pictures are dropped
let source = null; // null (blank), "canvas", or a File dropped or opened
let drawing = null; // the pointer drawing now: {id, x, y}

function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: ((e.clientX - r.left) * pad.width) / r.width, y: ((e.clientY - r.top) * pad.height) / r.height };
}

function stroke(from, to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = STROKE;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  if (drawing || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  const p = point(e);
  drawing = { id: e.pointerId, ...p };
  stroke(p, p); // a tap leaves a dot
  source = "canvas";
  changed();
});

pad.addEventListener("pointermove", (e) => {
  if (!drawing || e.pointerId !== drawing.id) return;
  // A fast pen or finger delivers several points per frame: draw them all.
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const c of events.length ? events : [e]) {
    const p = point(c);
    stroke(drawing, p);
    drawing.x = p.x;
    drawing.y = p.y;
  }
  changed();
});

function endStroke(e) {
  if (!drawing || e.pointerId !== drawing.id) return;
  drawing = null;
  // The stroke is finished: answer it now rather than at the next tick.
  clearTimeout(timer);
  timer = null;
  send();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// aria-busy says an answer for the latest drawing is still to come: a screen reader
// waits for it, and so does the browser test before it reads the digit.
function busy() {
  answerEl.setAttribute("aria-busy", String(source !== null && (inFlight || dirty)));
}

function changed() {
  dirty = true;
  busy();
  if (!timer) {
    timer = setTimeout(() => {
      timer = null;
      send();
    }, THROTTLE_MS);
  }
}

document.getElementById("clear").addEventListener("click", () => {
  generation++;
  blank();
  source = null;
  dirty = false;
  clearTimeout(timer);
  timer = null;
  digitEl.textContent = "?";
  digitEl.classList.remove("unsure");
  top3El.replaceChildren();
  insideEl.hidden = true;
  setStatus("Draw a digit to start.");
  busy();
});

// A picture, dropped on the square or opened: shown on the square, and sent as it
// is, so the answer is the one `gpu-cnn infer` gives for the same file.
async function usePicture(file) {
  if (!file) return;
  generation++;
  blank();
  try {
    const bitmap = await createImageBitmap(file);
    const k = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * k;
    const h = bitmap.height * k;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (_) {
    // The browser cannot show it; the server may still read it, or say why not.
  }
  source = file;
  dirty = true;
  busy();
  send();
}

for (const type of ["dragenter", "dragover"]) {
  pad.addEventListener(type, (e) => {
    e.preventDefault();
    pad.classList.add("dropping");
  });
}
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (e) => {
  e.preventDefault();
  pad.classList.remove("dropping");
  usePicture(e.dataTransfer.files[0]);
});
// A picture dropped beside the square must not replace the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
document.getElementById("file").addEventListener("change", (e) => {
  usePicture(e.target.files[0]);
  e.target.value = "";
});

function canvasPng() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function send() {
  if (inFlight || !dirty || source === null) return;
  inFlight = true;
  dirty = false;
  busy();
  const gen = generation;
  const body = source === "canvas" ? await canvasPng() : source;
  const started = performance.now();
  try {
    const r = await fetch("/api/predict?explain=1", {
      method: "POST",
      headers: { "Content-Type": body.type || "application/octet-stream" },
      body,
    });
    const answer = await r.json().catch(() => ({ error: `the server answered ${r.status} without JSON` }));
    if (gen !== generation) return;
    if (!r.ok) {
      showError(answer.error || `the server answered ${r.status}`);
    } else {
      show(answer, performance.now() - started);
    }
  } catch (err) {
    if (gen === generation) showError(`the server does not answer (${err.message})`);
  } finally {
    inFlight = false;
    busy();
    if (dirty) send();
  }
}

function setStatus(text, error = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", error);
}

function showError(message) {
  digitEl.textContent = "?";
  digitEl.classList.add("unsure");
  top3El.replaceChildren();
  insideEl.hidden = true;
  setStatus(message, true);
}

function show(a, ms) {
  digitEl.textContent = String(a.digit);
  digitEl.classList.toggle("unsure", a.top3[0].probability < 0.5);
  digitEl.dataset.answers = String(Number(digitEl.dataset.answers) + 1);
  top3El.replaceChildren(
    ...a.top3.map((t) => {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.textContent = String(t.digit);
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(100 * t.probability).toFixed(1)}%`;
      bar.append(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = `${(100 * t.probability).toFixed(1)}%`;
      li.append(label, bar, pct);
      return li;
    }),
  );
  setStatus(`Answered in ${Math.round(ms)} ms.`);
  document.getElementById("backend").textContent = `Running on ${a.backend}`;
  document.getElementById("input").src = a.input_png;
  document.getElementById("saliency").src = a.saliency_png;
  document.getElementById("saliency-digit").textContent = String(a.digit);
  document.getElementById("maps").replaceChildren(...a.maps.map(mapFigure));
  insideEl.hidden = false;
}

// What each kind of layer does, in a learner's words.
function explainKind(kind) {
  if (!kind) return "";
  if (kind.startsWith("Conv2d")) return "a convolution: each channel is one filter slid over its input (after the ReLU, negatives are 0)";
  if (kind.startsWith("MaxPool2d")) return "max-pooling: each 2×2 block keeps its strongest response, halving the map";
  if (kind.startsWith("Linear")) return "a fully connected layer: one score per output, here the ten digits' logits, 0 to 9 left to right";
  if (kind.startsWith("ReLU")) return "a ReLU: negative values become 0";
  return "";
}

function mapFigure(m) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = m.png;
  img.alt = `feature maps of ${m.layer}`;
  const cap = document.createElement("figcaption");
  const name = document.createElement("b");
  name.textContent = m.layer;
  const shape = m.flat ? `${m.shape[0]} values` : `${m.shape[0]} channels of ${m.shape[1]}×${m.shape[2]}`;
  const range = `values ${m.min.toFixed(2)} to ${m.max.toFixed(2)}`;
  const kind = m.kind ? ` ${m.kind}${m.relu ? " + ReLU" : ""}` : "";
  cap.append(name, `${kind}: ${shape}, ${range}. ${explainKind(m.kind)}`);
  fig.append(img, cap);
  return fig;
}

// The run view is offered only when the server was given a run.
fetch("/api/run").then((r) => {
  if (r.ok) document.getElementById("run-link").hidden = false;
}, () => {});

blank();
