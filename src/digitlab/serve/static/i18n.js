// Every string the page shows, in English and Simplified Chinese. The HTML names its strings by key (data-i18n for
// the text, data-i18n-title, -label, -alt for attributes); app.js asks for the rest with t(key, values).
// The language is the one picked on the page (kept in localStorage), else the browser's first that is here.
// FACTS are what the server shares with the page (serve/routes/pages.py writes them into index.html): the image
// formats it reads and the languages there are (digitlab/languages.py), each of which has its words here.
"use strict";

const FACTS = JSON.parse(document.getElementById("facts").textContent);

const STRINGS = {
  en: {
    "title": "digitlab · draw a digit",
    "intro": "Draw a digit, or drop a photo of one. A CNN trained on MNIST reads it.",
    "language": "Language",
    "input": "Your digit",
    "read-what": "What to read",
    "mode-single": "One digit",
    "mode-multi": "A number",
    "undo": "Undo", "undo-title": "Undo the last stroke (Ctrl+Z)",
    "redo": "Redo", "redo-title": "Redo (Ctrl+Y)",
    "clear": "Clear", "clear-title": "Clear (Esc)",
    "open": "Open image…",
    "camera": "Take a photo",
    "brush": "Brush",
    "eraser": "Eraser",
    "canvas": "drawing area: draw a digit with a mouse, pen or finger",
    "photo": "the image you opened",
    "hint": "Draw here with a mouse, pen or finger — or drop or paste an image",
    "drop": "Drop the image to read it",
    "answer": "The answer",
    "digit-title": "the digit the model read",
    "seen-alt": "the 28×28 image the model received",
    "seen": "what the model saw",
    "seen-which": "what the model saw (digit {index} of {count})",
    "bars": "probability of each digit",
    "glyphs": "digits found",
    "not-a-digit": "not a digit",
    "teach": "Wrong? Pick the right digit to teach the model:",
    "teach-button": "It is {label}",
    "saved": "Saved as {label}. Thank you: it will help the model learn your writing.",
    "not-saved": "Could not save it: {detail}",
    "loading": "loading model…",
    "docs": "API docs",
    "how": "How digitlab saw it",
    "how-intro": "The server brings every image into MNIST's form before the network reads it:",
    "step-gray": "gray, {polarity}",
    "step-ink": "the ink found",
    "step-crop": "cropped",
    "step-fit": "fitted in 20×20",
    "step-centre": "centre of mass to the centre of 28×28",
    "dark-on-light": "dark ink on light",
    "light-on-dark": "light ink on dark",
    "steps-none": "draw or open an image to see its steps",
    "model-info": "{arch} · {backend}",
    "model-accuracy": " · {accuracy}% on {where}",
    "mnist-test": "MNIST test",
    "validation": "validation",
    "model-unavailable": "model information unavailable",
    "sure": "{percent} sure",
    "sure-none": "{percent} sure it is no digit",
    "meaning-calibrated": "about {n} in 100 answers this sure are right",
    "meaning-score": "the model's score, not a measured chance of being right",
    "unsure": "unsure: best guess {digit} at {percent} is below the threshold of {threshold}",
    "none": "not a digit: {percent} sure it is none of the ten",
    "cannot-read": "Could not read that: {detail}",
    "digit-of": "digit {index} as the model saw it",
    "show-digit": "show this digit's probabilities",
    "announce-digit": "The model reads {digit}, {percent} sure.",
    "announce-number": "The model reads {number}.",
    "announce-none": "The model cannot read it: {reason}",
    "status-413": "the image is too large",
    "status-415": "it is not an image ({formats})",
    "status-422": "the image is empty or damaged",
    "status-other": "the server answered {status}",
  },
  "zh-CN": {
    "title": "digitlab · 手写数字",
    "intro": "写一个数字，或拖入一张数字照片。一个在 MNIST 上训练的卷积神经网络会识别它。",
    "language": "语言",
    "input": "你的数字",
    "read-what": "识别什么",
    "mode-single": "一个数字",
    "mode-multi": "一串数字",
    "undo": "撤销", "undo-title": "撤销上一笔 (Ctrl+Z)",
    "redo": "重做", "redo-title": "重做 (Ctrl+Y)",
    "clear": "清除", "clear-title": "清除 (Esc)",
    "open": "打开图片…",
    "camera": "拍照",
    "brush": "笔宽",
    "eraser": "橡皮擦",
    "canvas": "书写区：用鼠标、手写笔或手指写一个数字",
    "photo": "你打开的图片",
    "hint": "用鼠标、手写笔或手指在这里书写，或拖入、粘贴一张图片",
    "drop": "松开即可识别这张图片",
    "answer": "识别结果",
    "digit-title": "模型识别出的数字",
    "seen-alt": "模型收到的 28×28 图像",
    "seen": "模型看到的图像",
    "seen-which": "模型看到的图像（第 {index} 个，共 {count} 个）",
    "bars": "每个数字的概率",
    "glyphs": "找到的数字",
    "not-a-digit": "不是数字",
    "teach": "识别错了？选出正确的数字来教模型：",
    "teach-button": "应该是 {label}",
    "saved": "已保存为 {label}。谢谢：它会帮助模型学会你的笔迹。",
    "not-saved": "无法保存：{detail}",
    "loading": "正在加载模型…",
    "docs": "API 文档",
    "how": "digitlab 是怎样看这张图的",
    "how-intro": "在网络识别之前，服务器先把每张图片变成 MNIST 的样子：",
    "step-gray": "灰度，{polarity}",
    "step-ink": "找到的笔迹",
    "step-crop": "裁剪",
    "step-fit": "缩放进 20×20",
    "step-centre": "质心移到 28×28 的中心",
    "dark-on-light": "浅底深色笔迹",
    "light-on-dark": "深底浅色笔迹",
    "steps-none": "写一个数字或打开一张图片，就能看到每一步",
    "model-info": "{arch} · {backend}",
    "model-accuracy": " · {where}准确率 {accuracy}%",
    "mnist-test": "MNIST 测试集",
    "validation": "验证集",
    "model-unavailable": "无法获取模型信息",
    "sure": "把握 {percent}",
    "sure-none": "{percent} 确定这不是数字",
    "meaning-calibrated": "这样把握的回答，每 100 个中约有 {n} 个是对的",
    "meaning-score": "这是模型的打分，不是实测的正确率",
    "unsure": "不确定：最可能是 {digit}（{percent}），低于阈值 {threshold}",
    "none": "不是数字：{percent} 确定它不是十个数字中的任何一个",
    "cannot-read": "无法识别：{detail}",
    "digit-of": "模型看到的第 {index} 个数字",
    "show-digit": "显示这个数字的概率",
    "announce-digit": "模型识别为 {digit}，把握 {percent}。",
    "announce-number": "模型识别为 {number}。",
    "announce-none": "模型无法识别：{reason}",
    "status-413": "图片太大",
    "status-415": "这不是图片（支持 {formats}）",
    "status-422": "图片是空的或已损坏",
    "status-other": "服务器返回 {status}",
  },
};

// Reasons the server gives in English, by their first words, for the page in another language.
const REASONS = {
  "zh-CN": [
    ["blank image", "空白图片：没有笔迹从背景中显现出来"],
    ["no clear strokes", "没有清晰的笔画"],
    ["no clear ink", "没有清晰的笔迹：这更像照片或噪点，而不是纯色背景上的数字"],
    ["not one digit", "不是一个数字：笔迹太宽或分成了几块（可以换到“一串数字”）"],
  ],
};

const LANGUAGES = Object.keys(FACTS.languages);

function chooseLanguage() {
  const picked = localStorage.getItem("digitlab-language");
  if (LANGUAGES.includes(picked)) return picked;
  for (const wanted of navigator.languages ?? [navigator.language]) {
    const match = LANGUAGES.find((lang) => lang.toLowerCase() === wanted.toLowerCase())
      ?? LANGUAGES.find((lang) => lang.split("-")[0] === wanted.toLowerCase().split("-")[0]);
    if (match) return match;
  }
  return "en";
}

let language = chooseLanguage();

function t(key, values = {}) {
  const text = STRINGS[language][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// The formats the server reads, as a list in the page's language: "A, B, or C", "A、B或C".
function formatNames() {
  return new Intl.ListFormat(language, { type: "disjunction" }).format(FACTS.formats);
}

// A reason from the server in the page's language: the known ones by their first words, others as they came.
function translateReason(reason) {
  if (!reason) return "";
  const known = (REASONS[language] ?? []).find(([start]) => reason.startsWith(start));
  return known ? known[1] : reason;
}

function applyLanguage() {
  document.documentElement.lang = language;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const [data, attribute] of [["i18n-title", "title"], ["i18n-label", "aria-label"], ["i18n-alt", "alt"]]) {
    for (const node of document.querySelectorAll(`[data-${data}]`)) {
      node.setAttribute(attribute, t(node.getAttribute(`data-${data}`)));
    }
  }
}
