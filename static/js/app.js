// Small behaviours shared by every page. No inline scripts: the CSP allows only 'self'.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit")) {
    target.form.submit();
  }
});

// Confirmation boxes (<details class="confirm"> with a .confirm-box): "Annulla" closes the box
// and gives the focus back to the button that opened it; so does Escape. A box without its
// own "Annulla" gets one (its text comes from <body data-text-cancel>).
(() => {
  function close(details) {
    details.open = false;
    const summary = details.querySelector("summary");
    if (summary) summary.focus();
  }

  document.addEventListener("click", (event) => {
    const cancel = event.target instanceof Element && event.target.closest("[data-confirm-cancel]");
    const details = cancel && cancel.closest("details");
    if (details) close(details);
  });

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !(event.target instanceof Element)) return;
    const details = event.target.closest("details.confirm[open]");
    if (details) close(details);
  });

  document.querySelectorAll("details.confirm .confirm-box").forEach((box) => {
    if (box.querySelector("[data-confirm-cancel]")) return;
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.dataset.confirmCancel = "";
    cancel.textContent = document.body.dataset.textCancel || "Annulla";
    const submit = box.querySelector("button[type=submit], button:not([type])");
    if (submit) submit.after(" ", cancel);
    else box.append(cancel);
  });
})();
