"""The page ``workshop serve`` shows at ``/``: plain HTML, CSS and JavaScript in one string, no
CDN and no build step (it works offline).

The page posts the chosen file to ``/api/predict`` as the multipart field ``image``, shows the
image, and draws each detection's xyxy box (pixels of the image, as the API returns them) on an
SVG overlay whose ``viewBox`` is the image's pixel grid, so the boxes scale with the image. A
slider hides detections below a score; a table lists them. Colours are matplotlib's ``tab10``
by class id, as :mod:`workshop.vis` and ``workshop predict --save-media`` draw them. The overlay
carries ``data-drawn`` (the number of boxes drawn) for tests.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Detector</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 960px; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .25rem; }
  .note { color: #555; margin-top: 0; }
  form { display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; margin: 1rem 0; }
  #status { min-height: 1.4em; }
  #status.error { color: #b00020; font-weight: 600; }
  #view { position: relative; display: inline-block; line-height: 0; background: #eee; }
  #view[hidden] { display: none; }
  #photo { width: 640px; max-width: 100%; height: auto; image-rendering: auto; }
  #overlay { position: absolute; inset: 0; width: 100%; height: 100%; overflow: visible; }
  #overlay rect.box { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
  #overlay text { fill: #fff; font-family: system-ui, sans-serif; }
  table { border-collapse: collapse; margin-top: 1rem; }
  th, td { padding: .2rem .8rem; border-bottom: 1px solid #ddd; text-align: left; font-variant-numeric: tabular-nums; }
  .swatch { display: inline-block; width: .8em; height: .8em; margin-right: .4em; vertical-align: -0.05em; }
</style>
</head>
<body>
<h1>The course's detector</h1>
<p class="note">Upload an image: the detector finds <span id="classes">its classes</span>.
  <span id="stages"></span></p>
<form id="form" onsubmit="return false">
  <label>Image <input type="file" id="file" name="image" accept="image/*"></label>
  <label>Minimum score <input type="range" id="min" min="0" max="1" step="0.05" value="0.3">
    <output id="minval">0.30</output></label>
</form>
<p id="status" role="status" aria-live="polite"></p>
<div id="view" hidden>
  <img id="photo" alt="the uploaded image">
  <svg id="overlay" xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none" data-drawn="0"></svg>
</div>
<table id="table" hidden>
  <thead><tr><th>class</th><th>score</th><th>box (x1, y1, x2, y2)</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let last = null;     // {detections, image}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function draw() {
  const overlay = $("overlay"), body = $("table").querySelector("tbody");
  overlay.replaceChildren();
  body.replaceChildren();
  if (!last) return;
  const {width, height} = last.image;
  const min = parseFloat($("min").value);
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = width / Math.max($("photo").clientWidth, 1);      // image pixels per screen pixel
  const font = 13 * scale;
  const shown = last.detections.filter((d) => d.score >= min);
  for (const d of shown) {
    const [x1, y1, x2, y2] = d.box;
    const colour = TAB10[d.class_id % 10];
    const label = `${d.class} ${d.score.toFixed(2)}`;
    const g = svg("g", {"class": "detection", "data-class": d.class, "data-score": d.score});
    g.append(svg("rect", {"class": "box", x: x1, y: y1, width: x2 - x1, height: y2 - y1, stroke: colour}));
    const ty = y1 - font * 1.3 >= 0 ? y1 - font * 1.3 : y1;
    g.append(svg("rect", {x: x1, y: ty, width: label.length * font * 0.62 + 4 * scale,
                          height: font * 1.3, fill: colour}));
    g.append(svg("text", {x: x1 + 2 * scale, y: ty + font, "font-size": font}, label));
    overlay.append(g);
    const row = document.createElement("tr");
    row.innerHTML = `<td><span class="swatch" style="background:${colour}"></span></td><td></td><td></td>`;
    row.cells[0].append(d.class);
    row.cells[1].textContent = d.score.toFixed(3);
    row.cells[2].textContent = d.box.map((v) => v.toFixed(1)).join(", ");
    body.append(row);
  }
  overlay.dataset.drawn = String(shown.length);
  $("table").hidden = shown.length === 0;
  const hidden = last.detections.length - shown.length;
  status(`${shown.length} detection${shown.length === 1 ? "" : "s"} shown` +
         (hidden ? ` (${hidden} below ${min.toFixed(2)})` : "") + ` in ${last.seconds.toFixed(2)} s`);
}

async function upload(file) {
  last = null;
  draw();
  $("view").hidden = true;
  status(`detecting in ${file.name} ...`);
  const form = new FormData();
  form.append("image", file, file.name);
  let answer;
  try {
    const response = await fetch("api/predict", {method: "POST", body: form});
    answer = await response.json().catch(() => ({error: `${response.status} ${response.statusText}`}));
    if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
  } catch (err) {
    status(`${file.name}: ${err.message}`, true);
    return;
  }
  const photo = $("photo");
  if (photo.src) URL.revokeObjectURL(photo.src);
  await new Promise((resolve) => { photo.onload = resolve; photo.onerror = resolve; photo.src = URL.createObjectURL(file); });
  $("view").hidden = false;
  last = answer;
  draw();
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
$("min").addEventListener("input", () => { $("minval").textContent = parseFloat($("min").value).toFixed(2); draw(); });
window.addEventListener("resize", draw);
fetch("api/health").then((r) => r.json()).then((h) => {
  $("classes").textContent = h.classes.join(", ");
  const mine = Object.entries(h.stages).filter(([, who]) => who.startsWith("yours")).map(([s]) => s);
  $("stages").textContent = mine.length ? `Your stages: ${mine.join(", ")}.` : "All stages: the reference's.";
}).catch(() => status("the server does not answer /api/health", true));
</script>
</body>
</html>
"""
