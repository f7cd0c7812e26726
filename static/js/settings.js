// "Impostazioni email": each card saves on its own, without reloading the page, so unsaved
// edits in the other cards survive; the card then says what happened in its role="status"
// area; leaving the page with unsaved edits asks first. Without JavaScript the forms post and
// redirect as usual. No inline scripts (the CSP allows only 'self').
//
// A card is a <section data-card>; its forms carry data-card-form. After a save the server's
// page is fetched and the saved card is replaced by its new version (plus the cards named in
// data-refreshes, unless they hold unsaved edits). Scripts of a card re-initialise on the
// "settings:card-updated" event.
(() => {
  "use strict";
  const texts = document.getElementById("settings-texts");
  if (!texts) return;

  const baseline = new WeakMap();
  const tracked = new WeakSet();

  function snapshot(form) {
    const entries = [];
    for (const [name, value] of new FormData(form)) {
      if (name !== "csrfmiddlewaretoken") entries.push([name, typeof value === "string" ? value : value.name]);
    }
    return JSON.stringify(entries);
  }

  const isDirty = (form) => form.hasAttribute("data-unsaved") || baseline.get(form) !== snapshot(form);
  const cardForms = (root) => Array.from(root.querySelectorAll("form[data-card-form]"));
  const cardDirty = (card) => cardForms(card).some(isDirty);

  function updateNote(form) {
    const dirty = isDirty(form);
    const note = form.querySelector("[data-unsaved-note]");
    if (note) note.hidden = !dirty;
    // Elsewhere on the page, what depends on this form being saved (e.g. "the check uses the
    // saved configuration, not these fields").
    if (form.id) {
      document.querySelectorAll(`[data-shown-when-dirty="${CSS.escape(form.id)}"]`).forEach((element) => {
        element.hidden = !dirty;
      });
    }
  }

  function track(form) {
    if (tracked.has(form)) return;
    tracked.add(form);
    baseline.set(form, snapshot(form));
    // Only forms with something to edit get the "Modifiche non salvate" note.
    const editable = form.querySelector("input:not([type=hidden]), select, textarea");
    const buttons = form.querySelectorAll("button[type=submit]");
    const button = buttons[buttons.length - 1];
    if (editable && button) {
      const note = document.createElement("span");
      note.className = "unsaved-note";
      note.dataset.unsavedNote = "";
      note.textContent = texts.dataset.unsaved;
      note.hidden = true;
      button.after(note);
    }
    form.addEventListener("input", () => updateNote(form));
    form.addEventListener("change", () => updateNote(form));
    // Values filled in by a script rather than the user (a provider guessed on load).
    form.addEventListener("settings:rebaseline", () => {
      baseline.set(form, snapshot(form));
      updateNote(form);
    });
    updateNote(form);
  }

  function setBusy(form, busy) {
    form.dataset.busy = busy ? "true" : "";
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      button.disabled = busy;
      button.classList.toggle("is-busy", busy);
    });
  }

  function announce(status, nodes) {
    // Emptied first and filled a moment later, so that the region is in the page, empty,
    // when its text arrives (and the same message twice is announced twice).
    status.replaceChildren();
    window.setTimeout(() => status.replaceChildren(...nodes), 100);
  }

  function showFailure(card) {
    const status = card.querySelector("[data-card-status]");
    if (!status) return;
    const message = document.createElement("p");
    message.className = "message message-error";
    message.textContent = texts.dataset.failed;
    announce(status, [message]);
  }

  // Replace the content of ``card`` with ``fresh`` (the same card from the server's page).
  // The card's status area is the same element before and after, moved into place, so that
  // assistive technology keeps following it as a live region.
  function replaceCard(card, fresh) {
    const status = card.querySelector("[data-card-status]");
    const freshStatus = fresh.querySelector("[data-card-status]");
    const messages = freshStatus ? Array.from(freshStatus.childNodes) : [];
    const kept = Array.from(card.querySelectorAll("[data-keep-value]")).map((el) => [el.id, el.value]);
    if (status && freshStatus) {
      status.replaceChildren();
      freshStatus.replaceWith(status);
    }
    card.replaceChildren(...Array.from(fresh.childNodes));
    if (status && freshStatus) announce(status, messages);
    document.dispatchEvent(new CustomEvent("settings:card-updated", { detail: { card } }));
    cardForms(card).forEach(track);
    for (const [id, value] of kept) {
      const element = id && card.querySelector(`#${CSS.escape(id)}`);
      if (element && element.value !== value && Array.from(element.options || []).some((o) => o.value === value)) {
        element.value = value;
        element.dispatchEvent(new Event("change", { bubbles: true }));
      }
    }
  }

  function placeFocus(card, submitterId) {
    const invalid = card.querySelector("[aria-invalid='true']");
    if (invalid) {
      if (document.activeElement !== invalid) invalid.focus();
      return;
    }
    const same = submitterId && document.getElementById(submitterId);
    if (same && card.contains(same)) {
      same.focus();
      return;
    }
    const heading = card.querySelector("h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }

  async function save(form, submitter) {
    const card = form.closest("[data-card]");
    if (!card) return;
    const action = (submitter && submitter.getAttribute("formaction")) || form.action;
    const body = submitter ? new FormData(form, submitter) : new FormData(form);
    const refreshes = (form.dataset.refreshes || "").split(/\s+/).filter(Boolean);
    const submitterId = submitter ? submitter.id : "";
    setBusy(form, true);
    let doc;
    try {
      const response = await fetch(action, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { Accept: "text/html", "X-Requested-With": "fetch" },
      });
      doc = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (_error) {
      doc = null;
    }
    const fresh = doc && doc.getElementById(card.id);
    if (!fresh) {
      setBusy(form, false);
      showFailure(card);
      return;
    }
    replaceCard(card, fresh);
    for (const id of refreshes) {
      const other = document.getElementById(id);
      const otherFresh = doc.getElementById(id);
      if (other && otherFresh && other !== card && !cardDirty(other)) replaceCard(other, otherFresh);
    }
    // The checklist says what is set: it follows every save.
    const checklist = document.getElementById("settings-checklist");
    const freshChecklist = doc.getElementById("settings-checklist");
    if (checklist && freshChecklist) {
      checklist.replaceWith(freshChecklist);
      document.dispatchEvent(new CustomEvent("settings:checklist-updated"));
    }
    const banners = document.getElementById("page-banners");
    const freshBanners = doc.getElementById("page-banners");
    if (banners && freshBanners) banners.replaceChildren(...Array.from(freshBanners.childNodes));
    placeFocus(card, submitterId);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-card-form]")) return;
    if (!form.closest("[data-card]") || !window.fetch || !window.DOMParser) return;
    event.preventDefault();
    if (form.dataset.busy === "true") return;
    save(form, event.submitter);
  });

  window.addEventListener("beforeunload", (event) => {
    if (cardForms(document).some(isDirty)) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  cardForms(document).forEach(track);

  // Copy buttons (the sender domain's DNS records): shown only where they can work.
  const revealCopyButtons = (root) => {
    root.querySelectorAll("button[data-copy]").forEach((button) => { button.hidden = false; });
  };
  revealCopyButtons(document);
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (_error) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.append(area);
      area.select();
      copied = document.execCommand("copy");
      area.remove();
    }
    if (!copied) return;
    const label = button.textContent;
    button.textContent = button.dataset.copied;
    button.classList.add("is-copied");
    window.setTimeout(() => {
      button.textContent = label;
      button.classList.remove("is-copied");
    }, 2000);
  });

  // A record just added shows up within minutes: an open page whose domain is not verified
  // checks again once by itself, as if «Verifica dominio» had been pressed (then daily, on the
  // server).
  let recheckTimer = 0;
  let rechecked = false;
  const scheduleRecheck = () => {
    window.clearTimeout(recheckTimer);
    const form = document.querySelector("form[data-recheck-after]");
    if (!form || rechecked) return;
    recheckTimer = window.setTimeout(() => {
      const current = document.querySelector("form[data-recheck-after]");
      if (!current || rechecked) return;
      rechecked = true;
      current.requestSubmit();
    }, Number(form.dataset.recheckAfter) * 1000);
  };
  scheduleRecheck();
  document.addEventListener("settings:card-updated", (event) => {
    revealCopyButtons(document);
    // A check just pressed by hand counts from now.
    const card = event.detail && event.detail.card;
    if (card && card.id === "sender-domain") scheduleRecheck();
  });

  // Steps: the page that holds them all shows one at a time — the one of the card the address
  // points to (#smtp, #passo-casella), else the first; the checklist's links switch steps.
  // Without JavaScript every step shows, and each link opens the step's own page.
  const steps = Array.from(document.querySelectorAll(".settings-step[data-step]"));
  if (steps.length > 1) {
    const stepOf = (hash) => {
      if (!hash || hash.length < 2) return "";
      const target = document.getElementById(decodeURIComponent(hash.slice(1)));
      const step = target && target.closest(".settings-step[data-step]");
      return step ? step.dataset.step : "";
    };
    let current = "";
    const show = (slug) => {
      current = slug;
      for (const step of steps) step.hidden = step.dataset.step !== slug;
      document.querySelectorAll("[data-step-link]").forEach((link) => {
        if (link.dataset.stepLink === slug) link.setAttribute("aria-current", "step");
        else link.removeAttribute("aria-current");
      });
    };
    show(stepOf(window.location.hash) || steps[0].dataset.step);
    document.addEventListener("click", (event) => {
      const link = event.target.closest("[data-step-link]");
      if (link) {
        event.preventDefault();
        show(link.dataset.stepLink);
        window.history.replaceState(null, "", `#passo-${link.dataset.stepLink}`);
        const heading = document.querySelector(`#passo-${CSS.escape(link.dataset.stepLink)} h2`);
        if (heading) {
          heading.setAttribute("tabindex", "-1");
          heading.focus();
        }
        return;
      }
      // A link to a card of another step (e.g. "configura la casella").
      const anchor = event.target.closest('a[href^="#"]');
      const slug = anchor && stepOf(anchor.getAttribute("href"));
      if (slug && slug !== current) show(slug);
    });
    window.addEventListener("hashchange", () => {
      const slug = stepOf(window.location.hash);
      if (slug) show(slug);
    });
    document.addEventListener("settings:checklist-updated", () => show(current));
  }
})();
