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

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("photo-search");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("[type=submit]");
    const error = form.querySelector("[data-error]");
    button.disabled = true;
    error.hidden = true;
    try {
      const data = new FormData(form);
      for (const name of ["face", "investigation"]) if (!String(data.get(name) || "").trim()) data.delete(name);
      const response = await send("/api/search", "POST", data, true);
      if (response.ok) showResults(await response.json());
      else { document.getElementById("search-results").hidden = true; showError(form, await describe(response)); }
    } catch (err) {
      showError(form, "the server could not be reached: " + err);
    } finally {
      button.disabled = false;
    }
  });
});
