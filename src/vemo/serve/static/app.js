// vemo serve's page: upload a file, follow the job, then play the video with its labels and a timeline.
// Plain JavaScript, no libraries, no network requests beyond this server: the chart is drawn on a canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = {
  angry: "#d62728", disgust: "#8c564b", fear: "#9467bd", happy: "#e8a900",
  neutral: "#7f7f7f", sad: "#1f77b4", surprise: "#17becf", contempt: "#2ca02c",
};
const SPARE = ["#e377c2", "#bcbd22", "#ff7f0e", "#393b79"];
const PLAIN = {  // what each error code means, in plain words; the server's detail is shown under it
  too_large: "This file is too large for this server.",
  not_media: "This file is not a video or an image that vemo can read.",
  unreadable: "This file could not be decoded; it may be damaged.",
  too_long: "This video is too long for this server.",
  too_short: "This video is too short: vemo needs at least a few frames.",
  corrupt: "This video is damaged and could not be read.",
  empty: "No frame of this video could be decoded.",
  internal: "Something went wrong on the server; its log says what.",
  no_face: "No face was found. vemo needs a face seen from the front, not too small in the picture.",
  busy: "The server is busy with other files.",
  timeout: "The analysis took too long and was stopped.",
  bad_request: "The upload did not arrive as expected.",
};
const POLL_MS = 400;

let view = null;  // what is shown: {result, windows, duration, image}

function color(label, k) {
  return COLORS[label] || SPARE[k % SPARE.length];
}

function show(id, on) {
  $(id).hidden = !on;
}

function setStage(text, fraction) {
  show("status", true);
  $("stage").textContent = text;
  $("progress").value = fraction;
}

function showError(body, status, retryAfter) {
  show("status", false);
  const code = (body && body.error) || "";
  let text = PLAIN[code] || `The server answered with an error (HTTP ${status || "?"}).`;
  if (code === "busy" && retryAfter) text += ` Try again in about ${retryAfter} s.`;
  $("error-text").textContent = text;
  $("error-detail").textContent = (body && body.detail) || "";
  show("error", true);
  document.body.dataset.state = "error";
}

function parse(text) {
  try { return JSON.parse(text); } catch (e) { return null; }
}

function upload(file) {
  view = null;
  show("error", false);
  show("result", false);
  document.body.dataset.state = "uploading";
  setStage(`Uploading ${file.name}…`, 0);
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "api/jobs?annotate=true");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setStage(`Uploading ${file.name}…`, e.loaded / e.total);
  };
  xhr.onload = () => {
    const body = parse(xhr.responseText);
    if (xhr.status === 202 && body) follow(body.id, file);
    else showError(body, xhr.status, xhr.getResponseHeader("Retry-After"));
  };
  xhr.onerror = () => showError({ detail: "Is `vemo serve` still running?" }, 0);
  xhr.send(form);
}

async function follow(id, file) {
  document.body.dataset.state = "processing";
  for (;;) {
    let response, job;
    try {
      response = await fetch(`api/jobs/${id}`);
      job = await response.json();
    } catch (e) {
      return showError({ detail: "Lost contact with the server while it was working." }, 0);
    }
    if (!response.ok) return showError(job, response.status);
    if (job.state === "done") return showResult(job.result, file);
    if (job.state === "failed") return showError(job.error, job.error.status);
    const stage = job.state === "queued" ? "Waiting for the model (other files first)…" : "Finding faces and emotions…";
    setStage(stage, job.progress);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function showResult(result, file) {
  show("status", false);
  const windows = result.windows.slice().sort((a, b) => a.end - b.end);
  const image = result.kind === "image";
  view = { result, windows, image, duration: Math.max(...windows.map((w) => w.end), 0.001) };
  $("label").textContent = result.label;
  $("summary-detail").textContent = summaryText(result);
  const video = $("video"), still = $("still");
  show("video", !image);
  show("still", image);
  if (image) still.src = URL.createObjectURL(file);
  else if (result.links.video) video.src = result.links.video;
  $("csv").href = result.links.csv;
  $("mp4").href = result.links.video || "";
  show("mp4", Boolean(result.links.video));
  show("result", true);
  legend(result.labels);
  draw();
  document.body.dataset.state = "done";
}

function summaryText(result) {
  if (result.kind === "image") return "(one photo)";
  const n = result.windows.length;
  const same = result.counts[result.label] || 0;
  return `in ${same} of ${n} windows of ${result.window_s} s, one every ${result.hop_s} s`;
}

function legend(labels) {
  const box = $("legend");
  box.replaceChildren(...labels.map((label, k) => {
    const span = document.createElement("span");
    span.textContent = label;
    span.style.setProperty("--c", color(label, k));
    return span;
  }));
}

// The window shown at time t is the last one complete by then, as in the annotated video.
function windowAt(t) {
  let current = null;
  for (const w of view.windows) if (w.end <= t + 1e-3) current = w;
  return current;
}

function overlayText(w) {
  if (!w) return "…";
  if (w.confidence === null) return "no face";
  return `${w.label} ${w.confidence.toFixed(2)}`;
}

// The current window's probabilities as bars beside the video.
function nowPanel(w, t) {
  const title = view.image ? "The photo:" : `At ${t.toFixed(1)} s` + (w ? ` (window ${w.start.toFixed(1)}-${w.end.toFixed(1)} s):` : ":");
  $("now-title").textContent = w ? title : `${title} waiting for the first complete window`;
  const labels = view.result.labels;
  $("now-bars").replaceChildren(...(w && w.probabilities ? labels.map((label, k) => {
    const row = document.createElement("div"), name = document.createElement("span");
    const track = document.createElement("div"), fill = document.createElement("div");
    const value = document.createElement("span");
    row.className = "bar";
    track.className = "track";
    fill.className = "fill";
    value.className = "value";
    name.textContent = label;
    fill.style.setProperty("--c", color(label, k));
    fill.style.width = `${(100 * w.probabilities[label]).toFixed(1)}%`;
    value.textContent = w.probabilities[label].toFixed(2);
    track.append(fill);
    row.append(name, track, value);
    return row;
  }) : []));
}

// ---- the chart: probabilities of each class per window (smoothed, the ones the label comes from)
const PAD = { left: 40, right: 12, top: 12, bottom: 26 };

function chartGeometry(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800, height = canvas.clientHeight || 240;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const w = width - PAD.left - PAD.right, h = height - PAD.top - PAD.bottom;
  return { ctx, width, height, x: (t) => PAD.left + (t / view.duration) * w, y: (p) => PAD.top + (1 - p) * h, w, h };
}

function draw() {
  if (!view) return;
  const video = $("video");
  if (!view.image && Number.isFinite(video.duration)) view.duration = Math.max(view.duration, video.duration);
  const g = chartGeometry($("chart"));
  g.ctx.clearRect(0, 0, g.width, g.height);
  axes(g);
  if (view.image) bars(g);
  else lines(g);
  const t = video.currentTime || 0, current = view.image ? view.windows[0] : windowAt(t);
  if (!view.image) cursor(g, t);
  $("overlay").textContent = overlayText(current);
  nowPanel(current, t);
}

function axes(g) {
  const { ctx } = g;
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#5b6475";
  ctx.strokeStyle = "#e6e9ef";
  ctx.lineWidth = 1;
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath();
    ctx.moveTo(PAD.left, g.y(p));
    ctx.lineTo(PAD.left + g.w, g.y(p));
    ctx.stroke();
    ctx.fillText(p.toFixed(2), 4, g.y(p) + 4);
  }
  if (view.image) return;
  const step = niceStep(view.duration);
  for (let t = 0; t <= view.duration + 1e-6; t += step) ctx.fillText(`${+t.toFixed(1)} s`, g.x(t) - 8, g.height - 8);
}

function niceStep(duration) {
  for (const s of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600]) if (duration / s <= 8) return s;
  return 1200;
}

function lines(g) {
  const { ctx } = g;
  for (const w of view.windows) {  // windows without a face: grey bands
    if (w.probabilities) continue;
    ctx.fillStyle = "rgba(120, 120, 120, 0.15)";
    ctx.fillRect(g.x(w.start), PAD.top, Math.max(2, g.x(w.end) - g.x(w.start)), g.h);
  }
  const faced = view.windows.filter((w) => w.probabilities);
  if (faced.length === 1) return spans(g, faced[0]);
  view.result.labels.forEach((label, k) => {
    ctx.strokeStyle = ctx.fillStyle = color(label, k);
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    for (const w of view.windows) {
      if (!w.probabilities) { drawing = false; continue; }
      const x = g.x(w.end), y = g.y(w.probabilities[label]);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    }
    ctx.stroke();
    for (const w of view.windows) {  // dots, so that a single window still shows
      if (!w.probabilities) continue;
      ctx.beginPath();
      ctx.arc(g.x(w.end), g.y(w.probabilities[label]), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
}

function spans(g, w) {  // a clip shorter than two windows: its one window, drawn over the time it covers
  view.result.labels.forEach((label, k) => {
    g.ctx.strokeStyle = color(label, k);
    g.ctx.lineWidth = 3;
    g.ctx.beginPath();
    g.ctx.moveTo(g.x(w.start), g.y(w.probabilities[label]));
    g.ctx.lineTo(g.x(w.end), g.y(w.probabilities[label]));
    g.ctx.stroke();
  });
}

function bars(g) {
  const w = view.windows.find((x) => x.probabilities) || view.windows[0];
  const labels = view.result.labels, slot = g.w / labels.length;
  labels.forEach((label, k) => {
    const p = w.probabilities ? w.probabilities[label] : 0;
    g.ctx.fillStyle = color(label, k);
    g.ctx.fillRect(PAD.left + k * slot + slot * 0.2, g.y(p), slot * 0.6, g.y(0) - g.y(p));
    g.ctx.fillStyle = "#1d2330";
    g.ctx.fillText(label, PAD.left + k * slot + slot * 0.2, g.height - 8);
  });
}

function cursor(g, t) {
  const { ctx } = g;
  ctx.strokeStyle = "#1d2330";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(g.x(Math.min(t, view.duration)), PAD.top);
  ctx.lineTo(g.x(Math.min(t, view.duration)), PAD.top + g.h);
  ctx.stroke();
}

// ---- wiring
function follows() {  // redraw while playing, so the cursor and the label move with the video
  draw();
  if (!$("video").paused) requestAnimationFrame(follows);
}

function init() {
  const drop = $("drop"), input = $("file"), video = $("video");
  input.addEventListener("change", () => input.files.length && upload(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  video.addEventListener("play", follows);
  for (const event of ["seeked", "timeupdate", "loadeddata"]) video.addEventListener(event, draw);
  $("chart").addEventListener("click", (e) => {
    if (!view || view.image) return;
    const box = e.target.getBoundingClientRect(), w = box.width - PAD.left - PAD.right;
    video.currentTime = Math.max(0, ((e.clientX - box.left - PAD.left) / w) * view.duration);
  });
  window.addEventListener("resize", draw);
  fetch("api/health").then((r) => r.json()).then((h) => {
    $("limits").textContent = `Up to ${h.max_upload_mb} MB and ${h.max_seconds / 60} minutes; ` +
      `one label per ${h.window_s} s window, every ${h.hop_s} s; classes: ${h.labels.join(", ")}.`;
  }).catch(() => { $("limits").textContent = "The server does not answer; is `vemo serve` running?"; });
}

init();
