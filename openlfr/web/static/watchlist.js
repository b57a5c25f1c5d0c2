// The expiry form's time is typed as UTC (the label says so) and sent with its zone, as the API asks.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const hidden of document.querySelectorAll("input[data-utc-from]")) {
    const typed = document.getElementById(hidden.dataset.utcFrom);
    const copy = () => { hidden.value = typed.value ? typed.value + (typed.value.length === 16 ? ":00Z" : "Z") : ""; };
    typed.addEventListener("input", copy);
    typed.addEventListener("change", copy);
  }
});
