// OpenLFR console: send forms to the JSON API with the CSRF token, keep the alert queue live (server-sent
// events) and refresh camera tiles. No framework: the pages are rendered by the server.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

function showError(scope, message) {
  const box = (scope && scope.querySelector("[data-error]")) || document.querySelector("[data-error]");
  if (box) { box.textContent = message; box.hidden = false; } else { alert(message); }
}

async function describe(response, form) {
  // A console route's refusal is an error page: its message is the page's error line.
  if ((response.headers.get("content-type") || "").includes("text/html")) {
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const line = page.querySelector("main .error");
    return line ? line.textContent : response.status + " " + response.statusText;
  }
  try {
    const body = await response.json();
    let text = body.detail || response.statusText;
    if (Array.isArray(body.problems) && window.OpenLFRForms) {
      text = window.OpenLFRForms.explain(body.problems, form); // the one place fields are named in plain words
    } else if (Array.isArray(body.problems)) {
      text += ": " + body.problems.map((p) => (p.field || p.photo || "") + " " + p.problem).join("; ");
    }
    return text;
  } catch (_) { return response.status + " " + response.statusText; }
}

// A form's fields as the API's JSON: numbers, booleans, ISO times (UTC) from its zone's wall clock, camera lines.
function formJson(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled || el.type === "submit" || el.dataset.path) continue;
    const kind = el.dataset.type || "";
    if (kind === "bool") { body[el.name] = el.checked; continue; }
    if (kind === "list") { body[el.name] = body[el.name] || []; if (el.checked) body[el.name].push(el.value); continue; }
    const value = el.value.trim();
    if (kind === "number") { if (value !== "") body[el.name] = Number(value); continue; }
    if (kind === "one-in") { if (value !== "") body.target_fpir = 1 / Number(value); continue; }
    if (kind === "datetime") { // on the wall clocks of its data-zone (the places' zone), never the browser's
      if (value !== "") body[el.name] = window.OpenLFRForms.utcIso(value, el.dataset.zone || "UTC");
      continue;
    }
    if (kind === "cameras") {
      body[el.name] = value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
        const at = line.indexOf("=");
        return at < 0 ? { name: line, source: "" } : { name: line.slice(0, at).trim(), source: line.slice(at + 1).trim() };
      });
      continue;
    }
    if (value !== "" || el.required) body[el.name] = value;
  }
  return body;
}

function target(template, form) {
  return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(form.elements[key].value));
}

async function send(url, method, body, multipart) {
  const headers = { "X-CSRF-Token": csrf() };
  let payload = body;
  if (!multipart && body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  return fetch(url, { method, headers, body: payload, credentials: "same-origin" });
}

async function afterSuccess(response, next) {
  if (next) {
    let data = {};
    try { data = await response.clone().json(); } catch (_) { /* not JSON */ }
    window.location = next.replace("{id}", data.id || "");
  } else {
    window.location.reload();
  }
}

// A form with data-into="#id" shows the answer (a fragment rendered by the console) in that element instead of
// reloading the page; the element says so while the request runs, and shows the refusal if it fails.
function showInto(box, html, message) {
  box.innerHTML = html;
  if (message) {
    const line = document.createElement("p");
    line.className = "error";
    line.textContent = message;
    box.appendChild(line);
  }
  box.hidden = false;
}

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-api]");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("[type=submit]");
  if (button) button.disabled = true;
  const into = form.dataset.into ? document.querySelector(form.dataset.into) : null;
  // No figure to show until the answer: an indeterminate bar named after the action, and the seconds gone.
  const began = Date.now();
  let ticking = null;
  if (into) {
    showInto(into, '<p class="muted"><progress></progress> working… <span data-elapsed>0 s</span> (this can take a while)</p>');
    into.querySelector("progress").setAttribute("aria-label", `${button ? button.textContent.trim() : "Request"} in progress`);
    const elapsed = into.querySelector("[data-elapsed]");
    ticking = setInterval(() => { elapsed.textContent = `${Math.round((Date.now() - began) / 1000)} s`; }, 1000);
  }
  try {
    const url = target(form.dataset.api, form);
    let response;
    if (form.dataset.raw) response = await send(url, "POST");
    else if (form.dataset.multipart) {
      const data = new FormData(form);
      for (const el of form.elements) if (el.dataset.path) data.delete(el.name);
      response = await send(url, form.dataset.method || "POST", data, true);
    } else response = await send(url, form.dataset.method || "POST", formJson(form));
    if (into && response.ok) showInto(into, await response.text());
    else if (into) showInto(into, "", await describe(response));
    else if (response.ok || response.redirected) await afterSuccess(response, form.dataset.next);
    else showError(form, await describe(response, form));
  } catch (error) {
    if (into) showInto(into, "", "the server could not be reached: " + error);
    else showError(form, "the server could not be reached: " + error);
  } finally {
    clearInterval(ticking);
    if (button) button.disabled = false;
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-api]");
  if (!button || button.closest("form")) return;
  event.preventDefault();
  button.disabled = true;
  try {
    const response = await send(button.dataset.api, button.dataset.method || "POST", JSON.parse(button.dataset.body || "{}"));
    if (response.ok) await afterSuccess(response, button.dataset.next);
    else showError(button.closest("section"), await describe(response));
  } finally {
    button.disabled = false;
  }
});

// One event stream per page, shared by the live queue and the announcements (announce.js).
let eventStream = null;
function openlfrStream() {
  if (!eventStream) eventStream = new EventSource("/api/events");
  return eventStream;
}
window.openlfrStream = openlfrStream;

// The live queue: the server announces every change; we fetch the re-rendered list.
function liveQueue() {
  const queue = document.getElementById("queue");
  if (!queue || !window.EventSource) return;
  const state = document.getElementById("live-state");
  let shown = new Set([...queue.querySelectorAll("[data-alert]")].map((a) => a.dataset.alert));
  const source = openlfrStream();
  if (source.readyState === EventSource.OPEN && state) state.classList.add("on");
  source.addEventListener("open", () => { if (state) state.classList.add("on"); });
  source.addEventListener("error", () => { if (state) state.classList.remove("on"); });
  source.addEventListener("logout", () => { window.location = "/login"; });
  source.addEventListener("cameras", async () => {
    const cameras = document.getElementById("cameras");
    if (!cameras) return;
    const response = await fetch(cameras.dataset.fragment, { credentials: "same-origin" });
    if (response.ok) { cameras.innerHTML = await response.text(); refreshTiles(); }
  });
  source.addEventListener("queue", async () => {
    const response = await fetch(queue.dataset.fragment, { credentials: "same-origin" });
    if (!response.ok) return;
    queue.innerHTML = await response.text();
    const now = [...queue.querySelectorAll("[data-alert]")];
    for (const row of now) if (!shown.has(row.dataset.alert)) row.classList.add("new");
    shown = new Set(now.map((a) => a.dataset.alert));
  });
}

// Camera tiles: a fresh picture every second while the page is visible. A tile that has no picture yet (the
// camera is starting) or none any more (it stopped) shows as empty rather than as a broken image.
function refreshTiles() {
  if (document.hidden) return;
  for (const img of document.querySelectorAll("img[data-live-src]")) {
    const next = new Image();
    next.onload = () => { img.src = next.src; img.classList.remove("waiting"); };
    next.onerror = () => img.classList.add("waiting");
    next.src = img.dataset.liveSrc + "?t=" + Date.now();
  }
}

function liveTiles() {
  if (!document.getElementById("cameras") && !document.querySelector("img[data-live-src]")) return;
  refreshTiles();
  setInterval(refreshTiles, 1000);
}

// Narrow screens: the bar's menu collapses behind a disclosure button (CSS shows it under 760 px).
function collapsibleMenu() {
  const bar = document.querySelector("header.top");
  const button = bar && bar.querySelector("[data-menu-toggle]");
  if (!button) return;
  bar.classList.add("menu-ready");
  button.addEventListener("click", () => {
    const open = !bar.classList.contains("open");
    bar.classList.toggle("open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && bar.classList.contains("open")) {
      bar.classList.remove("open");
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
}

// A table wider than the screen scrolls in its own box: the box takes the keyboard focus so that it can be
// scrolled without a mouse.
function scrollableTables() {
  for (const box of document.querySelectorAll("table.grid, .table-wrap")) {
    if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
    else if (box.getAttribute("tabindex") === "0") box.removeAttribute("tabindex");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  collapsibleMenu();
  scrollableTables();
  window.addEventListener("resize", scrollableTables);
  liveQueue();
  liveTiles();
});
