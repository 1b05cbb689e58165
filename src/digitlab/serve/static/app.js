// The page: draw on a canvas (mouse, pen or touch) or open an image, send it as it is to /api/predict, show the
// answer. No preprocessing here: the canvas goes out as a PNG and the server's preprocess module does the rest.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d");
const SIZES = { single: [280, 280], multi: [840, 280] };  // canvas pixels; the CSS scales them to the screen
const STROKE = 20;            // pen width in canvas pixels: MNIST strokes are ~2 of 28 pixels, ours ~20 of 280
const DEBOUNCE_MS = 120;      // while drawing, ask at most this often
// A server started with an API key is opened as /#key=...: the part after # never leaves the browser, and the page
// sends the key with each API request.
const API_KEY = new URLSearchParams(location.hash.slice(1)).get("key");
const KEY_HEADER = API_KEY ? { "X-API-Key": API_KEY } : {};

let mode = "single";
let calibrated = false;       // whether the model's confidence is a measured chance of being right (/api/model)
let strokes = [];             // each a list of {x, y} in canvas pixels: undo removes the last, then redraws
let current = null;           // the stroke under the pen
let photo = null;             // the File being shown instead of the canvas
let selected = 0;            // in number mode, which digit the bars and the 28x28 image describe
let timer = null, inFlight = false, queued = false, sequence = 0;

// --- drawing ----------------------------------------------------------------------------------------------------

function paper() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineWidth = STROKE;
}

function drawStroke(points) {
  if (points.length === 1) {  // a tap is a dot
    ctx.beginPath();
    ctx.arc(points[0].x, points[0].y, STROKE / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(points[0].x, points[0].y);
  for (const p of points.slice(1)) ctx.lineTo(p.x, p.y);
  ctx.stroke();
}

function redraw() {
  paper();
  strokes.forEach(drawStroke);
  $("hint").hidden = strokes.length > 0 || photo !== null;
  $("undo").disabled = strokes.length === 0;
}

function toCanvas(event) {
  const rect = canvas.getBoundingClientRect();
  return { x: (event.clientX - rect.left) * canvas.width / rect.width,
           y: (event.clientY - rect.top) * canvas.height / rect.height };
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  if (photo) showCanvas();
  current = [toCanvas(event)];
  strokes.push(current);
  redraw();
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  const last = current[current.length - 1];
  const added = (events.length ? events : [event]).map(toCanvas);
  current.push(...added);
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  for (const p of added) ctx.lineTo(p.x, p.y);
  ctx.stroke();
  schedule();
});

function endStroke() {
  if (!current) return;
  current = null;
  redraw();
  predictNow();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  if (!strokes.length) return;
  strokes.pop();
  redraw();
  predictNow();
}

function clearAll() {
  strokes = [];
  photo = null;
  showCanvas();
  showResult(null);
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
  if (event.key === "Escape") clearAll();
});

// --- mode, files ------------------------------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    mode = radio.value;
    [canvas.width, canvas.height] = SIZES[mode];
    $("surface").classList.toggle("multi", mode === "multi");
    strokes = [];
    if (photo) { fitSurface(); predictNow(); } else { redraw(); showResult(null); }
  });
}

function showCanvas() {
  photo = null;
  $("photo").hidden = true;
  $("photo").removeAttribute("src");
  canvas.hidden = false;
  fitSurface();
  redraw();
}

function showPhoto(file) {
  photo = file;
  strokes = [];
  const img = $("photo");
  img.onload = fitSurface;
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  redraw();
  predictNow();
}

// The surface takes the shape of what it shows, so the boxes (in image pixels) land on the right spot.
function fitSurface() {
  const img = $("photo");
  const surface = $("surface");
  if (photo && img.naturalWidth) {
    surface.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
  } else {
    surface.style.aspectRatio = "";
  }
}

$("file-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) showPhoto(file);
  event.target.value = "";  // picking the same file again still fires
});

const surface = $("surface");
surface.addEventListener("dragover", (event) => { event.preventDefault(); $("drop").hidden = false; });
surface.addEventListener("dragleave", () => { $("drop").hidden = true; });
surface.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) showPhoto(file);
});

// --- asking the server ------------------------------------------------------------------------------------------

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(predictNow, DEBOUNCE_MS);
}

async function predictNow() {
  clearTimeout(timer);
  if (inFlight) { queued = true; return; }   // one request at a time; the latest drawing goes next
  if (!photo && strokes.length === 0) { showResult(null); return; }
  inFlight = true;
  const mine = ++sequence;
  $("result").dataset.status = "busy";
  try {
    const body = photo ?? await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const response = await fetch(`/api/predict?multi=${mode === "multi"}`, {
      method: "POST", body, headers: { "Content-Type": body.type || "application/octet-stream", ...KEY_HEADER },
    });
    const answer = await response.json();
    if (mine !== sequence) return;
    if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : response.statusText);
    showResult(answer);
  } catch (error) {
    showResult(null);
    showMessage(`Could not read that: ${error.message}`);
  } finally {
    inFlight = false;
    if (queued) { queued = false; predictNow(); }
  }
}

// --- showing the answer -----------------------------------------------------------------------------------------

// A bar per digit, and one for the model's "not a digit" output (shown only when the model has one).
const bars = [];
for (let digit = 0; digit <= 10; digit++) {
  const row = document.createElement("li");
  const label = digit < 10 ? digit : '<abbr title="not a digit">✕</abbr>';
  row.innerHTML = `<span>${label}</span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
  if (digit === 10) { row.className = "none"; row.hidden = true; }
  $("bars").append(row);
  bars.push(row);
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function percent(p) { return `${(100 * p).toFixed(p > 0.995 || p < 0.005 ? 0 : 1)}%`; }

function showResult(answer) {
  showMessage("");
  $("boxes").replaceChildren();
  $("glyphs").replaceChildren();
  $("result").dataset.status = answer ? "done" : "idle";
  const multi = answer?.multi ?? mode === "multi";
  $("glyphs").hidden = !multi;

  const digits = answer ? (multi ? answer.digits : (answer.box ? [answer] : [])) : [];
  selected = Math.min(selected, Math.max(digits.length - 1, 0));
  $("digit").textContent = answer ? (multi ? (answer.number ?? "?") : (answer.digit ?? "?")) : "–";
  $("digit").classList.toggle("long", multi);
  $("digit").classList.toggle("empty", !answer);
  const noDigit = !multi && answer?.not_a_digit > answer?.confidence;  // the model's own "none of the ten"
  $("confidence").textContent = !answer || answer.confidence === null ? "\u00a0" :
    (noDigit ? `${percent(answer.not_a_digit)} sure it is no digit` : `${percent(answer.confidence)} sure`);
  // what "N % sure" means: for a calibrated model, how often such answers were right on digits it never trained on
  $("meaning").textContent = !answer || answer.confidence === null || noDigit ? "" : calibrated
    ? `about ${Math.round(100 * answer.confidence)} in 100 answers this sure are right`
    : "the model's score, not a measured chance of being right";
  $("reason").textContent = answer?.reason ?? "";
  showDigit(multi ? digits[selected] : answer, multi && digits.length > 1 ? `digit ${selected + 1} of ${digits.length}` : "");

  if (answer?.size) {
    const [width, height] = answer.size;
    digits.forEach((d) => {
      const [x, y, w, h] = d.box;
      const box = document.createElement("div");
      box.className = (d.digit === null ? "box unsure" : "box") + (y / height < 0.12 ? " low-label" : "");
      Object.assign(box.style, { left: `${100 * x / width}%`, top: `${100 * y / height}%`,
                                 width: `${100 * w / width}%`, height: `${100 * h / height}%` });
      if (multi) box.innerHTML = `<span>${d.digit ?? "?"}</span>`;
      $("boxes").append(box);
    });
  }
  if (multi) {
    digits.forEach((d, index) => {
      const item = document.createElement("li");
      item.innerHTML = `<button type="button" title="show this digit's probabilities"><img alt="digit ${index + 1} as ` +
                       `the model saw it"><b>${d.digit ?? "?"}</b>${percent(d.confidence)}</button>`;
      item.querySelector("img").src = d.image;
      item.classList.toggle("selected", index === selected);
      item.querySelector("button").addEventListener("click", () => { selected = index; showResult(answer); });
      $("glyphs").append(item);
    });
  }
}

// The bars and the 28x28 image for one digit (the only one, or the one picked in number mode).
function showDigit(digit, caption) {
  if (digit?.image) $("seen").src = digit.image; else $("seen").removeAttribute("src");
  $("seen-caption").textContent = caption ? `what the model saw (${caption})` : "what the model saw";
  const none = digit?.not_a_digit ?? null;
  const probabilities = [...(digit?.probabilities ?? new Array(10).fill(0)), none ?? 0];
  const best = probabilities.indexOf(Math.max(...probabilities));
  bars[10].hidden = none === null;
  bars.forEach((row, d) => {
    row.querySelector(".fill").style.width = `${100 * probabilities[d]}%`;
    row.querySelector(".pct").textContent = digit?.probabilities ? percent(probabilities[d]) : "";
    row.classList.toggle("top", Boolean(digit?.probabilities) && d === best);
  });
}

async function showModel() {
  try {
    const info = await (await fetch("/api/model", { headers: KEY_HEADER })).json();
    calibrated = Boolean(info.metadata.calibration?.temperature);
    const test = info.metadata.test?.accuracy;  // recorded by `digitlab eval --record`
    const validation = info.metadata.metrics?.val_accuracy;
    const accuracy = test ?? validation;
    $("model-info").textContent = `${info.metadata.arch} · ${info.backend}` +
      (accuracy !== undefined ? ` · ${(100 * accuracy).toFixed(2)}% on ${test !== undefined ? "MNIST test" : "validation"}` : "");
  } catch {
    $("model-info").textContent = "model information unavailable";
  }
}

redraw();
showResult(null);
showModel();
