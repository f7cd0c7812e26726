// Cover-mail editor: keyword panel insertion, restore confirmation, live preview and live
// validation (errors show under the editor they belong to). Loaded by the "Impostazioni
// email" page; initialised again when settings.js replaces the card after a save.
// No inline scripts (the CSP allows only 'self').
(() => {
  "use strict";

  function init() {
    const form = document.getElementById("covermail-form");
    if (!form) return;

    const subject = form.elements.namedItem("subject_template");
    const body = form.elements.namedItem("body_template");
    const editors = [subject, body].filter(Boolean);
    const targetHint = document.getElementById("keyword-target");

    // --- keyword panel --------------------------------------------------------------------
    // A keyword goes where the user was writing: the editor they last typed in (or moved the
    // caret in, with the keyboard or the pointer), at the caret they left there. Focus alone
    // does not count: tabbing from the subject to the panel passes through the body.

    let target = { editor: body || subject, start: null, end: null };
    const FOCUS_KEYS = new Set(["Tab", "Shift", "Control", "Alt", "Meta", "Escape"]);

    function remember(editor) {
      const changed = target.editor !== editor;
      target = { editor, start: editor.selectionStart, end: editor.selectionEnd };
      if (changed && targetHint) {
        targetHint.textContent = editor === subject ? targetHint.dataset.subject : targetHint.dataset.body;
      }
    }

    for (const editor of editors) {
      editor.addEventListener("input", () => remember(editor));
      editor.addEventListener("keyup", (event) => {
        if (!FOCUS_KEYS.has(event.key)) remember(editor);
      });
      editor.addEventListener("pointerup", () => remember(editor));
    }

    // After a refused save, take the user to the first editor with an error.
    const invalid = form.querySelector("[aria-invalid='true']");
    if (invalid) {
      invalid.focus();
      if (editors.includes(invalid)) remember(invalid);
    }

    function insertAtCaret(editor, start, end, text) {
      editor.focus();
      editor.setSelectionRange(start, end);
      // execCommand keeps the browser's undo history; setRangeText is the fallback.
      let inserted = false;
      try {
        inserted = document.execCommand("insertText", false, text);
      } catch (_error) {
        inserted = false;
      }
      if (!inserted || editor.value.slice(start, start + text.length) !== text) {
        editor.setRangeText(text, start, end, "end");
        editor.dispatchEvent(new Event("input", { bubbles: true }));
      }
      remember(editor);
    }

    document.querySelectorAll(".keyword-panel button[data-keyword]").forEach((button) => {
      // Keep the caret in the editor when the button is clicked with the mouse.
      button.addEventListener("mousedown", (event) => event.preventDefault());
      // Enter and Space on a <button> fire "click" too, so this covers the keyboard.
      button.addEventListener("click", () => {
        const text = "${" + button.dataset.keyword + "}";
        // A click while an editor still has the focus (mouse): its live caret.
        if (editors.includes(document.activeElement)) remember(document.activeElement);
        const editor = target.editor;
        const length = editor.value.length;
        const start = Math.min(target.start ?? length, length);
        const end = Math.min(target.end ?? start, length);
        insertAtCaret(editor, start, end, text);
      });
    });

    // --- restore default ------------------------------------------------------------------

    form.querySelectorAll("button[data-confirm]").forEach((button) => {
      button.addEventListener("click", (event) => {
        if (!window.confirm(button.dataset.confirm)) event.preventDefault();
      });
    });

    // --- live preview ---------------------------------------------------------------------

    const select = document.getElementById("covermail-preview-invoice");
    const previewUrl = form.dataset.previewUrl;
    if (!select || !previewUrl) return;

    const out = {
      status: document.getElementById("covermail-preview-status"),
      warnings: document.getElementById("covermail-preview-warnings"),
      subject: document.getElementById("covermail-preview-subject"),
      text: document.getElementById("covermail-preview-text"),
      html: document.getElementById("covermail-preview-html"),
    };
    const csrfToken = form.elements.namedItem("csrfmiddlewaretoken").value;
    let timer = null;
    let sequence = 0;
    let controller = null;

    function fillList(container, items) {
      const list = container.querySelector("ul");
      list.replaceChildren(
        ...items.map((item) => {
          const li = document.createElement("li");
          li.textContent = item;
          return li;
        }),
      );
      container.hidden = items.length === 0;
    }

    // Live validation: the errors of each editor replace the list under it.
    function showErrors(errors) {
      for (const editor of editors) {
        const list = document.getElementById(`${editor.id}_error`);
        if (!list) continue;
        const messages = errors[editor.name] || [];
        list.replaceChildren(
          ...messages.map((message) => {
            const li = document.createElement("li");
            li.textContent = message;
            return li;
          }),
        );
        list.hidden = messages.length === 0;
        if (messages.length) {
          editor.setAttribute("aria-invalid", "true");
          editor.setAttribute("aria-describedby", list.id);
        } else {
          editor.removeAttribute("aria-invalid");
          editor.removeAttribute("aria-describedby");
        }
      }
    }

    // The link to the patient card of the previewed invoice, when its data is incomplete.
    function showPatientFix(fix) {
      const paragraph = document.getElementById("covermail-preview-fix");
      const link = document.getElementById("covermail-preview-fix-link");
      if (!paragraph || !link) return;
      paragraph.hidden = !fix;
      if (fix) {
        link.href = fix.url;
        link.textContent = fix.label;
      }
    }

    async function refresh() {
      const mine = ++sequence;
      if (controller) controller.abort();
      controller = new AbortController();
      const data = new FormData(form);
      data.set("invoice", select.value);
      out.status.textContent = out.status.dataset.updating;
      try {
        const response = await fetch(previewUrl, {
          method: "POST",
          body: data,
          headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
          credentials: "same-origin",
          signal: controller.signal,
        });
        if (response.status === 429) {
          // Too many previews in a minute: the server says, in Italian, when to retry.
          const refused = await response.json().catch(() => ({}));
          if (mine !== sequence) return;
          out.status.textContent = refused.error || out.status.dataset.failed;
          form.dataset.previewState = "error";
          return;
        }
        if (!response.ok) throw new Error(String(response.status));
        const result = await response.json();
        if (mine !== sequence) return;
        out.subject.textContent = result.subject;
        out.text.textContent = result.text;
        out.html.srcdoc = result.html;
        fillList(out.warnings, result.warnings);
        showPatientFix(result.patient_fix);
        showErrors(result.errors);
        out.status.textContent = "";
        form.dataset.previewState = "ready";
      } catch (error) {
        if (error.name === "AbortError" || mine !== sequence) return;
        out.status.textContent = out.status.dataset.failed;
        form.dataset.previewState = "error";
      }
    }

    function schedule() {
      form.dataset.previewState = "pending";
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    }

    for (const editor of editors) editor.addEventListener("input", schedule);
    select.addEventListener("change", () => {
      clearTimeout(timer);
      form.dataset.previewState = "pending";
      refresh();
    });
    form.dataset.previewState = "ready";
  }

  init();
  document.addEventListener("settings:card-updated", (event) => {
    if (event.detail.card.id === "covermail") init();
  });
})();
