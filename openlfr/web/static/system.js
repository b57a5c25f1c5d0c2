// The system page: "Verify the chain now" asks the API's check of the whole audit chain (GET /api/audit/verify,
// itself audited), then reloads the page, which shows that check as the last verification on record.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("verify-audit");
  if (!button) return;
  const section = button.closest("section");
  const result = document.getElementById("verify-result");
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.textContent = "checking every entry…";
    try {
      const response = await send("/api/audit/verify", "GET");
      if (response.ok) { window.location.reload(); return; }
      result.textContent = "";
      showError(section, await describe(response));
    } catch (err) {
      result.textContent = "";
      showError(section, "the server could not be reached: " + err);
    } finally {
      button.disabled = false;
    }
  });
});
