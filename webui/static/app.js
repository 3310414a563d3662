// tvindex web UI: query autocompletion, form niceties, search by picture (the player: player.js).
// Plain JavaScript, no build step, no inline scripts (the CSP forbids them): pages pass data
// in data-* attributes.
"use strict";

(function () {
  // ---- search form ------------------------------------------------------------------------
  const form = document.getElementById("search-form");
  if (form) {
    // Empty filters stay out of the URL, so a result page's address reads like the query.
    form.addEventListener("submit", function () {
      for (const el of form.querySelectorAll("select, input[type=date]")) {
        if (!el.value) el.disabled = true;
      }
      window.setTimeout(function () {
        for (const el of form.querySelectorAll(":disabled")) el.disabled = false;
      }, 0);
    });
    for (const el of form.querySelectorAll("input[name=level], select[name=programme]")) {
      el.addEventListener("change", function () {
        if (form.q.value.trim() || form.programme.value) form.requestSubmit();
      });
    }
  }

  // ---- search by picture ------------------------------------------------------------------
  // The server checks everything again; this only saves uploading a file that is too large.
  const upload = document.getElementById("upload-form");
  if (upload) {
    const file = upload.querySelector("input[type=file]");
    const note = document.getElementById("upload-note");
    const button = upload.querySelector("button[type=submit]");
    const maxBytes = parseInt(upload.dataset.maxBytes || "0", 10);
    const defaultNote = note ? note.textContent : "";
    file.addEventListener("change", function () {
      const chosen = file.files && file.files[0];
      const tooLarge = chosen && maxBytes > 0 && chosen.size > maxBytes;
      button.disabled = Boolean(tooLarge);
      if (note) {
        note.classList.toggle("is-error", Boolean(tooLarge));
        note.textContent = tooLarge
          ? "This file is " + (chosen.size / 1048576).toFixed(1) + " MB: over the limit. " + defaultNote
          : defaultNote;
      }
    });
    upload.addEventListener("submit", function () {
      button.disabled = true;
      button.textContent = "Searching…";
    });
    // Back from the results page: the form is usable again.
    window.addEventListener("pageshow", function () {
      button.disabled = false;
      button.textContent = "Find similar shots";
    });
  }

  // ---- autocompletion ---------------------------------------------------------------------
  const input = document.getElementById("q");
  const list = document.getElementById("suggestions");
  if (input && list) {
    let items = [];
    let active = -1;
    let timer = 0;
    let seq = 0;

    function tokenBounds() {
      const caret = input.selectionStart ?? input.value.length;
      const before = input.value.slice(0, caret);
      let start = before.search(/\S*$/);
      // Inside an open quote the token starts at the field before it: object:"traffic li
      const quotes = (before.match(/"/g) || []).length;
      if (quotes % 2 === 1) {
        const q = before.lastIndexOf('"');
        start = before.slice(0, q).search(/\S*$/);
      }
      let end = caret;
      while (end < input.value.length && !/\s/.test(input.value[end])) end++;
      return [start, end];
    }

    function close() {
      list.hidden = true;
      list.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      items = [];
      active = -1;
    }

    function choose(i) {
      const item = items[i];
      if (!item) return;
      const [start, end] = tokenBounds();
      const rest = input.value.slice(end).replace(/^\s*/, "");
      input.value = input.value.slice(0, start) + item.text + " " + rest;
      const caret = start + item.text.length + 1;
      input.setSelectionRange(caret, caret);
      close();
      input.focus();
    }

    function highlight(i) {
      active = i;
      list.querySelectorAll("li").forEach(function (li, j) {
        li.setAttribute("aria-selected", j === i ? "true" : "false");
        if (j === i) li.scrollIntoView({ block: "nearest" });
      });
      // The option the arrows reached, for screen readers (focus stays in the box).
      if (i >= 0) input.setAttribute("aria-activedescendant", "suggestion-" + i);
      else input.removeAttribute("aria-activedescendant");
    }

    function render(data) {
      items = data.items || [];
      list.replaceChildren();
      if (!items.length) return close();
      items.forEach(function (item, i) {
        const li = document.createElement("li");
        li.setAttribute("role", "option");
        li.id = "suggestion-" + i;
        const text = document.createElement("span");
        text.className = "s-text";
        text.textContent = item.text;
        const meta = document.createElement("span");
        meta.className = "s-meta";
        meta.textContent = item.kind === "label"
          ? item.label_set + (item.episodes ? " · " + item.episodes + " ep." : "")
          : item.kind;
        li.append(text, meta);
        li.addEventListener("mousedown", function (ev) { ev.preventDefault(); choose(i); });
        list.append(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      highlight(-1);
    }

    function fetchSuggestions() {
      const [start, end] = tokenBounds();
      const token = input.value.slice(start, end);
      if (!token || token === "-" || /^or$/i.test(token)) return close();
      const mine = ++seq;
      const url = input.dataset.suggestUrl + "?limit=8&q=" + encodeURIComponent(token);
      fetch(url, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { items: [] }; })
        .then(function (data) { if (mine === seq) render(data); })
        .catch(close);
    }

    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(fetchSuggestions, 90);
    });
    input.addEventListener("keydown", function (ev) {
      if (list.hidden) return;
      if (ev.key === "ArrowDown") { ev.preventDefault(); highlight((active + 1) % items.length); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); highlight((active - 1 + items.length) % items.length); }
      else if ((ev.key === "Enter" || ev.key === "Tab") && active >= 0) { ev.preventDefault(); choose(active); }
      else if (ev.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { window.setTimeout(close, 120); });
  }
})();
