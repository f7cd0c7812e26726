// "Configurazione SMTP personale": fill the server fields from the chosen provider, show
// what the provider needs before the first try, and propose the provider from the address.
// Data comes from a json_script element (the CSP allows no inline scripts). Initialised
// again when settings.js replaces the card after a save.
(() => {
  "use strict";
  function init() {
    const form = document.getElementById("smtp-form");
    const dataElement = document.getElementById("smtp-presets-data");
    if (!form || !dataElement) return;

    const data = JSON.parse(dataElement.textContent);
    const presets = data.presets;
    const text = data.messages;
    const field = (name) => document.getElementById(`id_smtp_${name}`);
    const email = field("email");
    const preset = field("preset");
    const host = field("host");
    const port = field("port");
    const security = field("security");
    const username = field("username");
    const notes = document.getElementById("smtp-preset-notes");
    const notesText = document.getElementById("smtp-preset-notes-text");
    const notesHelp = document.getElementById("smtp-preset-help");
    const suggestion = document.getElementById("smtp-suggestion");
    const suggestionText = document.getElementById("smtp-suggestion-text");
    const suggestionApply = document.getElementById("smtp-suggestion-apply");

    // Once the user picks a provider, auto-detection only suggests; it no longer changes it.
    let providerTouched = form.dataset.providerTouched === "true";
    let lastEmail = email.value.trim();
    let detected = null;

    const format = (template, values) =>
      template.replace(/%\((\w+)\)s/g, (_match, name) => String(values[name] ?? ""));

    function showNotes(key) {
      const entry = presets[key];
      // An unusable provider's note already says why and to use Smart Mail.
      const message = entry ? entry.login_notes : "";
      notesText.textContent = message;
      notes.hidden = !message;
      notesHelp.hidden = !(entry && entry.help_url);
      if (entry && entry.help_url) notesHelp.href = entry.help_url;
      // A provider refusing passwords is usable through its "Accedi con …" button.
      const viaOauth = Boolean(data.oauth && data.oauth[key]);
      notes.classList.toggle("smtp-notes-unusable", Boolean(entry && !entry.usable && !viaOauth));
      showOauth(key);
    }

    // "Accedi con Google / Microsoft": shown for the provider's presets, connecting the one
    // chosen (its own form, outside this one, carries it).
    function showOauth(key) {
      document.querySelectorAll("[data-oauth-presets]").forEach((choice) => {
        const served = choice.dataset.oauthPresets.split(" ");
        choice.hidden = !served.includes(key);
        const button = choice.querySelector("button[form]");
        const target = button && document.getElementById(button.getAttribute("form"));
        const input = target && target.querySelector("[data-oauth-preset]");
        if (input && served.includes(key)) input.value = key;
      });
    }

    function fillUsername() {
      const entry = presets[preset.value];
      const address = email.value.trim();
      if (!entry || entry.username_rule !== "email") return;
      if (!username.value.trim() || username.value.trim() === lastEmail) {
        username.value = address;
      }
    }

    function applyPreset(key, values) {
      const entry = presets[key];
      if (!entry) return;
      preset.value = key;
      const settings = values || entry;
      // "Altro provider" keeps what the user typed unless a guess brings values.
      if (key !== data.custom || values) {
        host.value = settings.host || "";
        port.value = settings.port || "";
        security.value = settings.security || "starttls";
      }
      fillUsername();
      showNotes(key);
    }

    preset.addEventListener("change", () => {
      providerTouched = true;
      applyPreset(preset.value);
      suggestion.hidden = true;
    });

    // The two security modes have their own standard ports.
    security.addEventListener("change", () => {
      if (security.value === "ssl" && port.value === "587") port.value = "465";
      if (security.value === "starttls" && port.value === "465") port.value = "587";
    });

    function showSuggestion(detection) {
      detected = detection;
      const values = { provider: detection.label, host: detection.host, port: detection.port };
      suggestionText.textContent = format(detection.guessed ? text.guess : text.suggest, values);
      suggestion.classList.toggle("smtp-suggestion-guess", detection.guessed);
      suggestion.hidden = false;
      suggestionApply.hidden = detection.preset_key === preset.value && !detection.guessed;
    }

    function useDetection(detection) {
      const values = detection.guessed ? detection : null;
      applyPreset(detection.preset_key, values);
    }

    suggestionApply.addEventListener("click", () => {
      if (!detected) return;
      providerTouched = true;
      useDetection(detected);
      suggestionApply.hidden = true;
      suggestionText.textContent = format(text.applied, { provider: detected.label });
    });

    let timer = null;
    let controller = null;
    async function detect() {
      const address = email.value.trim();
      if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(address)) return;
      if (controller) controller.abort();
      controller = new AbortController();
      const url = `${form.dataset.autodetectUrl}?email=${encodeURIComponent(address)}`;
      let detection;
      try {
        const response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          signal: controller.signal,
        });
        if (!response.ok) return;
        detection = await response.json();
      } catch (error) {
        return; // aborted by a newer request, or offline: no suggestion
      }
      if (address !== email.value.trim()) return;
      if (!providerTouched) {
        useDetection(detection);
      }
      showSuggestion(detection);
      return true;
    }

    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(detect, 500);
    }

    email.addEventListener("input", () => {
      schedule();
    });
    email.addEventListener("blur", () => {
      window.clearTimeout(timer);
      detect();
      fillUsername();
      lastEmail = email.value.trim();
    });
    email.addEventListener("focus", () => {
      lastEmail = email.value.trim();
    });

    showNotes(preset.value);

    // A new mailbox: propose the provider for the address already in the field, as typing
    // it would. What is filled in this way is a proposal, not an unsaved edit.
    if (!providerTouched && email.value.trim()) {
      form.dataset.detection = "pending";
      detect().finally(() => {
        form.dispatchEvent(new CustomEvent("settings:rebaseline"));
        form.dataset.detection = "done";
      });
    }
  }

  init();
  document.addEventListener("settings:card-updated", (event) => {
    if (event.detail.card.id === "smtp") init();
  });
})();
