// OpenLFR console: announce what needs a person, on every page an operator or authoriser has open. A new alert and
// a camera going down each play a chime (Web Audio, no file; a toggle in the bar, remembered per user in this
// browser), show a desktop notification while the tab is hidden (permission asked once, on a user gesture), and
// say so in the bar under the header (a live region). The tab's title counts the undecided alerts.
//
// The event stream (/api/events) is shared with the live queue (console.js: openlfrStream). What was announced is
// remembered in localStorage per user, so a new page, a reload or a second tab does not announce it again.
"use strict";

(() => {
  const body = document.body;
  if (!body || !body.dataset.announce || !window.EventSource) return;
  const user = body.dataset.user || "";
  const chimeKey = "openlfr:chime:" + user;
  const seenKey = "openlfr:announced:" + user;
  const askedKey = "openlfr:notifications-asked:" + user;
  const baseTitle = document.title;
  // Hooks the browser tests read: chimes that played to the end, notifications shown.
  window.__openlfrChimes = 0;
  window.__openlfrNotifications = [];

  const store = {
    get(key) { try { return window.localStorage.getItem(key); } catch (_) { return null; } },
    set(key, value) { try { window.localStorage.setItem(key, value); } catch (_) { /* private mode: not kept */ } },
  };

  // ----- the sound toggle -----

  const toggle = document.querySelector("[data-chime-toggle]");
  const soundOn = () => (store.get(chimeKey) || body.dataset.announce) === "on";
  function showToggle() {
    if (!toggle) return;
    const on = soundOn();
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    toggle.textContent = on ? "Sound on" : "Sound off";
    toggle.title = on ? "Alerts and cameras going down play a chime; press to silence" : "Press to hear a chime for alerts";
    toggle.hidden = false;
  }
  if (toggle) {
    toggle.addEventListener("click", () => {
      store.set(chimeKey, soundOn() ? "off" : "on");
      showToggle();
    });
  }
  showToggle();

  // ----- the chime -----

  // Browsers start audio only after a gesture on the page: the context is made (or resumed) on the first one.
  let audio = null;
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }

  // Two short sine notes; a camera down is lower and falls, an alert rises.
  function chime(kind) {
    if (!soundOn()) return;
    unlockAudio();
    if (!audio) return;
    const notes = kind === "camera" ? [587.33, 440] : [659.25, 880];
    const start = audio.currentTime + 0.02;
    const gain = audio.createGain();
    gain.connect(audio.destination);
    gain.gain.setValueAtTime(0.0001, start);
    notes.forEach((frequency, i) => {
      const at = start + i * 0.18;
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.16);
    });
    const tone = audio.createOscillator();
    tone.type = "sine";
    notes.forEach((frequency, i) => tone.frequency.setValueAtTime(frequency, start + i * 0.18));
    tone.connect(gain);
    tone.onended = () => { window.__openlfrChimes += 1; gain.disconnect(); };
    tone.start(start);
    tone.stop(start + notes.length * 0.18);
  }

  // ----- desktop notifications -----

  function askOnce() {
    if (!("Notification" in window) || Notification.permission !== "default" || store.get(askedKey)) return;
    store.set(askedKey, "1");
    Notification.requestPermission().catch(() => {});
  }

  function firstGesture() {
    unlockAudio();
    askOnce();
    document.removeEventListener("pointerdown", firstGesture, true);
    document.removeEventListener("keydown", firstGesture, true);
  }
  document.addEventListener("pointerdown", firstGesture, true);
  document.addEventListener("keydown", firstGesture, true);

  // Only while the tab is hidden: on a visible page the bar and the sound say it. No name or picture in it: a
  // desktop notification can be read by anyone near the screen, or on a locked one.
  function notify(title, text, tag) {
    if (document.visibilityState !== "hidden") return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const note = new Notification(title, { body: text, tag, renotify: true });
      note.onclick = () => { window.focus(); window.location = "/queue"; note.close(); };
      window.__openlfrNotifications.push({ title, body: text });
    } catch (_) { /* some browsers allow notifications only from a service worker */ }
  }

  // ----- the bar under the header -----

  const bar = document.getElementById("announcements");
  function say(text) {
    if (!bar) return;
    bar.textContent = "";
    const link = document.createElement("a");
    link.href = "/queue";
    link.textContent = text;
    bar.appendChild(link);
    bar.hidden = false;
  }

  // ----- what was announced -----

  function seen() {
    try { return JSON.parse(store.get(seenKey) || "null"); } catch (_) { return null; }
  }

  function announceQueue(signature) {
    const undecided = Number(signature.undecided || 0);
    document.title = undecided > 0 ? "(" + undecided + ") " + baseTitle : baseTitle;
    body.dataset.undecided = String(undecided);
    const latest = Number(signature.latest || 0);
    const before = seen() || {};
    if (before.latest === undefined) {
      // The first page this user opens in this browser: what is already there is shown, not announced.
      store.set(seenKey, JSON.stringify({ ...before, latest }));
      return;
    }
    if (latest <= before.latest) return;
    store.set(seenKey, JSON.stringify({ ...before, latest }));
    const text = undecided === 1 ? "New alert: 1 awaiting a decision" : "New alert: " + undecided + " awaiting a decision";
    say(text);
    chime("alert");
    notify("OpenLFR: new alert", text, "openlfr-alert");
  }

  // A camera is down when it stalls, reconnects or fails (connecting is how every camera starts).
  const DOWN = new Set(["stalled", "reconnecting", "failed"]);

  function announceCameras(data) {
    const before = seen() || {};
    const known = new Set(before.down || []);
    const down = [];
    const fresh = [];
    for (const [deployment, camera, state] of data.cameras || []) {
      if (!DOWN.has(state)) continue;
      const key = deployment + ":" + camera;
      down.push(key);
      if (!known.has(key)) fresh.push({ camera, state });
    }
    store.set(seenKey, JSON.stringify({ ...before, down }));
    if (!fresh.length) return;
    const text = fresh.map((c) => "Camera " + c.camera + " is down (" + c.state + ")").join("; ");
    say(text);
    chime("camera");
    notify("OpenLFR: camera down", text, "openlfr-camera");
  }

  function listen() {
    const source = window.openlfrStream ? window.openlfrStream() : new EventSource("/api/events");
    source.addEventListener("queue", (event) => {
      try { announceQueue(JSON.parse(event.data)); } catch (_) { /* a malformed event is skipped */ }
    });
    source.addEventListener("cameras", (event) => {
      try { announceCameras(JSON.parse(event.data)); } catch (_) { /* a malformed event is skipped */ }
    });
    source.addEventListener("logout", () => { window.location = "/login"; });
  }

  listen();
})();
