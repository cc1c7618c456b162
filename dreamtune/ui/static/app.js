// dreamtune UI: one page, four views, talking to the JSON API of dreamtune/ui/server.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, openRun: null, poll: null, generation: null, genPoll: null, preparedSet: null };

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json", "X-Dreamtune": "1" }, body: JSON.stringify(body) };
  const response = await fetch("/api/" + path, options);
  const data = await response.json();
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { fields: data.fields || {} });
  return data;
}

const fileUrl = (relative, download) => "/files/" + relative.split("/").map(encodeURIComponent).join("/") + (download ? "?download=1" : "");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// the address keeps the view (#page, #runs/NAME), so a reload comes back to it
function remember(page) { history.replaceState(null, "", "#" + page + (page === "runs" && state.openRun ? "/" + encodeURIComponent(state.openRun) : "")); }

function show(page) {
  remember(page);
  document.querySelectorAll(".page").forEach((p) => (p.hidden = p.id !== "page-" + page));
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.page === page));
  if (page === "runs") refreshRuns();
  if (page === "generate" || page === "train") refreshLists();
}

// ---- photos ----------------------------------------------------------------------------------
async function upload(files) {
  const set = $("set-name").value;
  $("upload-status").textContent = "";
  const problems = [];
  let saved = 0, captions = 0, masks = 0;
  for (const file of files) {
    const response = await fetch("/api/upload?set=" + encodeURIComponent(set), {
      method: "POST", body: file, headers: { "X-Dreamtune": "1", "X-File-Name": encodeURIComponent(file.name) } });
    const data = await response.json().catch(() => ({ error: file.name + ": the upload was refused." }));
    if (response.ok) [saved, captions, masks] = [data.count, data.captions, data.masks]; else problems.push(data.error);
  }
  const extras = [captions ? `${captions} caption file(s)` : "", masks ? `${masks} subject mask(s)` : ""].filter(Boolean);
  const notes = extras.length ? ` (besides ${extras.join(" and ")})` : "";
  $("upload-status").textContent = `${saved} file(s) in photo set ${set}${notes}.` + (problems.length ? " " : "");
  if (problems.length) $("upload-status").append(el("div", { class: "error", text: problems.join("\n") }));
  showUploads();
}

// The uploads of the chosen set as thumbnails, each with a button that removes it (before Prepare).
async function showUploads() {
  const set = $("set-name").value;
  let files = [];
  try { files = (await api("uploads?set=" + encodeURIComponent(set))).files; } catch (error) { /* a name being typed */ }
  $("uploads").replaceChildren(...files.map((file) => {
    const remove = el("button", { text: "×", title: "remove " + file.name, "data-remove": file.name });
    remove.onclick = async () => {
      try { await api("remove_upload", { set, file: file.name }); } catch (error) { $("upload-status").textContent = error.message; }
      showUploads();
    };
    const picture = file.photo ? el("img", { src: fileUrl(file.path), alt: file.name, title: file.name })
      : el("div", { class: "note", text: file.name });
    return el("figure", {}, picture, remove);
  }));
}

async function samplePhotos() {
  try {
    const data = await api("sample", { set: $("set-name").value, subject: $("sample-subject").value });
    $("upload-status").textContent = `${data.saved.length} photos of ${$("sample-subject").value} added.`;
    showUploads();
    $("instance-prompt").value = `a sks ${data.class_noun}`;
    $("class-noun").value = data.class_noun;
  } catch (error) { $("upload-status").textContent = error.message; }
}

function renderVerdicts(set) {
  const box = $("verdicts");
  box.replaceChildren();
  const bySource = Object.fromEntries(set.images.map((image) => [image.source, image]));
  for (const entry of set.entries) {
    const card = el("div", { class: "verdict " + (entry.kept ? "kept" : "skipped"), "data-file": entry.file });
    const image = bySource[entry.file];
    if (image) card.append(el("img", { src: fileUrl(image.file), alt: entry.file }));
    card.append(el("div", { text: entry.file }));
    if (entry.kept) {
      card.append(el("div", { class: "ok", text: "kept" + (entry.notes && entry.notes.length ? " — " + entry.notes.join("; ") : "") }));
      const caption = el("input", { value: image ? image.caption : "", "data-name": image ? image.file_name : "" });
      card.append(caption);
    } else {
      card.append(el("div", { class: "reason", text: "skipped: " + entry.reason }));
    }
    box.append(card);
  }
  $("save-captions").hidden = !set.images.length;
  $("bulk-captions").hidden = !set.images.length;
  $("auto-captions").hidden = !set.images.length;
}

// Bulk caption edits on the page (Save captions writes them): a find / replace — of the identifier, say —
// and a prefix for every caption that does not start with it yet.
function editCaptions(change) {
  document.querySelectorAll("#verdicts input[data-name]").forEach((input) => (input.value = change(input.value)));
}

async function prepare() {
  $("prepare-error").textContent = "";
  $("prepare").disabled = true;
  try {
    const set = await api("prepare", { set: $("set-name").value, instance_prompt: $("instance-prompt").value,
      resolution: Number($("resolution").value), folder: $("folder").value.trim() });
    state.preparedSet = set.name;
    $("upload-status").textContent = `prepared ${set.kept} image(s), skipped ${set.skipped}.`;
    renderVerdicts(set);
    await refreshInfo();
  } catch (error) { $("prepare-error").textContent = error.message; }
  $("prepare").disabled = false;
}

async function saveCaptions() {
  const captions = {};
  document.querySelectorAll("#verdicts input[data-name]").forEach((input) => (captions[input.dataset.name] = input.value));
  try { renderVerdicts(await api("captions", { set: state.preparedSet, captions })); $("upload-status").textContent = "captions saved."; }
  catch (error) { $("prepare-error").textContent = error.message; }
}

// ---- train ------------------------------------------------------------------------------------
// a base model typed in proposes the recipe of its family, with that recipe's resolution and settings
async function proposePreset() {
  try {
    const found = await api("preset?model=" + encodeURIComponent($("base-model").value));
    $("preset-note").textContent = found.note;
    if (found.recipe && found.recipe !== $("recipe").value) { $("recipe").value = found.recipe; await loadForm(); }
  } catch (error) { $("preset-note").textContent = error.message; }
}

// the base-model box shows the chosen recipe's own model; what the user types there replaces it
function recipeModel() { $("base-model").value = (state.info.recipe_models || {})[$("recipe").value] || ""; }

async function loadForm() {
  const fields = await api("form?recipe=" + encodeURIComponent($("recipe").value));
  const box = $("settings");
  box.replaceChildren();
  for (const field of fields) {
    let input;
    if (field.kind === "bool") {
      input = el("input", { type: "checkbox" });
      input.checked = !!field.value;
    } else if (field.kind === "choice") {
      input = el("select");
      for (const choice of field.choices) input.append(el("option", { value: choice, text: choice === "" ? "(none)" : choice }));
      input.value = field.value ?? "";
    } else {
      input = el("input", { value: field.value ?? "", type: field.kind === "text" ? "text" : "text", inputmode: "decimal" });
    }
    input.dataset.key = field.key;
    input.dataset.kind = field.kind;
    box.append(el("label", { title: field.help }, el("span", { text: field.label }), el("code", { class: "key", text: field.key }), input,
      el("span", { class: "hint", text: field.help })));
  }
}

function formValues() {
  const values = {};
  document.querySelectorAll("#settings [data-key]").forEach((input) => {
    values[input.dataset.key] = input.dataset.kind === "bool" ? input.checked : input.value;
  });
  return values;
}

// each wrong field gets its own sentence beside it (the whole list stays under the Start button)
const FIELD_INPUTS = { name: "#run-name", photos: "#train-photos", class_noun: "#class-noun" };
function markFields(fields) {
  document.querySelectorAll(".field-error").forEach((note) => note.remove());
  document.querySelectorAll(".invalid").forEach((input) => input.classList.remove("invalid"));
  for (const [field, sentence] of Object.entries(fields)) {
    const input = document.querySelector(FIELD_INPUTS[field] || `[data-key='${field}']`);
    if (!input) continue;
    input.classList.add("invalid");
    input.closest("label").append(el("span", { class: "field-error", "data-field": field, text: sentence }));
  }
}

async function startTraining() {
  $("train-error").textContent = "";
  markFields({});
  try {
    const started = await api("train", { name: $("run-name").value, recipe: $("recipe").value, base_model: $("base-model").value,
      photos: $("train-photos").value, identifier: $("identifier").value, class_noun: $("class-noun").value, settings: formValues() });
    show("runs");
    openRun(started.run);
  } catch (error) { $("train-error").textContent = error.message; markFields(error.fields || {}); }
}

// ---- runs -------------------------------------------------------------------------------------
async function refreshQueue() {
  const jobs = (await api("jobs")).filter((job) => job.state === "queued" || job.state === "running");
  const table = $("queue-table");
  table.replaceChildren(el("tr", {}, el("th", { text: "job" }), el("th", { text: "folder" }), el("th", { text: "state" }), el("th", { text: "" })));
  for (const job of jobs) {
    const act = (label, path, body) => {
      const button = el("button", { text: label, "data-job": job.id, title: label });
      button.onclick = async () => {
        try { await api(path, body); } catch (error) { $("queue-error").textContent = error.message; }
        refreshQueue(); refreshRuns();
      };
      return button;
    };
    const controls = job.state === "queued"
      ? [act("↑", "move", { job: job.id, by: -1 }), act("↓", "move", { job: job.id, by: 1 }), act("cancel", "cancel", { job: job.id })]
      : [act("stop", "cancel", { job: job.id })];
    table.append(el("tr", {}, el("td", { text: job.kind }), el("td", { text: job.target }),
      el("td", { text: job.place ? `queued (#${job.place})` : job.state }), el("td", {}, ...controls)));
  }
  table.hidden = !jobs.length;
}

async function refreshRuns() {
  refreshQueue();
  const list = await api("runs");
  const table = $("runs-table");
  table.replaceChildren(el("tr", {}, el("th", { text: "run" }), el("th", { text: "status" }), el("th", { text: "step" }), el("th", { text: "" })));
  for (const run of list) {
    const open = el("button", { text: "open", "data-run": run.name });
    open.onclick = () => openRun(run.name);
    table.append(el("tr", {}, el("td", { text: run.name }), el("td", { text: run.status }),
      el("td", { text: `${run.step}${run.total ? " / " + run.total : ""}` }), el("td", {}, open)));
  }
  return list;
}

function openRun(name) {
  state.openRun = name;
  remember("runs");
  $("run-detail").hidden = false;
  $("run-title").textContent = name;
  follow(name);
}

// The open run's state arrives as server-sent events (/api/events) whenever it changes; the browser
// reconnects by itself after a dropped connection, and the stream ends when the run does.
function follow(name) {
  if (state.events) state.events.close();
  state.events = new EventSource("/api/events?run=" + encodeURIComponent(name));
  state.events.onmessage = (message) => showRun(JSON.parse(message.data));
  state.events.addEventListener("end", () => { state.events.close(); refreshLists(); });
  state.events.addEventListener("failure", (message) => {
    $("run-error").textContent = JSON.parse(message.data).error;
    state.events.close();
  });
}

const clock = (seconds) => seconds == null ? "" : seconds < 60 ? `${Math.round(seconds)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;

function showRun(run) {
  state.lastRun = run;
  state.updates = (state.updates || 0) + 1;
  if ($("run-status").textContent !== run.status || state.updates % 5 === 0) refreshRuns();   // the list follows the open run
  $("run-status").textContent = run.status;
  $("run-status").className = "badge " + run.status;
  const preparing = run.phase && run.step === 0 && run.phase.label !== "training";   // class images, prepare: before step 1
  const [done, total] = preparing ? [run.phase.done, run.phase.total] : [run.step, run.total];
  $("progress-fill").style.width = `${Math.round(100 * (total ? done / total : 0))}%`;
  let text = run.status === "starting" && !preparing ? "starting: loading the model" : total ? `step ${done} / ${total}` : `step ${done}`;
  if (preparing) text = `${run.phase.label || "preparing"}: ${done} / ${total}`;
  if (run.status === "queued") text = `waiting in the queue (#${run.queue_place}): it starts when the jobs before it end`;
  const eta = preparing ? run.phase.eta_s : run.eta_s;
  if (eta != null && run.status !== "paused") text += ` · about ${clock(eta)} left`;
  $("progress-text").textContent = text;
  $("run-error").textContent = run.error ? "error: " + run.error : "";
  $("run-notice").textContent = run.notice || "";
  $("run-load").textContent = loadLine(run);
  $("run-memory").textContent = run.memory ? "memory split: " + run.memory : "";
  $("stop").disabled = !(run.status === "running" || run.status === "starting" || run.status === "queued");
  $("resume").disabled = !(run.status === "stopped" || run.status === "paused" || (run.status === "failed" && run.checkpoints.length));
  drawCurves(run.curves);
  const sheets = run.files.validation;
  if (sheets.length) {
    const newest = fileUrl(sheets[sheets.length - 1]);
    if ($("sheet").dataset.src !== newest) { $("sheet").src = newest; $("sheet").dataset.src = newest; $("sheet").alt = sheets[sheets.length - 1]; }
  }
  $("sheet").hidden = !sheets.length;          // no broken-image icon while there is no sheet
  if ($("sample-gallery").dataset.count !== String(sheets.length)) {   // every sheet, by step: how the samples moved
    $("sample-gallery").dataset.count = String(sheets.length);
    $("sample-gallery").replaceChildren(...sheets.map((sheet) => {
      const step = Number((sheet.match(/step-(\d+)/) || [0, 0])[1]);
      const figure = el("figure", {}, el("img", { src: fileUrl(sheet), alt: `samples at step ${step}` }), el("figcaption", { text: `step ${step}` }));
      figure.onclick = () => { $("sheet").src = fileUrl(sheet); $("sheet").dataset.src = fileUrl(sheet); };
      return figure;
    }));
  }
  $("sheet-note").hidden = sheets.length > 0;
  renderMonitor(run.monitor);
  renderDownloads(run.files);
  $("log").textContent = run.log.join("\n");

}

// Live, on every update: what the run holds (its metrics.jsonl: GPU memory its allocator reserved, or the
// process's resident memory on a CPU) and how busy the whole machine is.
function loadLine(run) {
  const parts = [];
  if (run.held) parts.push(`this run holds ${run.held.now_gib.toFixed(2)} GiB (peak ${run.held.peak_gib.toFixed(2)} GiB)`);
  if (run.machine) parts.push(`machine: ${run.machine.memory_used_gib} of ${run.machine.memory_total_gib} GiB memory in use, CPU ${run.machine.cpu_percent} %`);
  for (const gpu of (run.machine && run.machine.gpus) || []) {   // the driver's view: every process on the card
    const busy = gpu.utilization_percent == null ? "" : `, ${gpu.utilization_percent} % busy`;
    const warm = gpu.temperature_c == null ? "" : `, ${gpu.temperature_c} °C`;
    parts.push(`GPU ${gpu.index} (${gpu.name}): ${gpu.memory_used_gib} of ${gpu.memory_total_gib} GiB${busy}${warm}`);
  }
  return parts.join(" · ");
}

const SERIES_NAMES = { memory_gib: "memory held (GiB)" };

function drawCurves(curves) {
  const select = $("series");
  const names = Object.keys(curves);
  if ([...select.options].map((o) => o.value).join() !== names.join()) {
    const chosen = select.value || "loss";
    select.replaceChildren(...names.map((name) => el("option", { value: name, text: SERIES_NAMES[name] || name })));
    if (names.includes(chosen)) select.value = chosen;
  }
  const points = curves[select.value] || [];
  const svg = $("curve");
  svg.replaceChildren();
  if (points.length < 2) return;
  const logScale = $("log-scale").checked && points.every((p) => p[1] > 0);
  const value = (y) => logScale ? Math.log10(y) : y;
  const xs = points.map((p) => p[0]), ys = points.map((p) => value(p[1]));
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 40 + 370 * (x - x0) / Math.max(1e-9, x1 - x0), sy = (y) => 200 - 185 * (y - y0) / Math.max(1e-12, y1 - y0);
  const ns = "http://www.w3.org/2000/svg";
  const line = (d, colour, width) => { const p = document.createElementNS(ns, "polyline"); p.setAttribute("points", d);
    p.setAttribute("fill", "none"); p.setAttribute("stroke", colour); p.setAttribute("stroke-width", width); svg.append(p); return p; };
  line(points.map((p) => `${sx(p[0]).toFixed(1)},${sy(value(p[1])).toFixed(1)}`).join(" "), "#cbd5e1", 1);
  // exponential moving average, debiased as TensorBoard does, so the first points are not pulled to zero
  const weight = Number($("smoothing").value);
  let average = 0;
  const smooth = points.map((p, i) => { average = weight * average + (1 - weight) * value(p[1]); return [p[0], average / (1 - weight ** (i + 1))]; });
  line(smooth.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "), "#2563eb", 2).setAttribute("id", "curve-line");
  const shown = (y) => (logScale ? 10 ** y : y).toPrecision(3);
  for (const [text, x, y] of [[shown(y1), 2, 18], [shown(y0), 2, 200], [`step ${x0}`, 40, 216], [`step ${x1}`, 360, 216]]) {
    const label = document.createElementNS(ns, "text"); label.setAttribute("x", x); label.setAttribute("y", y);
    label.setAttribute("font-size", "10"); label.textContent = text; svg.append(label);
  }
}

function renderMonitor(records) {
  const table = $("monitor");
  table.replaceChildren();
  if (!records.length) return;
  table.append(el("tr", {}, ...["step", "CLIP-I", "CLIP-T", "PRES"].map((t) => el("th", { text: t }))));
  for (const r of records.slice(-6)) {
    table.append(el("tr", {}, ...[r.step, r.clip_i, r.clip_t, r.pres].map((v) => el("td", { text: typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v ?? "") }))));
  }
}

function renderDownloads(files) {
  const box = $("downloads");
  box.replaceChildren();
  const links = [...files.weights.map((w) => [w.split("/").pop(), w]), ...(files.model_card ? [["model card (README.md)", files.model_card]] : []),
                 ...(files.report ? [["report.html", files.report]] : [])];
  for (const [label, path] of links) {
    box.append(el("a", { href: label === "report.html" ? fileUrl(path) : fileUrl(path, true), target: "_blank", text: label }), " ");
  }
}

async function stopRun() {
  try { await api("stop", { run: state.openRun }); $("progress-text").textContent = "stopping after this step…"; }
  catch (error) { $("run-error").textContent = error.message; }
}

async function resumeRun() {
  try { await api("resume", { run: state.openRun }); openRun(state.openRun); }
  catch (error) { $("run-error").textContent = error.message; }
}

// ---- generate ---------------------------------------------------------------------------------
// A few-step model samples in its own steps without guidance: the form takes them when its run is chosen
// (the base model's side keeps its usual settings).
function followModelSampling() {
  const sampling = (state.samplingOf || {})[$("gen-run").value];
  $("gen-sampling").textContent = sampling
    ? `few-step model: ${sampling.steps} steps (or fewer), guidance ${sampling.guidance_scale}, ${sampling.scheduler}; the base model's side uses its usual settings`
    : "";
  if (sampling && $("gen-run").dataset.followed !== $("gen-run").value) {
    $("steps").value = sampling.steps;
    $("guidance").value = sampling.guidance_scale;
  }
  $("gen-run").dataset.followed = $("gen-run").value;
}

async function generate() {
  $("generate-error").textContent = "";
  try {
    const started = await api("generate", { run: $("gen-run").value, prompts: $("prompts").value.split("\n"),
      images_per_prompt: Number($("images-per-prompt").value), seed: Number($("seed").value),
      guidance_scale: Number($("guidance").value), steps: Number($("steps").value) });
    state.generation = started.generation;
    $("gallery").replaceChildren();
    clearInterval(state.genPoll);
    state.genPoll = setInterval(pollGeneration, 1000);
  } catch (error) { $("generate-error").textContent = error.message; }
}

async function pollGeneration() {
  let sides;
  try { sides = await api("generation?path=" + encodeURIComponent(state.generation)); }
  catch (error) { $("generate-error").textContent = error.message; clearInterval(state.genPoll); return; }
  const { personalized, base } = sides;
  const running = personalized.running || base.running || (!base.images.length && !base.error && !personalized.error);
  const progress = personalized.progress || base.progress;
  $("gen-progress").textContent = running ? `rendering${progress ? `: ${progress.done} / ${progress.total}${progress.eta_s != null ? `, about ${clock(progress.eta_s)} left` : ""}` : "…"}` : "done.";
  $("generate-error").textContent = [personalized.error, base.error].filter(Boolean).map((e) => "error: " + e).join("\n");
  const table = $("gallery");
  table.replaceChildren(el("tr", {}, el("th", { text: "prompt" }), el("th", { text: "base model" }), el("th", { text: "personalized" })));
  personalized.images.forEach((image, i) => {
    const cell = (path) => path ? el("td", {}, el("a", { href: fileUrl(path, true) }, el("img", { src: fileUrl(path), alt: path, class: "generated" }))) : el("td", { text: "…" });
    const label = el("td", { text: personalized.prompts[i] }, el("div", { class: "hint", text: `seed ${personalized.seeds[i]} · base: ${base.prompts[i] || "…"}` }));
    table.append(el("tr", {}, label, cell(base.images[i]), cell(image)));
  });
  if (!running || personalized.error) clearInterval(state.genPoll);
}

function fillDreamBench() {
  const templates = state.info.prompts[$("prompt-list").value];
  $("prompts").value = templates.join("\n");
  // DreamBench's contexts were written for photographs; say which of them the miniature's world can draw
  $("prompt-note").textContent = "On the miniature model: its world draws " + state.info.miniature_contexts.join(", ") +
    "; other contexts (a hat, a costume, a toy version) come out as the nearest one it knows. Real models draw them all.";
  $("prompt-note").hidden = false;
}

// ---- lists ------------------------------------------------------------------------------------
function fillSelect(select, values, keep) {
  const chosen = keep ?? select.value;
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  if (values.includes(chosen)) select.value = chosen;
}

async function refreshInfo() {
  state.info = await api("info");
  fillSelect($("train-photos"), state.info.photo_sets, state.preparedSet);
}

async function refreshLists() {
  await refreshInfo();
  const runs = await api("runs");
  fillSelect($("gen-run"), runs.filter((r) => r.status === "finished").map((r) => r.name));
  state.samplingOf = Object.fromEntries(runs.map((r) => [r.name, r.sampling]));
  followModelSampling();
}

async function init() {
  // handlers first, so nothing a person (or a test) does while the lists load is lost
  document.querySelectorAll("nav button").forEach((b) => (b.onclick = () => show(b.dataset.page)));
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files); };
  $("files").onchange = (e) => upload(e.target.files);
  $("set-name").oninput = () => {   // another set: the last set's verdicts and captions are not this one's
    $("verdicts").replaceChildren(); $("save-captions").hidden = true; $("upload-status").textContent = ""; state.preparedSet = null;
    showUploads();
  };
  $("sample").onclick = samplePhotos;
  $("prepare").onclick = prepare;
  $("save-captions").onclick = saveCaptions;
  $("replace-all").onclick = () => { const find = $("find").value; if (find) editCaptions((text) => text.split(find).join($("replace").value)); };
  $("autocaption").onclick = async () => {
    $("prepare-error").textContent = "";
    $("upload-status").textContent = "captioning…";
    try {
      renderVerdicts(await api("autocaption", { set: state.preparedSet, model: $("caption-model").value, prefix: $("instance-prompt").value }));
      $("upload-status").textContent = "captions written by the model; edit them, then Save captions.";
    } catch (error) { $("prepare-error").textContent = error.message; $("upload-status").textContent = ""; }
  };
  $("add-prefix").onclick = () => {
    const prefix = $("prefix").value.trim();
    if (prefix) editCaptions((text) => (text.startsWith(prefix) ? text : `${prefix} ${text}`));
  };
  $("start").onclick = startTraining;
  $("stop").onclick = stopRun;
  $("resume").onclick = resumeRun;
  for (const id of ["series", "log-scale", "smoothing"]) $(id).oninput = () => state.lastRun && drawCurves(state.lastRun.curves);
  $("generate").onclick = generate;
  $("dreambench").onclick = fillDreamBench;
  $("recipe").onchange = () => { recipeModel(); loadForm(); $("preset-note").textContent = ""; };
  $("base-model").onchange = proposePreset;
  $("gen-run").onchange = followModelSampling;
  state.info = await api("info");
  $("where").textContent = "runs in " + state.info.runs;
  $("device").textContent = "· " + state.info.device;
  document.querySelectorAll(".local-only").forEach((e) => (e.hidden = !state.info.local));
  fillSelect($("sample-subject"), state.info.subjects);
  // recipes grouped by what they need (photos of a subject, or none: reward fine-tuning)
  $("recipe").replaceChildren(...Object.entries(state.info.recipe_groups).map(([group, names]) =>
    el("optgroup", { label: group }, ...names.map((name) => el("option", { value: name, text: name })))));
  $("recipe").value = "miniature-lora";
  recipeModel();
  fillSelect($("prompt-list"), Object.keys(state.info.prompts));
  fillSelect($("train-photos"), state.info.photo_sets);
  await loadForm();
  setInterval(() => { if (!$("page-runs").hidden && !state.openRun) refreshRuns(); }, 3000);   // the list moves while runs train
  const [page, run] = location.hash.slice(1).split("/");
  if (page && $("page-" + page)) show(page);
  if (page === "runs" && run) openRun(decodeURIComponent(run));
  document.body.dataset.ready = "1";
}

init().catch((error) => { document.body.prepend(el("div", { class: "error", text: "the UI could not start: " + error.message })); });
