// Retrospective searches in the console: footage uploaded with a progress bar of the bytes sent (XMLHttpRequest,
// for fetch reports no upload progress), chosen as a draft's camera by its reference (footage:NAME, never a path on
// the server), and the search's progress bar on its page, moved by the server's progress events.
"use strict";

(() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function megabytes(bytes) { return (bytes / 1e6).toLocaleString("en-GB", { maximumFractionDigits: 1 }) + " MB"; }

  // A camera's name from the file's name: letters, digits, spaces, '.', '_' or '-', at most 64 (the API's rule).
  function cameraName(fileName) {
    const stem = String(fileName || "footage").replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9 ._-]+/g, "_").slice(0, 64);
    return stem.trim() || "footage";
  }

  // The chosen upload becomes the draft's one camera line, and the draft a retrospective search.
  function chooseFootage(select) {
    const form = select.form;
    const cameras = form && form.elements[select.dataset.footageFor];
    if (!cameras || !select.value) return;
    const option = select.selectedOptions[0];
    const kept = cameras.value.split("\n").filter((line) => line.trim() && !/=\s*footage:/.test(line));
    cameras.value = [...kept, `${cameraName(option.dataset.name)} = ${select.value}`].join("\n");
    const kind = select.dataset.kind && document.querySelector(select.dataset.kind);
    if (kind) kind.value = "retrospective";
  }

  function addChoice(select, answer, fileName) {
    let option = [...select.options].find((o) => o.value === answer.source);
    if (!option) {
      option = document.createElement("option");
      option.value = answer.source;
      option.dataset.name = fileName;
      option.textContent = `${fileName} · ${Number(answer.seconds).toFixed(1)} s · uploaded just now`;
      select.insertBefore(option, select.options[1] || null);
    }
    select.value = answer.source;
    chooseFootage(select);
  }

  function refusal(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (Array.isArray(body.problems) && window.OpenLFRForms) return window.OpenLFRForms.explain(body.problems);
      return body.detail || `${xhr.status} ${xhr.statusText}`;
    } catch (_) { return `${xhr.status} ${xhr.statusText}`; }
  }

  function upload(form) {
    const file = form.elements.file.files[0];
    if (!file) return;
    const bar = form.querySelector("progress");
    const status = form.querySelector("[data-upload-status]");
    const error = form.querySelector("[data-error]");
    const button = form.querySelector("[type=submit]");
    error.hidden = true;
    button.disabled = true;
    bar.max = file.size || 1;
    bar.value = 0;
    status.textContent = `sending ${file.name}: 0 of ${megabytes(file.size)}`;
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", `${form.dataset.upload}?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      bar.max = event.total;
      bar.value = event.loaded;
      status.textContent = `sending ${file.name}: ${megabytes(event.loaded)} of ${megabytes(event.total)}`;
    };
    xhr.upload.onload = () => { status.textContent = `${file.name} sent; checking that it is a video…`; };
    xhr.onload = () => {
      button.disabled = false;
      if (xhr.status === 201) {
        const answer = JSON.parse(xhr.responseText);
        bar.value = bar.max;
        status.textContent = `${file.name} uploaded (${Number(answer.seconds).toFixed(1)} s of video): chosen as the draft's footage`;
        const select = form.dataset.choose && document.querySelector(form.dataset.choose);
        if (select) addChoice(select, answer, file.name);
        form.dispatchEvent(new CustomEvent("uploaded", { detail: answer, bubbles: true }));
      } else {
        bar.value = 0;
        status.textContent = "";
        error.textContent = `The upload was refused: ${refusal(xhr)}`;
        error.hidden = false;
      }
    };
    xhr.onerror = () => {
      button.disabled = false;
      error.textContent = "The upload failed: the server could not be reached.";
      error.hidden = false;
    };
    xhr.send(file);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-upload]");
    if (!form) return;
    event.preventDefault();
    upload(form);
  });

  document.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-footage-for]");
    if (select) chooseFootage(select);
  });

  // ----- a search's progress, as the server's events say -----

  function showProgress(box, p) {
    const bar = box.querySelector("progress");
    const line = box.querySelector("[data-testid=progress]");
    if (p.media_seconds) { bar.max = p.media_seconds; bar.value = Math.min(p.media_done_seconds, p.media_seconds); }
    const percent = p.media_seconds ? Math.round(100 * Math.min(1, p.media_done_seconds / p.media_seconds)) : 0;
    const state = p.finished ? "finished" : p.started ? "running" : "not started";
    line.textContent = `${Number(p.media_done_seconds).toFixed(1)} of ${Number(p.media_seconds || 0).toFixed(1)} s ` +
      `of footage analysed (${percent}%) · ${state}`;
    box.dataset.finished = p.finished ? "yes" : "";
    const phase = document.querySelector("[data-testid=phase]");
    if (phase && p.phase && phase.textContent !== p.phase) {
      phase.textContent = p.phase;
      phase.className = `phase phase-${p.phase}`;
    }
    if (p.finished && !box.querySelector("a")) { // the rest of the page (coverage, record) as it now stands
      const more = document.createElement("a");
      more.href = window.location.pathname;
      more.textContent = "show its record as it now stands";
      line.after(more);
    }
  }

  function followProgress() {
    const box = document.querySelector("[data-progress]");
    if (!box || box.dataset.finished || !window.EventSource) return;
    const source = new EventSource(box.dataset.progress);
    source.addEventListener("progress", (event) => {
      const p = JSON.parse(event.data);
      showProgress(box, p);
      if (p.finished || p.kind !== "retrospective") source.close();
    });
    source.addEventListener("logout", () => { source.close(); window.location = "/login"; });
  }

  document.addEventListener("DOMContentLoaded", followProgress);
})();
