// The viewer page: NiiVue shows CT, PET and the mask; clicks go to the server's JSON API
// (viewer/server.py). Points sent are voxel indices [i, j, k] of the PET grid, computed from
// the crosshair's world position with the inverse of the PET file's own affine, so they do not
// depend on how NiiVue orients the display.
import { Niivue, SHOW_RENDER } from "/static/vendor/niivue/index.js";

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);

// What the browser tests read: the open session, whether a request is running, the last answer.
const state = { session: null, busy: 0, ready: false, answers: 0, last: null, error: null, hasLabel: false };
window.viewer = { state };

function withToken(url) {
  return token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
}

async function api(path, { method = "GET", body, form } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: form ?? (body === undefined ? undefined : JSON.stringify(body)) });
  const text = await response.text();
  let data;
  try { data = text ? JSON.parse(text) : {}; } catch { data = { detail: text }; }
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

async function busy(work) {
  state.busy += 1;
  $("busy").hidden = false;
  $("status").textContent = "";
  try {
    return await work();
  } catch (error) {
    state.error = String(error.message || error);
    $("status").textContent = state.error;
    return null;
  } finally {
    state.busy -= 1;
    $("busy").hidden = state.busy === 0;
  }
}

const nv = new Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true, multiplanarShowRender: SHOW_RENDER.NEVER,
                        isResizeCanvas: true, crosshairColor: [0.3, 0.6, 1, 0.8], crosshairWidth: 1 });
window.viewer.nv = nv;
await nv.attachTo("gl");
nv.setSliceType(nv.sliceTypeMultiplanar);

const sessionUrl = (suffix = "") => `/api/sessions/${state.session}${suffix}`;

function volumeOptions(kind) {
  const options = {
    ct: { url: withToken(sessionUrl("/volume/ct")), name: "ct.nii", colormap: "gray", ...ctWindow() },
    pet: { url: withToken(sessionUrl("/volume/pet")), name: "pet.nii", colormap: "hot", cal_min: 0,
           cal_max: Number($("pet-max").value), opacity: Number($("pet-opacity").value) },
    mask: { url: withToken(sessionUrl(`/mask?v=${state.answers}`)), name: "mask.nii.gz", colormap: "green", cal_min: 0,
            cal_max: 1, opacity: Number($("mask-opacity").value) },
  };
  return options[kind];
}

function ctWindow() {
  const centre = Number($("ct-center").value), width = Number($("ct-width").value);
  return { cal_min: centre - width / 2, cal_max: centre + width / 2 };
}

async function showMask() {
  while (nv.volumes.length > 2) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
  await nv.addVolumeFromUrl(volumeOptions("mask"));
  $("mip").src = withToken(sessionUrl(`/mip.png?v=${state.answers}`));
}

function affineInverse(affine) {
  // affine: 4 rows of 4 (NIfTI sform/qform, voxel -> RAS mm); returns mm -> voxel
  const a = affine.slice(0, 3).map((row) => row.slice(0, 3));
  const t = affine.slice(0, 3).map((row) => row[3]);
  const det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  const inv = [
    [(a[1][1] * a[2][2] - a[1][2] * a[2][1]) / det, (a[0][2] * a[2][1] - a[0][1] * a[2][2]) / det, (a[0][1] * a[1][2] - a[0][2] * a[1][1]) / det],
    [(a[1][2] * a[2][0] - a[1][0] * a[2][2]) / det, (a[0][0] * a[2][2] - a[0][2] * a[2][0]) / det, (a[0][2] * a[1][0] - a[0][0] * a[1][2]) / det],
    [(a[1][0] * a[2][1] - a[1][1] * a[2][0]) / det, (a[0][1] * a[2][0] - a[0][0] * a[2][1]) / det, (a[0][0] * a[1][1] - a[0][1] * a[1][0]) / det],
  ];
  return (mm) => inv.map((row) => row.reduce((sum, v, c) => sum + v * (mm[c] - t[c]), 0));
}

function petAffine() {
  return nv.volumes[1].hdr.affine;
}

function mmToVoxel(mm) {
  return affineInverse(petAffine())(mm).map((v) => Math.round(v));
}

function voxelToMM(voxel) {
  const a = petAffine();
  return [0, 1, 2].map((r) => a[r][0] * voxel[0] + a[r][1] * voxel[1] + a[r][2] * voxel[2] + a[r][3]);
}

// For the browser tests and for scripting: where a voxel is drawn on the canvas, in CSS pixels.
window.viewer.voxelToCanvas = (voxel) => {
  const frac = nv.mm2frac(voxelToMM(voxel));
  nv.scene.crosshairPos = frac;
  nv.drawScene();
  const pos = nv.frac2canvasPos(frac);
  if (!pos) return null;
  const canvas = $("gl");
  const scale = canvas.width / canvas.clientWidth;
  return [pos[0] / scale, pos[1] / scale];
};
window.viewer.mmToVoxel = mmToVoxel;

function renderClicks(clicks) {
  const list = $("click-list");
  list.innerHTML = "";
  const all = [...(clicks.tumor || []).map((p) => ["tumor", p]), ...(clicks.background || []).map((p) => ["background", p])];
  for (const [kind, point] of all) {
    const item = document.createElement("li");
    item.innerHTML = `<span class="${kind}">${kind}</span> [${point.join(", ")}]`;
    list.appendChild(item);
  }
  $("undo").disabled = all.length === 0;
  $("reset").disabled = all.length === 0;
}

async function applyAnswer(answer) {
  state.answers += 1;
  state.last = answer;
  renderClicks(answer.clicks);
  const dice = answer.dice === null || answer.dice === undefined ? "" : `, Dice ${answer.dice.toFixed(3)}`;
  const tiles = answer.tiles_run === null || answer.tiles_run === undefined ? "" : `, ${answer.tiles_run}/${answer.tiles} tiles`;
  $("answer").textContent = `${answer.voxels} voxels in the mask, ${answer.seconds.toFixed(2)} s${tiles}${dice}`;
  await showMask();
}

async function openSession(request) {
  state.ready = false;
  const opened = await busy(() => request());
  if (!opened) return;
  if (state.session) api(`/api/sessions/${state.session}`, { method: "DELETE" }).catch(() => {});
  state.session = opened.session;
  state.hasLabel = opened.has_label;
  $("replay-panel").hidden = !opened.has_label;
  $("replay-table").querySelector("tbody").innerHTML = "";
  $("download-mask").href = withToken(sessionUrl("/mask"));
  $("download-clicks").href = withToken(sessionUrl("/clicks"));
  for (const id of ["download-mask", "download-clicks"]) $(id).classList.remove("disabled");
  await busy(async () => {
    nv.volumes.slice().forEach((v) => nv.removeVolume(v));
    await nv.loadVolumes([volumeOptions("ct"), volumeOptions("pet")]);
    await applyAnswer(opened.first_answer);
  });
  $("status").textContent = `${opened.case}: ${opened.shape.join(" x ")} voxels, opened in ${opened.seconds.toFixed(1)} s`;
  state.ready = true;
}

async function interact(path, body) {
  if (!state.session) return null;
  const answer = await busy(() => api(sessionUrl(path), { method: "POST", body }));
  if (answer) await busy(() => applyAnswer(answer));
  return answer;
}

// a click (not a drag) on the canvas: tumor, or background with Shift or in background mode
let down = null;
const canvas = $("gl");
canvas.addEventListener("pointerdown", (event) => {
  down = { x: event.clientX, y: event.clientY, button: event.button, shift: event.shiftKey };
}, true);
canvas.addEventListener("pointerup", (event) => {
  const start = down;
  down = null;
  if (!start || start.button !== 0 || !state.ready || state.busy) return;
  if (Math.hypot(event.clientX - start.x, event.clientY - start.y) > 4) return;
  setTimeout(() => {  // after NiiVue has moved the crosshair to the clicked point
    const mm = nv.frac2mm(nv.scene.crosshairPos);
    const point = mmToVoxel([mm[0], mm[1], mm[2]]);
    const mode = document.querySelector('input[name="mode"]:checked').value;
    const kind = start.shift || mode === "background" ? "background" : "tumor";
    interact("/clicks", { kind, point });
  }, 0);
}, true);

$("undo").addEventListener("click", () => interact("/undo"));
$("reset").addEventListener("click", () => interact("/reset"));

async function replayStep(step) {
  const answer = await interact("/replay", { step });
  if (!answer) return;
  const body = $("replay-table").querySelector("tbody");
  let row = body.querySelector(`tr[data-step="${step}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.step = step;
    row.addEventListener("click", () => replayStep(step));
    body.appendChild(row);
  }
  const dice = answer.dice === null ? "n/a" : answer.dice.toFixed(3);
  row.innerHTML = `<td>${step}</td><td>${dice}</td><td>${answer.voxels}</td><td>${answer.seconds.toFixed(2)}</td>`;
}

$("replay-all").addEventListener("click", async () => {
  for (let step = 0; step <= 10; step += 1) await replayStep(step);
});

function updateDisplay() {
  $("ct-center-out").textContent = $("ct-center").value;
  $("ct-width-out").textContent = $("ct-width").value;
  $("pet-max-out").textContent = $("pet-max").value;
  if (nv.volumes.length < 2) return;
  Object.assign(nv.volumes[0], ctWindow());
  nv.volumes[1].cal_max = Number($("pet-max").value);
  nv.volumes[1].opacity = Number($("pet-opacity").value);
  if (nv.volumes[2]) nv.volumes[2].opacity = Number($("mask-opacity").value);
  nv.updateGLVolume();
}
for (const id of ["ct-center", "ct-width", "pet-max", "pet-opacity", "mask-opacity"]) $(id).addEventListener("input", updateDisplay);

$("open-case").addEventListener("click", () => {
  const name = $("case-select").value;
  if (name) openSession(() => api("/api/sessions", { method: "POST", body: { case: name } }));
});

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const ct = $("upload-ct").files[0], pet = $("upload-pet").files[0];
  if (!ct || !pet) { $("status").textContent = "choose a CT and a PET file"; return; }
  const form = new FormData();
  form.append("ct", ct);
  form.append("pet", pet);
  openSession(() => api("/api/sessions/upload", { method: "POST", form }));
});

const listed = await busy(() => api("/api/cases"));
for (const item of listed?.cases || []) {
  const option = document.createElement("option");
  option.value = item.name;
  option.textContent = item.has_label ? `${item.name} (label)` : item.name;
  $("case-select").appendChild(option);
}
window.viewer.openCase = (name) => openSession(() => api("/api/sessions", { method: "POST", body: { case: name } }));
window.viewer.loaded = true;
