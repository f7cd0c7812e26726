// "Elenco invii email": rows still in flight (queued, sending, deferred) refresh by themselves.
// Polls only while some row on the page is in flight; stops when none is. No inline scripts
// (the CSP allows only 'self').
(() => {
  const INTERVAL_MS = 3000;
  const container = document.querySelector("[data-refresh-url]");

  // Picking a date means a custom period.
  const period = document.getElementById("id_period");
  for (const id of ["id_date_from", "id_date_to"]) {
    const input = document.getElementById(id);
    if (input && period) {
      input.addEventListener("change", () => { if (input.value) period.value = "custom"; });
    }
  }

  // On a phone the filters wait behind «Filtri»; the counters above the table stay quick
  // filters. Without JavaScript (or on a wide screen) the filters show as they are.
  const filtersToggle = document.querySelector("[data-filters-toggle]");
  const filters = document.getElementById("report-filters");
  if (filtersToggle && filters) {
    const narrow = window.matchMedia("(max-width: 700px)");
    const setOpen = (open) => {
      filtersToggle.setAttribute("aria-expanded", open ? "true" : "false");
      filters.classList.toggle("is-collapsed", !open);
    };
    filtersToggle.hidden = false;
    setOpen(!narrow.matches);
    filtersToggle.addEventListener("click", () => {
      setOpen(filtersToggle.getAttribute("aria-expanded") !== "true");
    });
    narrow.addEventListener("change", (event) => { if (!event.matches) setOpen(true); });
  }

  // Bulk retry: nothing to confirm until a failed row is selected.
  const bulk = document.getElementById("bulk-retry");
  if (bulk) {
    const confirm = bulk.querySelector("[data-bulk-confirm]");
    const summary = confirm.querySelector("summary");
    const hint = bulk.querySelector("[data-bulk-hint]");
    const count = bulk.querySelector("[data-bulk-count]");
    const chosen = () =>
      document.querySelectorAll('input[name="ids"][form="bulk-retry"]:checked').length;
    const refresh = () => {
      const n = chosen();
      summary.setAttribute("aria-disabled", n ? "false" : "true");
      summary.classList.toggle("is-disabled", n === 0);
      if (n === 0) confirm.open = false;
      if (hint) hint.hidden = n > 0;
      if (count) count.textContent = String(n);
    };
    summary.addEventListener("click", (event) => {
      if (summary.getAttribute("aria-disabled") === "true") event.preventDefault();
    });
    document.addEventListener("change", (event) => {
      if (event.target.matches('input[name="ids"]')) refresh();
    });
    window.addEventListener("pageshow", refresh);
    refresh();
  }

  if (!container) return;
  const url = container.dataset.refreshUrl;
  const reloadOnChange = container.dataset.refreshMode === "reload";

  const inFlight = () => Array.from(container.querySelectorAll("[data-delivery][data-in-flight]"));

  const schedule = () => {
    if (inFlight().length) window.setTimeout(tick, INTERVAL_MS);
  };

  async function tick() {
    const rows = inFlight();
    if (!rows.length) return;
    const params = new URLSearchParams();
    for (const row of rows) params.append("r", `${row.dataset.delivery}:${row.dataset.version}`);
    if (container.dataset.next) params.append("next", container.dataset.next);
    try {
      const response = await fetch(`${url}?${params}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const data = await response.json();
        if (reloadOnChange && data.rows.length) {
          window.location.reload();
          return;
        }
        if (data.counters_html) {
          const counters = document.querySelector(".counters");
          const template = document.createElement("template");
          template.innerHTML = data.counters_html.trim();
          if (counters && template.content.firstElementChild) {
            counters.replaceWith(template.content.firstElementChild);
          }
        }
        for (const item of data.rows) {
          const old = container.querySelector(`[data-delivery="${item.id}"]`);
          if (!old) continue;
          const template = document.createElement("template");
          template.innerHTML = item.html.trim();
          const fresh = template.content.firstElementChild;
          if (fresh) {
            fresh.classList.add("just-updated");
            old.replaceWith(fresh);
          }
        }
      }
    } catch (error) {
      // A network hiccup: the next tick tries again.
    }
    schedule();
  }

  schedule();
})();
