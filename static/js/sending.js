// Sending invoices: selection on the invoice list, single submit on the confirmation page,
// and the progress page that polls its JSON endpoint until nothing is in flight.
// Loaded as a file (the CSP allows only 'self' scripts).
(() => {
  "use strict";

  const POLL_MS = 2000;
  const MAX_POLL_MS = 30000;

  // --- invoice list: "select all" and the bulk button ---------------------------------
  const sendForm = document.getElementById("invoice-send-form");
  if (sendForm) {
    const boxes = () => Array.from(sendForm.querySelectorAll("input[data-invoice-checkbox]"));
    const selectAll = sendForm.querySelector("input[data-select-all]");
    const bulkButton = sendForm.querySelector("[data-bulk-send]");
    const counter = sendForm.querySelector("[data-selected-count]");
    const template = counter ? counter.textContent : "";

    const refresh = () => {
      const all = boxes();
      const chosen = all.filter((box) => box.checked).length;
      if (bulkButton) bulkButton.disabled = chosen === 0;
      if (selectAll) {
        selectAll.checked = chosen > 0 && chosen === all.length;
        selectAll.indeterminate = chosen > 0 && chosen < all.length;
      }
      if (counter) {
        counter.textContent = chosen === 0 ? template
          : chosen === 1 ? counter.dataset.labelOne
            : counter.dataset.labelMany.replace("{n}", String(chosen));
      }
    };

    sendForm.addEventListener("change", (event) => {
      if (event.target === selectAll) {
        boxes().forEach((box) => { box.checked = selectAll.checked; });
      }
      refresh();
    });
    // The browser may restore checkboxes on "back": start from what is shown.
    window.addEventListener("pageshow", refresh);
    refresh();
  }

  // --- confirmation: one submit only (the server is idempotent anyway) --------------------
  document.querySelectorAll("form.send-form").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.submitted === "true") {
        event.preventDefault();
        return;
      }
      form.dataset.submitted = "true";
      const button = form.querySelector("[data-submit-once]");
      if (button) {
        button.setAttribute("aria-disabled", "true");
        button.classList.add("is-busy");
      }
    });
  });

  // --- confirmation: the date shows only with "Invia il…" ------------------------------------
  // (without JavaScript it always shows, and a date typed with "Invia subito" is refused with
  // the reason).
  document.querySelectorAll("form.send-form input[name=invia_il]").forEach((input) => {
    const later = input.form.querySelector("input[name=quando][value=programma]");
    const field = input.closest("[data-send-at]");
    if (!later || !field) return;
    const sync = () => { field.hidden = !later.checked; };
    input.form.querySelectorAll("input[name=quando]").forEach((radio) => {
      radio.addEventListener("change", () => {
        sync();
        if (later.checked) input.focus();
      });
    });
    // A refused date stays visible with its error until another choice is made.
    if (!field.classList.contains("field-error")) sync();
  });

  // --- progress page --------------------------------------------------------------------
  const progress = document.getElementById("send-progress");
  if (!progress) return;

  const url = progress.dataset.url;
  let delay = POLL_MS;

  const render = (data) => {
    for (const key of ["total", "emails_note", "in_flight", "sent", "failed", "attention"]) {
      const cell = progress.querySelector(`[data-count="${key}"]`);
      if (cell) cell.textContent = String(data[key]);
    }
    for (const row of data.deliveries) {
      const badge = document.querySelector(`tr[data-delivery="${row.id}"] [data-status]`);
      if (!badge) continue;
      badge.dataset.status = row.status;
      badge.textContent = row.label;
      badge.title = row.meaning;
      badge.className = `badge badge-${row.tone}`;
      const error = badge.parentElement.querySelector("[data-error]");
      if (error) error.textContent = row.error || "";
    }
    progress.dataset.done = data.done ? "true" : "false";
    progress.querySelector('[data-state="running"]').hidden = data.done;
    const doneText = progress.querySelector('[data-state="done"]');
    doneText.hidden = !data.done;
    doneText.textContent = data.done_text;
    const paused = progress.querySelector("[data-paused]");
    if (paused) paused.hidden = !data.paused;
    const heldLink = progress.querySelector("[data-held-link]");
    if (heldLink) heldLink.hidden = !(data.done && data.held > 0);
  };

  const poll = async () => {
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      render(data);
      if (data.done) return;
      delay = POLL_MS;
    } catch (error) {
      // A network hiccup or a restart: keep trying, more slowly.
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
    window.setTimeout(poll, delay);
  };

  if (progress.dataset.done !== "true") window.setTimeout(poll, POLL_MS);
})();
