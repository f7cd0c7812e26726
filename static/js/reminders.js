// Payment reminder rules: keyword insertion into the editor last written in, and the live
// preview of each level for the chosen invoice. No inline scripts (the CSP allows only 'self').
(() => {
  "use strict";
  const form = document.getElementById("reminders-form");
  if (!form) return;
  const editors = Array.from(form.querySelectorAll(".reminder-editor"));
  let target = editors.find((editor) => editor.name.endsWith("-body_template")) || editors[0];
  let caret = null;

  for (const editor of editors) {
    const remember = () => {
      target = editor;
      caret = [editor.selectionStart, editor.selectionEnd];
    };
    editor.addEventListener("input", remember);
    editor.addEventListener("keyup", remember);
    editor.addEventListener("pointerup", remember);
  }

  for (const button of form.querySelectorAll("button.keyword")) {
    button.addEventListener("click", () => {
      if (!target) return;
      const text = "${" + button.dataset.keyword + "}";
      const [start, end] = caret && target === document.activeElement ? caret : caret || [target.value.length, target.value.length];
      target.focus();
      target.setRangeText(text, start, end, "end");
      caret = [start + text.length, start + text.length];
      target.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  const select = document.getElementById("reminder-preview-invoice");
  const timers = new Map();

  async function refresh(section) {
    if (!select) return;
    const level = section.dataset.level;
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.elements.namedItem("csrfmiddlewaretoken").value);
    data.append("invoice", select.value);
    data.append("level", level);
    for (const field of section.querySelectorAll("input, textarea")) {
      if (field.type === "checkbox") {
        if (field.checked) data.append(field.name, "on");
      } else {
        data.append(field.name, field.value);
      }
    }
    let response;
    try {
      response = await fetch(form.dataset.previewUrl, { method: "POST", body: data, credentials: "same-origin" });
    } catch (_error) {
      return;
    }
    if (!response.ok) return;
    const result = await response.json();
    const put = (selector, value) => {
      const node = section.querySelector(selector);
      if (node) node.textContent = value;
    };
    put("[data-preview-subject]", result.subject);
    put("[data-preview-text]", result.text);
    put("[data-preview-version]", result.version);
    const warnings = section.querySelector("[data-preview-warnings]");
    if (warnings) {
      const list = warnings.querySelector("ul");
      list.replaceChildren(...result.warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }));
      warnings.hidden = result.warnings.length === 0;
    }
    for (const list of section.querySelectorAll("[data-errors-for]")) {
      const messages = result.errors[list.dataset.errorsFor] || [];
      list.replaceChildren(...messages.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }));
      list.hidden = messages.length === 0;
    }
  }

  for (const section of form.querySelectorAll(".reminder-level")) {
    section.addEventListener("input", () => {
      clearTimeout(timers.get(section));
      timers.set(section, setTimeout(() => refresh(section), 300));
    });
  }
  if (select) {
    select.addEventListener("change", () => {
      for (const section of form.querySelectorAll(".reminder-level")) refresh(section);
    });
  }
})();
