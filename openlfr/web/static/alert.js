// The decision page (/alerts/{id}): how long ago the person was seen, updated by itself; each step sent with its
// optional note, the weighty ones (a confirmed match, an outcome) only after a confirmation dialog; and the undo
// of one's own latest step while its 30 s last. The API decides and audits; this only asks it.
"use strict";

function agoText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  const days = Math.floor(s / 86400);
  return days + (days === 1 ? " day ago" : " days ago");
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-ago]")) {
    el.textContent = agoText((now - Date.parse(el.getAttribute("datetime"))) / 1000);
  }
  for (const button of document.querySelectorAll("button[data-undo]")) {
    const left = Math.ceil((Date.parse(button.dataset.until) - now) / 1000);
    const line = button.parentElement.querySelector("[data-undo-left]");
    if (left <= 0) { button.parentElement.hidden = true; continue; }
    if (line) line.textContent = left + " s left to take it back";
  }
}

async function sendStep(url, body, scope) {
  const response = await send(url, "POST", body);
  if (response.ok) window.location.reload();
  else showError(scope, await describe(response));
}

function stepBody(button) {
  const body = JSON.parse(button.dataset.body || "{}");
  const box = button.closest("[data-step-box]");
  const note = box && box.querySelector("[data-note]");
  if (note && note.value.trim() !== "") body.note = note.value.trim();
  return body;
}

function decisionPage() {
  const page = document.querySelector("[data-alert-page]");
  if (!page) return;
  const dialog = page.querySelector("[data-confirm-dialog]");
  let pending = null; // the step waiting for its confirmation

  page.addEventListener("click", async (event) => {
    const step = event.target.closest("button[data-step]");
    const undo = event.target.closest("button[data-undo]");
    if (step) {
      if (step.dataset.confirm && dialog) {
        pending = step;
        dialog.querySelector("[data-confirm-text]").textContent = step.dataset.confirm;
        dialog.showModal(); // focus moves into the dialog; Escape cancels
        dialog.querySelector("[data-confirm-yes]").focus();
        return;
      }
      step.disabled = true;
      try { await sendStep(step.dataset.step, stepBody(step), page); } finally { step.disabled = false; }
    } else if (undo) {
      undo.disabled = true;
      try { await sendStep(undo.dataset.undo, undefined, page); } finally { undo.disabled = false; }
    }
  });
  if (!dialog) return;
  dialog.querySelector("[data-confirm-no]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { if (pending) pending.focus(); pending = null; });
  dialog.querySelector("[data-confirm-yes]").addEventListener("click", async (event) => {
    const step = pending;
    if (!step) return;
    event.target.disabled = true;
    try {
      await sendStep(step.dataset.step, stepBody(step), page);
    } finally {
      event.target.disabled = false;
      pending = null;
      if (dialog.open) dialog.close();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => { decisionPage(); tick(); setInterval(tick, 1000); });
