// The page: draw on a canvas (mouse, pen or touch) or open, drop or paste an image, send it as it is to
// /api/predict, show the answer. No preprocessing here: the canvas goes out as a PNG and the server's preprocess
// module does the rest. Strings come from i18n.js (t), in the language picked or the browser's.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d");
const SIZES = { single: [280, 280], multi: [840, 280] };  // canvas pixels; the CSS scales them to the screen
const DEBOUNCE_MS = 120;      // while drawing, ask at most this often
const ANNOUNCE_AFTER_MS = 900;  // the answer is spoken when no stroke has begun for this long
const PAPER = "#fff", INK = "#111";
// A server started with an API key is opened as /#key=...: the part after # never leaves the browser, and the page
// sends the key with each API request.
const API_KEY = new URLSearchParams(location.hash.slice(1)).get("key");
const KEY_HEADER = API_KEY ? { "X-API-Key": API_KEY } : {};

let mode = "single";
let model = null;             // /api/model: whether the confidence is calibrated, the threshold, collecting
let strokes = [];             // each {points: [{x, y}] in canvas pixels, width, erase}; undo pops, redo pushes back
let undone = [];              // strokes taken back by undo, for redo
let current = null;           // the stroke under the pen
let photo = null;             // the File being shown instead of the canvas
let selected = 0;             // in number mode, which digit the bars and the 28x28 image describe
let shown = null;             // the answer on the page, drawn again when the language changes
let announced = "";           // what the live region last said: it speaks when the answer changes, not per stroke
let timer = null, announcing = null, inFlight = false, queued = false, sequence = 0;

// --- drawing ----------------------------------------------------------------------------------------------------

function paper() {
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.lineCap = ctx.lineJoin = "round";
}

function pen(stroke) {
  ctx.strokeStyle = ctx.fillStyle = stroke.erase ? PAPER : INK;
  ctx.lineWidth = stroke.width;
}

function drawStroke(stroke) {
  const points = stroke.points;
  pen(stroke);
  if (points.length === 1) {  // a tap is a dot
    ctx.beginPath();
    ctx.arc(points[0].x, points[0].y, stroke.width / 2, 0, 2 * Math.PI);
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
  $("redo").disabled = undone.length === 0;
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
  clearTimeout(announcing);
  const erase = $("eraser").getAttribute("aria-pressed") === "true";
  // the brush is set for the single-digit canvas; the wider number canvas is drawn at the same scale
  current = { points: [toCanvas(event)], width: Number($("brush").value), erase };
  strokes.push(current);
  undone = [];
  redraw();
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  const last = current.points[current.points.length - 1];
  const added = (events.length ? events : [event]).map(toCanvas);
  current.points.push(...added);
  pen(current);
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
  undone.push(strokes.pop());
  redraw();
  predictNow();
}

function redo() {
  if (!undone.length) return;
  strokes.push(undone.pop());
  redraw();
  predictNow();
}

function clearAll() {
  strokes = [];
  undone = [];
  photo = null;
  showCanvas();
  showResult(null);
}

$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", clearAll);
$("eraser").addEventListener("click", () => {
  const on = $("eraser").getAttribute("aria-pressed") !== "true";
  $("eraser").setAttribute("aria-pressed", String(on));
  canvas.classList.toggle("erasing", on);
});
document.addEventListener("keydown", (event) => {
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z" && !event.shiftKey) { event.preventDefault(); undo(); }
  if ((event.ctrlKey || event.metaKey) && (key === "y" || (key === "z" && event.shiftKey))) {
    event.preventDefault();
    redo();
  }
  if (event.key === "Escape") clearAll();
});

// --- mode, files ------------------------------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", () => {
    mode = radio.value;
    [canvas.width, canvas.height] = SIZES[mode];
    $("surface").classList.toggle("multi", mode === "multi");
    strokes = [];
    undone = [];
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
  undone = [];
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
  $("surface").style.aspectRatio = photo && img.naturalWidth ? `${img.naturalWidth} / ${img.naturalHeight}` : "";
}

// "Open image…" is a real button (reachable with Tab, pressed with Enter or Space) that opens the file picker.
$("file-input").accept = FACTS.accept;  // the formats the server reads (i18n.js)
$("open").addEventListener("click", () => $("file-input").click());
$("camera").addEventListener("click", () => $("camera-input").click());
$("camera").hidden = !matchMedia("(pointer: coarse)").matches;  // a phone's camera; elsewhere "Open image" does it
for (const input of [$("file-input"), $("camera-input")]) {
  input.addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) showPhoto(file);
    event.target.value = "";  // picking the same file again still fires
  });
}

const surface = $("surface");
surface.addEventListener("dragover", (event) => { event.preventDefault(); $("drop").hidden = false; });
surface.addEventListener("dragleave", () => { $("drop").hidden = true; });
surface.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) showPhoto(file);
});
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  event.preventDefault();
  showPhoto(file);
});

// --- asking the server ------------------------------------------------------------------------------------------

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(predictNow, DEBOUNCE_MS);
}

// What is on the page to send: the opened image as it is, or the drawing as a PNG.
async function currentImage() {
  return photo ?? await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// A refusal in the page's language: in English the server's own words, otherwise what its status means.
function refusal(response, answer) {
  if (language === "en" && typeof answer?.detail === "string") return answer.detail;
  const key = `status-${response.status}`;
  return STRINGS.en[key] ? t(key, { formats: formatNames() }) : t("status-other", { status: response.status });
}

async function predictNow() {
  clearTimeout(timer);
  if (inFlight) { queued = true; return; }   // one request at a time; the latest drawing goes next
  if (!photo && strokes.length === 0) { showResult(null); return; }
  inFlight = true;
  const mine = ++sequence;
  $("result").dataset.status = "busy";
  try {
    const body = await currentImage();
    const steps = $("how").open;  // the preprocessing's images only while they are shown
    const response = await fetch(`/api/predict?multi=${mode === "multi"}&steps=${steps}`, {
      method: "POST", body, headers: { "Content-Type": body.type || "application/octet-stream", ...KEY_HEADER },
    });
    const answer = await response.json().catch(() => null);
    if (mine !== sequence) return;
    if (!response.ok) throw new Error(refusal(response, answer));
    showResult(answer);
  } catch (error) {
    showResult(null);
    showMessage(t("cannot-read", { detail: error.message }));
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
  const label = digit < 10 ? `<span>${digit}</span>` :
    '<span><span aria-hidden="true">✕</span><span class="visually-hidden none-label"></span></span>';
  row.innerHTML = `${label}<span class="track"><span class="fill"></span></span><span class="pct"></span>`;
  if (digit === 10) { row.className = "none"; row.hidden = true; }
  $("bars").append(row);
  bars.push(row);
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function percent(p) { return `${(100 * p).toFixed(p > 0.995 || p < 0.005 ? 0 : 1)}%`; }

// Why there is no answer, in the page's language: the unsure and "not a digit" cases from the answer's numbers.
function reasonText(answer) {
  const reason = answer?.reason;
  if (!reason || language === "en") return reason ?? "";
  if (!answer.multi && reason.startsWith("unsure") && answer.top3?.length) {
    return t("unsure", { digit: answer.top3[0].digit, percent: percent(answer.top3[0].probability),
                         threshold: percent(model?.threshold ?? 0) });
  }
  if (!answer.multi && reason.startsWith("not a digit") && answer.not_a_digit !== null) {
    return t("none", { percent: percent(answer.not_a_digit) });
  }
  return translateReason(reason);
}

function showResult(answer) {
  shown = answer;
  showMessage("");
  $("saved").textContent = "";
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
    (noDigit ? t("sure-none", { percent: percent(answer.not_a_digit) }) :
      t("sure", { percent: percent(answer.confidence) }));
  // what "N % sure" means: for a calibrated model, how often such answers were right on digits it never trained on
  $("meaning").textContent = !answer || answer.confidence === null || noDigit ? "" : calibrated()
    ? t("meaning-calibrated", { n: Math.round(100 * answer.confidence) }) : t("meaning-score");
  $("reason").textContent = reasonText(answer);
  showDigit(multi ? digits[selected] : answer,
            multi && digits.length > 1 ? { index: selected + 1, count: digits.length } : null);

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
      item.innerHTML = `<button type="button"><img alt=""><b></b></button>`;
      const button = item.querySelector("button");
      button.title = t("show-digit");
      button.querySelector("img").alt = t("digit-of", { index: index + 1 });
      button.querySelector("img").src = d.image;
      button.querySelector("b").textContent = d.digit ?? "?";
      button.append(percent(d.confidence));
      button.setAttribute("aria-pressed", String(index === selected));
      item.classList.toggle("selected", index === selected);
      button.addEventListener("click", () => { selected = index; showResult(answer); });
      $("glyphs").append(item);
    });
  }
  showSteps(answer);
  showTeach(answer);
  clearTimeout(announcing);
  if (!current && !queued) announcing = setTimeout(() => announce(answer), ANNOUNCE_AFTER_MS);
}

// The live region speaks once the drawing pauses (pen up for a moment, no request waiting), and only when the
// answer changed: a screen reader is not interrupted at every stroke of a digit.
function announce(answer) {
  let text = "";
  if (answer?.multi) text = answer.number !== null ? t("announce-number", { number: answer.number }) :
    t("announce-none", { reason: reasonText(answer) });
  else if (answer) text = answer.digit !== null ?
    t("announce-digit", { digit: answer.digit, percent: percent(answer.confidence) }) :
    t("announce-none", { reason: reasonText(answer) });
  if (text !== announced) $("announce").textContent = announced = text;
}

// The bars and the 28x28 image for one digit (the only one, or the one picked in number mode).
function showDigit(digit, which) {
  if (digit?.image) $("seen").src = digit.image; else $("seen").removeAttribute("src");
  $("seen-caption").textContent = which ? t("seen-which", which) : t("seen");
  const none = digit?.not_a_digit ?? null;
  const probabilities = [...(digit?.probabilities ?? new Array(10).fill(0)), none ?? 0];
  const best = probabilities.indexOf(Math.max(...probabilities));
  bars[10].hidden = none === null;
  bars[10].querySelector(".none-label").textContent = t("not-a-digit");
  bars[10].title = t("not-a-digit");
  bars.forEach((row, d) => {
    row.querySelector(".fill").style.width = `${100 * probabilities[d]}%`;
    row.querySelector(".pct").textContent = digit?.probabilities ? percent(probabilities[d]) : "";
    row.classList.toggle("top", Boolean(digit?.probabilities) && d === best);
  });
}

// "How digitlab saw it": the images the server's preprocessing made on the way (asked for with steps=true), never
// computed here. In number mode they show the first digit's way.
function showSteps(answer) {
  const steps = answer?.steps;
  const items = !steps ? [] : [
    [steps.gray, t("step-gray", { polarity: t(answer.polarity ?? "dark-on-light") })],
    [steps.ink, t("step-ink")], [steps.crop, t("step-crop")], [steps.fit, t("step-fit")],
    [answer.multi ? answer.digits[0]?.image : answer.image, t("step-centre"), "centre"],
  ].filter(([image]) => image);
  if (!items.length) {
    const empty = document.createElement("li");
    empty.className = "steps-empty";
    empty.textContent = answer?.reason ? translateReason(answer.reason) : t("steps-none");
    $("steps").replaceChildren(empty);
    return;
  }
  $("steps").replaceChildren(...items.map(([image, caption, kind]) => {
    const item = document.createElement("li");
    item.innerHTML = '<figure><span class="frame"><img alt=""></span><figcaption></figcaption></figure>';
    item.querySelector("img").src = image;
    item.querySelector("img").alt = caption;
    item.querySelector("figcaption").textContent = caption;
    if (kind === "centre") item.querySelector(".frame").classList.add("centre");  // a mark at (14, 14)
    return item;
  }));
}

$("how").addEventListener("toggle", () => { if ($("how").open && (photo || strokes.length)) predictNow(); });
if (matchMedia("(max-width: 760px)").matches) $("how").open = false;  // on a phone the answer comes first

// --- teaching the model (a server started with --collect DIR) ------------------------------------------------

function calibrated() { return Boolean(model?.metadata?.calibration?.temperature); }

function teachLabels() {
  const labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
  return model?.metadata?.classes?.includes("not a digit") ? [...labels, "not_a_digit"] : labels;
}

function showTeach(answer) {
  $("teach").hidden = !(model?.collecting && answer && !answer.multi);
  const buttons = $("teach-digits");
  if ($("teach").hidden) return;
  buttons.replaceChildren(...teachLabels().map((label) => {
    const button = document.createElement("button");
    button.type = "button";
    const shownLabel = label === "not_a_digit" ? "✕" : label;
    button.textContent = shownLabel;
    button.dataset.label = label;
    button.setAttribute("aria-label", t("teach-button", { label: label === "not_a_digit" ? t("not-a-digit") : label }));
    button.addEventListener("click", () => teach(label));
    return button;
  }));
}

async function teach(label) {
  const given = shown?.digit ?? (shown?.reason?.startsWith("not a digit") ? "not_a_digit" : "?");
  const name = label === "not_a_digit" ? t("not-a-digit") : label;
  try {
    const body = await currentImage();
    const response = await fetch(`/api/samples?label=${label}&answer=${encodeURIComponent(given)}`, {
      method: "POST", body, headers: { "Content-Type": body.type || "application/octet-stream", ...KEY_HEADER },
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Error(refusal(response, answer));
    $("saved").textContent = t("saved", { label: name });
  } catch (error) {
    $("saved").textContent = t("not-saved", { detail: error.message });
  }
}

// --- the model, the language --------------------------------------------------------------------------------------

function showModelInfo() {
  if (!model) return;
  const test = model.metadata.test?.accuracy;  // recorded by `digitlab eval --record`
  const accuracy = test ?? model.metadata.metrics?.val_accuracy;
  $("model-info").textContent = t("model-info", { arch: model.metadata.arch, backend: model.backend }) +
    (accuracy !== undefined ? t("model-accuracy", { accuracy: (100 * accuracy).toFixed(2),
                                                    where: t(test !== undefined ? "mnist-test" : "validation") }) : "");
}

async function loadModel() {
  try {
    const response = await fetch("/api/model", { headers: KEY_HEADER });
    if (!response.ok) throw new Error(String(response.status));
    model = await response.json();
    showModelInfo();
    showResult(shown);
  } catch {
    $("model-info").textContent = t("model-unavailable");
  }
}

function setLanguage(lang) {
  language = lang;
  $("language").value = lang;
  applyLanguage();
  if (!model) $("model-info").textContent = t("loading");
  showModelInfo();
  announced = "";  // say the answer again, in the new language
  showResult(shown);
}

for (const [code, name] of Object.entries(FACTS.languages)) {
  const option = new Option(name, code);
  option.lang = code;
  $("language").append(option);
}
$("language").addEventListener("change", () => {
  localStorage.setItem("digitlab-language", $("language").value);
  setLanguage($("language").value);
});

setLanguage(language);
redraw();
loadModel();
