// The training-run view: GET /api/run every POLL_MS while `gpu-cnn train` appends to
// the run's metrics.jsonl, and the loss and accuracy drawn on two canvases.
"use strict";

const POLL_MS = 2000;
const TRAIN = "#2a62d6";
const TEST = "#d9480f";

const statusEl = document.getElementById("run-status");

// Round numbers for an axis from lo to hi: about `count` ticks at 1, 2 or 5 × 10^k.
function ticks(lo, hi, count) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
  return out;
}

function chart(canvas, train, test, pick, yLabel, yMin, yMax) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  const m = { l: 56, r: 16, t: 14, b: 34 };
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  const all = train.concat(test);
  if (all.length === 0) {
    ctx.fillStyle = "#5b6475";
    ctx.fillText("no points yet", W / 2 - 40, H / 2);
    return;
  }
  const x1 = Math.max(1, ...all.map((p) => p[0]));
  const ys = all.map(pick);
  const lo = yMin ?? Math.min(...ys);
  const hi = yMax ?? Math.max(...ys);
  const pad = (hi - lo) * 0.05 || 0.5;
  const y0 = yMin ?? lo - pad;
  const y1 = yMax ?? hi + pad;
  const X = (s) => m.l + ((W - m.l - m.r) * s) / x1;
  const Y = (v) => H - m.b - ((H - m.t - m.b) * (v - y0)) / (y1 - y0);
  ctx.strokeStyle = "#d9dde5";
  ctx.fillStyle = "#5b6475";
  ctx.lineWidth = 1;
  for (const t of ticks(y0, y1, 5)) {
    ctx.beginPath();
    ctx.moveTo(m.l, Y(t));
    ctx.lineTo(W - m.r, Y(t));
    ctx.stroke();
    ctx.fillText(String(t), 4, Y(t) + 4);
  }
  for (const t of ticks(0, x1, 8)) {
    ctx.fillText(String(t), X(t) - 8, H - m.b + 16);
  }
  ctx.fillText(`step  (${yLabel})`, W / 2 - 30, H - 4);
  if (train.length) {
    ctx.strokeStyle = TRAIN;
    ctx.lineWidth = 2;
    ctx.beginPath();
    train.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(pick(p))) : ctx.moveTo(X(p[0]), Y(pick(p)))));
    ctx.stroke();
  }
  ctx.fillStyle = TEST;
  for (const p of test) {
    ctx.beginPath();
    ctx.arc(X(p[0]), Y(pick(p)), 4, 0, 2 * Math.PI);
    ctx.fill();
  }
}

async function poll() {
  try {
    const r = await fetch("/api/run", { cache: "no-store" });
    const run = await r.json();
    if (!r.ok) {
      statusEl.textContent = run.error || `the server answered ${r.status}`;
      statusEl.classList.add("error");
      return; // no run to follow: stop polling
    }
    statusEl.classList.remove("error");
    if (!run.exists) {
      statusEl.textContent = `Waiting for ${run.file}: start \`gpu-cnn train --out ${run.dir}\`.`;
    } else {
      const last = run.train[run.train.length - 1];
      const lastTest = run.test[run.test.length - 1];
      let text = `${run.dir}: ${run.train.length} training points, ${run.test.length} test points.`;
      if (last) text += ` Step ${last[0]}: loss ${last[1].toFixed(4)}, accuracy ${(100 * last[2]).toFixed(1)}%.`;
      if (lastTest) text += ` Test after step ${lastTest[0]}: accuracy ${(100 * lastTest[2]).toFixed(2)}%.`;
      statusEl.textContent = text;
    }
    statusEl.dataset.points = String(run.train.length + run.test.length);
    chart(document.getElementById("loss"), run.train, run.test, (p) => p[1], "loss");
    chart(document.getElementById("accuracy"), run.train, run.test, (p) => p[2], "accuracy", 0, 1);
    document.getElementById("run-warnings").replaceChildren(
      ...run.warnings.map((w) => {
        const li = document.createElement("li");
        li.textContent = w;
        return li;
      }),
    );
  } catch (err) {
    statusEl.textContent = `the server does not answer (${err.message}); trying again`;
    statusEl.classList.add("error");
  }
  setTimeout(poll, POLL_MS);
}

poll();
