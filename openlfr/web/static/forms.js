// OpenLFR console forms that say what they mean: times in a named zone (not the browser's), checks before a form
// is sent, and the API's refusals of fields in plain words naming the field, shown beside it. console.js calls
// OpenLFRForms.utcIso and OpenLFRForms.explain; the checks run before its submit handler (capture phase).
"use strict";

(() => {
  const PARTS = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" };

  // How far ahead of UTC the wall clock of `zone` is at the moment `utcMs`, in milliseconds.
  function offsetMs(zone, utcMs) {
    const format = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hourCycle: "h23", ...PARTS });
    const part = {};
    for (const p of format.formatToParts(new Date(utcMs))) part[p.type] = Number(p.value);
    const wall = Date.UTC(part.year, part.month - 1, part.day, part.hour, part.minute, part.second);
    return wall - Math.floor(utcMs / 1000) * 1000;
  }

  // "2027-07-01T09:00" on the wall clocks of `zone` as a UTC ISO time: "2027-07-01T08:00:00.000Z" for London.
  function utcMs(local, zone) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(local || "");
    if (!m) return NaN;
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    const first = wall - offsetMs(zone || "UTC", wall);
    return wall - offsetMs(zone || "UTC", first); // again from the first guess: right across a change of offset
  }

  function utcIso(local, zone) {
    const at = utcMs(local, zone);
    return Number.isNaN(at) ? local : new Date(at).toISOString();
  }

  // ----- what a field is called, and what is wrong with it, in plain words -----

  const FIELDS = {
    name: "Name", place: "Place", purpose: "Purpose", starts_at: "Starts", ends_at: "Ends", watchlist: "Watchlist",
    threshold: "Threshold", target_fpir: "Target false alerts", cameras: "Cameras", kind: "Kind",
    urgent_reason: "Urgency reason", sinks: "Sinks", reason: "Reason", justification: "Justification",
    username: "User name", password: "Password", role: "Role", decision: "Decision", outcome: "Outcome",
    note: "Note", person: "Person id", display_name: "Name", category: "Category", expires_at: "Expires",
  };
  const ITEMS = { cameras: "Camera", sinks: "Sink" };
  const PARTS_OF = { name: "name", source: "source" };
  // What to enter where the API found nothing (a missing or empty field), by the field's last part.
  const ENTER = {
    source: "enter the camera's address (rtsp://…, http://…, camera:0, a file, or footage you uploaded)",
    name: "enter a name", place: "enter where it happens", purpose: "say what it is for",
    cameras: "add at least one camera, one per line as name = source", watchlist: "choose a watchlist",
    starts_at: "enter a date and time", ends_at: "enter a date and time",
  };

  function fieldName(path) {
    const parts = path.split(".").filter((p) => p && p !== "body" && p !== "query" && p !== "path");
    if (!parts.length) return "";
    const [head, index, tail] = parts;
    if (index !== undefined && /^\d+$/.test(index) && ITEMS[head]) {
      return `${ITEMS[head]} ${Number(index) + 1}` + (tail ? ` ${PARTS_OF[tail] || tail.replace(/_/g, " ")}` : "");
    }
    return FIELDS[head] || head.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  }

  function plainProblem(path, problem) {
    const last = path.split(".").filter((p) => !/^\d+$/.test(p)).pop() || "";
    const text = String(problem || "");
    let m;
    if (/Field required|at least 1 character/i.test(text)) return ENTER[last] || "fill it in";
    if ((m = /at most (\d+) characters?/i.exec(text))) return `use at most ${m[1]} characters`;
    if ((m = /at least (\d+) items?/i.exec(text))) return Number(m[1]) === 1 ? (ENTER[last] || "add at least one") : `add at least ${m[1]}`;
    if ((m = /at most (\d+) items?/i.exec(text))) return `at most ${m[1]} are allowed`;
    if (/datetime|timezone|date/i.test(text)) return "enter a date and time";
    if ((m = /greater than or equal to ([\d.e-]+)/i.exec(text))) return `must be at least ${m[1]}`;
    if ((m = /greater than ([\d.e-]+)/i.exec(text))) return `must be more than ${m[1]}`;
    if ((m = /less than or equal to ([\d.e-]+)/i.exec(text))) return `must be at most ${m[1]}`;
    if ((m = /less than ([\d.e-]+)/i.exec(text))) return `must be less than ${m[1]}`;
    if (/valid (number|integer|float)|must be a number/i.test(text)) return "enter a number";
    if (/should match pattern/i.test(text)) return "holds characters that are not allowed here";
    if (/Extra inputs/i.test(text)) return "is not expected here";
    if ((m = /^Input should be (.*)$/i.exec(text))) return `choose ${m[1].replace(/'/g, "")}`;
    if ((m = /^(?:Value|Assertion) error, (.*)$/is.exec(text))) return m[1];
    return text.charAt(0).toLowerCase() + text.slice(1);
  }

  // ----- messages beside the fields -----

  function problemBox(form, name) {
    const field = form.elements[name];
    const el = field && (field.length !== undefined && !field.tagName ? field[0] : field);
    if (!el) return null;
    const id = `${el.id || name}-problem`;
    let box = document.getElementById(id);
    if (!box) {
      box = document.createElement("p");
      box.className = "field-problem";
      box.id = id;
      (el.closest("label") || el).insertAdjacentElement("afterend", box);
      el.setAttribute("aria-describedby", [el.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
    }
    return { el, box };
  }

  function markField(form, name, message) {
    const found = problemBox(form, name);
    if (!found) return false;
    const { el, box } = found;
    box.textContent = box.hidden || !box.textContent ? message : `${box.textContent} ${message}`;
    box.hidden = false;
    el.setAttribute("aria-invalid", "true");
    return true;
  }

  function clearMarks(form) {
    for (const box of form.querySelectorAll(".field-problem")) { box.textContent = ""; box.hidden = true; }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  // The API's 422 problems as one sentence, each also shown beside its field when the form has it.
  function explain(problems, form) {
    if (form) clearMarks(form);
    const lines = problems.map((p) => {
      const path = String(p.field || p.photo || "");
      const named = p.field ? fieldName(path) : path;
      const line = p.field ? `${named}: ${plainProblem(path, p.problem)}` : `${named}: ${p.problem}`;
      if (form && p.field) markField(form, path.split(".").filter((x) => !["body", "query", "path"].includes(x))[0], line);
      return line;
    });
    return lines.length ? lines.join("; ") : "the request is not valid";
  }

  // ----- checks before sending -----

  function hours(ms) { return `${(ms / 3600000).toLocaleString("en-GB", { maximumFractionDigits: 2 })} h`; }

  function check(form) {
    clearMarks(form);
    const problems = [];
    for (const end of form.querySelectorAll("[data-after]")) {
      const start = form.elements[end.dataset.after];
      if (!start || !start.value || !end.value) continue;
      const from = utcMs(start.value, start.dataset.zone), to = utcMs(end.value, end.dataset.zone);
      const label = fieldName(end.name), startLabel = fieldName(start.name).toLowerCase();
      let message = "";
      if (to <= from) message = `${label}: must be after the ${startLabel === "starts" ? "start" : startLabel}`;
      else if (end.dataset.maxHours && to - from > Number(end.dataset.maxHours) * 3600000) {
        message = `${label}: the window is ${hours(to - from)} long; at most ${hours(Number(end.dataset.maxHours) * 3600000)} may be authorised`;
      }
      if (message) { markField(form, end.name, message); problems.push(message); }
    }
    if (problems.length) {
      const box = form.querySelector("[data-error]");
      if (box) { box.textContent = problems.join("; "); box.hidden = false; }
      const first = form.querySelector("[aria-invalid=true]");
      if (first) first.focus();
    }
    return problems.length === 0;
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-checks]");
    if (form && !check(form)) { event.preventDefault(); event.stopImmediatePropagation(); }
  }, true);

  window.OpenLFRForms = { utcIso, explain, check, fieldName, plainProblem };
})();
