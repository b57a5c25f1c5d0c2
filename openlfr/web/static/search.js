// The photo search page: the form goes to POST /api/search as multipart (with the session's CSRF token, by
// console.js's send); the answer is shown as a table, each candidate with its reference picture. Text is set with
// textContent only: names come from the watchlist, never as markup.
"use strict";

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function rate(fmr) {
  if (fmr === null || fmr === undefined) return "—";
  const oneIn = fmr > 0 ? " (1 in " + Math.round(1 / fmr).toLocaleString() + ")" : "";
  return fmr.toExponential(2) + oneIn;
}

function showResults(answer) {
  const body = document.getElementById("search-candidates");
  body.replaceChildren();
  for (const c of answer.candidates) {
    const row = document.createElement("tr");
    row.dataset.person = c.person;
    cell(row, String(c.rank));
    const picture = cell(row, "");
    const img = document.createElement("img");
    img.src = "/api/search/references/" + c.reference_image_id + ".jpg";
    img.alt = "reference photo of " + c.name;
    img.className = "reference-thumb";
    picture.appendChild(img);
    cell(row, c.person);
    cell(row, c.name);
    cell(row, c.category.replaceAll("_", " "));
    cell(row, c.score.toFixed(3));
    cell(row, rate(c.fmr) + (c.fmr_extrapolated ? " (fitted tail)" : ""));
    body.appendChild(row);
  }
  const probe = answer.probe;
  let summary = "Searched " + answer.people_searched + " people (" + answer.references_searched +
    " reference photos) on " + answer.watchlist + " with face " + probe.face + " of " + probe.faces_found +
    "; audit entry " + answer.audit_seq + ".";
  summary += answer.record_id !== null
    ? " Recorded for investigation " + answer.investigation + "; the searched face is kept until probe retention ends."
    : " The photo was not kept.";
  document.getElementById("search-summary").textContent = summary;
  document.getElementById("search-calibration").textContent = answer.calibration;
  document.getElementById("search-results").hidden = false;
}

// The face picker: when the photo shows several faces the API answers each one's box (numbered from the left, in
// the photo's pixels); the photo is shown from the browser's own copy of the file (it is not sent again to be
// shown) with a button over each face, placed in percent of the photo so it stays on the face at any width.
let photoUrl = null;

function hidePicker() {
  document.getElementById("face-picker").hidden = true;
  if (photoUrl) { URL.revokeObjectURL(photoUrl); photoUrl = null; }
}

function showPicker(form, answer, search) {
  const picker = document.getElementById("face-picker");
  const frame = picker.querySelector(".face-picker");
  const photo = document.getElementById("face-picker-photo");
  const file = form.elements.image.files[0];
  for (const old of frame.querySelectorAll("button")) old.remove();
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  photo.src = photoUrl;
  const total = answer.faces.length;
  const percent = (value, whole) => (100 * value / whole).toFixed(3) + "%";
  for (const face of answer.faces) {
    const [left, top, right, bottom] = face.box;
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.face = String(face.face);
    button.setAttribute("aria-label", "Face " + face.face + " of " + total);
    button.setAttribute("aria-pressed", "false");
    const number = document.createElement("span");
    number.textContent = String(face.face);
    button.appendChild(number);
    button.style.left = percent(left, answer.photo.width);
    button.style.top = percent(top, answer.photo.height);
    button.style.width = percent(right - left, answer.photo.width);
    button.style.height = percent(bottom - top, answer.photo.height);
    button.addEventListener("click", () => {
      for (const other of frame.querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", "true");
      search(face.face);
    });
    frame.appendChild(button);
  }
  document.getElementById("face-picker-note").textContent =
    total + " faces in the photo: choose the one to search for (faces are numbered from the left).";
  picker.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("photo-search");
  if (!form) return;
  const button = form.querySelector("[type=submit]");
  const error = form.querySelector("[data-error]");
  const results = document.getElementById("search-results");
  let busy = false;

  async function search(face) {
    // The picker's buttons stay enabled (a disabled button drops the keyboard's focus); one search at a time.
    if (busy || !form.reportValidity()) return;
    busy = true;
    button.disabled = true;
    error.hidden = true;
    try {
      const data = new FormData(form);
      if (face) data.set("face", String(face));
      if (!String(data.get("investigation") || "").trim()) data.delete("investigation");
      const response = await send("/api/search", "POST", data, true);
      if (response.ok) { showResults(await response.json()); if (!face) hidePicker(); return; }
      results.hidden = true;
      let body = null;
      try { body = await response.clone().json(); } catch (_) { /* an answer that is not JSON */ }
      if (body && Array.isArray(body.faces) && body.faces.length > 1 && body.photo) showPicker(form, body, search);
      else { hidePicker(); showError(form, await describe(response)); }
    } catch (err) {
      showError(form, "the server could not be reached: " + err);
    } finally {
      button.disabled = false;
      busy = false;
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); search(null); });
  // Another photo: the faces shown belong to the one before.
  form.elements.image.addEventListener("change", () => { hidePicker(); results.hidden = true; });
});
