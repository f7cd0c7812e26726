// "Verifica connessione" and "Invia una mail di prova" (templates/emailsettings/_smtp_actions.html).
// The check runs in a worker: start it with a POST, then poll the status URL until it is
// done, and show the Italian advice with the raw reply under "dettagli tecnici".
// Text from the server is set with textContent only.
(() => {
  function init() {
    const root = document.getElementById("mailbox-check");
    if (!root) return;

    const POLL_MS = 1000;
    const SLOW_AFTER_MS = 25000;
    const GIVE_UP_AFTER_MS = 180000;
    const text = root.dataset;
    const progress = document.getElementById("mailbox-progress");
    const progressText = document.getElementById("mailbox-progress-text");
    const result = document.getElementById("mailbox-result");
    const buttons = root.querySelectorAll("button");
    let polling = null;
    let startedAt = 0;

    const byId = (id) => document.getElementById(id);

    function setBusy(busy) {
      buttons.forEach((button) => {
        button.disabled = busy;
        button.classList.toggle("is-busy", busy);
      });
    }

    // How long the check has been waiting: the server's count (right after a reload too),
    // else the time since the button was pressed.
    function waited(data) {
      if (typeof data.elapsed_seconds === "number") return data.elapsed_seconds * 1000;
      return startedAt ? Date.now() - startedAt : 0;
    }

    function showProgress(data) {
      result.hidden = true;
      progress.hidden = false;
      let label = data.state === "queued" ? text.textQueued : data.kind === "test" ? text.textTest : text.textVerify;
      if (data.state === "running" && data.phase_label) label += ` (${data.phase_label})…`;
      else if (data.state === "running") label += "…";
      const slow = waited(data) > SLOW_AFTER_MS;
      if (slow) label += ` ${text.textSlow}`;
      progress.classList.toggle("is-slow", slow);
      progressText.textContent = label;
    }

    // The state of the mailbox after a check: the badge, the last success, and the notes
    // elsewhere on the page that the check has made out of date.
    function showStatus(data) {
      if (!data.status) return;
      const badge = document.getElementById("smtp-status-badge");
      if (badge) {
        badge.textContent = data.status_label;
        badge.className = `badge badge-${data.status_tone || "warn"}`;
        badge.dataset.status = data.status;
      }
      const lastVerified = document.getElementById("smtp-last-verified");
      if (lastVerified && data.last_verified_display) {
        const time = lastVerified.querySelector("time");
        if (time) time.textContent = data.last_verified_display;
        lastVerified.hidden = false;
      }
      if (data.status !== "broken") {
        for (const id of ["mailbox-banner", "channel-mailbox-problem"]) {
          const stale = document.getElementById(id);
          if (stale) stale.hidden = true;
        }
      }
    }

    function fact(list, name, value) {
      if (value === null || value === undefined || value === "") return;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      list.append(dt, dd);
    }

    function showMessage(message, ok) {
      showResult({ ok, title: message, text: "", steps: [], details: null, at_display: "" });
    }

    function showResult(outcome) {
      progress.hidden = true;
      result.hidden = false;
      result.classList.toggle("is-ok", Boolean(outcome.ok));
      result.classList.toggle("is-error", !outcome.ok);
      byId("mailbox-result-title").textContent = outcome.title || "";
      byId("mailbox-result-at").textContent = outcome.at_display ? `(${outcome.at_display})` : "";
      byId("mailbox-result-text").textContent = outcome.text || "";
      const steps = byId("mailbox-result-steps");
      steps.replaceChildren(
        ...(outcome.steps || []).map((step) => {
          const item = document.createElement("li");
          item.textContent = step;
          return item;
        }),
      );
      steps.hidden = !(outcome.steps || []).length;
      byId("mailbox-result-smartmail").hidden = !outcome.suggest_smart_mail;
      const details = byId("mailbox-result-details");
      const facts = byId("mailbox-result-facts");
      facts.replaceChildren();
      if (outcome.details) {
        fact(facts, text.textPhase, outcome.details.phase);
        fact(facts, text.textCode, [outcome.details.code, outcome.details.enhanced].filter(Boolean).join(" "));
        fact(facts, text.textClass, outcome.details.error_class);
        byId("mailbox-result-reply").textContent = outcome.details.reply || "";
        details.hidden = false;
      } else {
        details.hidden = true;
      }
      // The server-rendered last error above is now out of date.
      const stale = document.getElementById("smtp-last-error");
      if (stale) stale.hidden = true;
    }

    function render(data) {
      if (data.state === "queued" || data.state === "running") {
        showProgress(data);
        return false;
      }
      if (data.state === "unavailable") {
        showMessage(data.message, false);
        return true;
      }
      if (data.state === "done" && data.result) showResult(data.result);
      if (data.state === "done") showStatus(data);
      return true;
    }

    function stop() {
      if (polling) clearTimeout(polling);
      polling = null;
      setBusy(false);
    }

    async function poll() {
      // The card was replaced after a save: its new version follows the check itself.
      if (!root.isConnected) return;
      try {
        const response = await fetch(text.statusUrl, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(String(response.status));
        const data = await response.json();
        if (render(data)) {
          stop();
          return;
        }
      } catch (error) {
        // A lost request is retried on the next tick.
      }
      if (Date.now() - startedAt > GIVE_UP_AFTER_MS) {
        stop();
        return;
      }
      polling = setTimeout(poll, POLL_MS);
    }

    function follow() {
      setBusy(true);
      if (!startedAt) startedAt = Date.now();
      if (polling) clearTimeout(polling);
      polling = setTimeout(poll, POLL_MS);
    }

    root.querySelectorAll("form[data-check]").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        setBusy(true);
        startedAt = Date.now();
        showProgress({ state: "queued", kind: form.dataset.check });
        let response;
        try {
          response = await fetch(form.action, {
            method: "POST",
            body: new FormData(form),
            headers: { Accept: "application/json" },
            credentials: "same-origin",
          });
        } catch (error) {
          showMessage(text.textFailed, false);
          setBusy(false);
          return;
        }
        const data = await response.json().catch(() => ({}));
        if (!response.ok) {
          showMessage(data.error || text.textFailed, false);
          setBusy(false);
          return;
        }
        if (render(data)) {
          setBusy(false);
          return;
        }
        follow();
      });
    });

    // A check started before a reload is still followed.
    fetch(text.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => {
        if (data && (data.state === "queued" || data.state === "running")) {
          showProgress(data);
          follow();
        }
      })
      .catch(() => {});
  }

  init();
  document.addEventListener("settings:card-updated", (event) => {
    if (event.detail.card.id === "smtp") init();
  });
})();
