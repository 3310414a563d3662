// The player page's transcript panel (issue 17; templates/_transcript.html): the line being
// spoken follows playback, a click on a line plays from it, and the search box keeps only the
// lines containing the words typed (accents and case ignored), marking them.
(function () {
  "use strict";
  const panel = document.getElementById("transcript");
  const list = document.getElementById("transcript-lines");
  if (!panel || !list) return;
  const video = document.getElementById("player");
  const lines = Array.prototype.slice.call(list.querySelectorAll(".transcript-line"));
  const search = document.getElementById("transcript-search");
  const count = document.getElementById("transcript-count");
  const toggles = Array.prototype.slice.call(panel.querySelectorAll(".transcript-source-toggle"));
  const starts = lines.map(function (li) { return parseFloat(li.dataset.t); });
  const texts = lines.map(function (li) { return li.querySelector(".transcript-text").textContent; });
  let active = -1;

  function fold(s) {
    return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  // The line at time t: the last shown line started by t (after a line ends it stays
  // current through the silence that follows, which is where the transcript stands).
  function lineAt(t) {
    let found = -1;
    for (let i = 0; i < lines.length; i++) {
      if (starts[i] > t + 0.05) break;
      if (!lines[i].hidden) found = i;
    }
    return found;
  }

  function scrollIntoList(li) {
    const top = li.offsetTop - list.offsetTop;
    if (top < list.scrollTop || top + li.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }

  function setActive(i) {
    if (i === active) return;
    if (active >= 0) {
      lines[active].classList.remove("is-active");
      lines[active].removeAttribute("aria-current");
    }
    active = i;
    if (i >= 0) {
      lines[i].classList.add("is-active");
      lines[i].setAttribute("aria-current", "true");
      scrollIntoList(lines[i]);
    }
  }

  function render(i, words) {
    const span = lines[i].querySelector(".transcript-text");
    const text = texts[i];
    if (!words.length) { span.textContent = text; return false; }
    // Fold character by character so positions in the folded text map back to the original.
    let folded = "";
    const pos = [];
    for (let k = 0; k < text.length; k++) {
      const f = fold(text[k]);
      for (let j = 0; j < f.length; j++) { folded += f[j]; pos.push(k); }
    }
    const spans = [];
    words.forEach(function (w) {
      let at = folded.indexOf(w);
      while (at >= 0) {
        spans.push([pos[at], pos[at + w.length - 1] + 1]);
        at = folded.indexOf(w, at + w.length);
      }
    });
    if (!words.every(function (w) { return folded.indexOf(w) >= 0; })) {
      span.textContent = text;
      return false;
    }
    spans.sort(function (a, b) { return a[0] - b[0]; });
    span.textContent = "";
    let last = 0;
    spans.forEach(function (s) {
      if (s[0] < last) return;
      span.appendChild(document.createTextNode(text.slice(last, s[0])));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(s[0], s[1]);
      span.appendChild(mark);
      last = s[1];
    });
    span.appendChild(document.createTextNode(text.slice(last)));
    return true;
  }

  function applyFilter() {
    const words = fold(search ? search.value : "").split(/[^\p{L}\p{N}]+/u).filter(Boolean);
    const shown = toggles.filter(function (t) { return t.checked; })
      .map(function (t) { return t.value; });
    let n = 0;
    lines.forEach(function (li, i) {
      const sourceOk = !toggles.length || shown.indexOf(li.dataset.source) >= 0;
      const match = render(i, words);
      li.hidden = !sourceOk || (words.length > 0 && !match);
      if (!li.hidden) n++;
    });
    if (count) {
      count.textContent = words.length || n !== lines.length
        ? n + " of " + lines.length + " lines" : lines.length + (lines.length === 1 ? " line" : " lines");
    }
    if (video) setActive(lineAt(video.currentTime));
  }

  list.addEventListener("click", function (ev) {
    const li = ev.target.closest(".transcript-line");
    if (!li) return;
    ev.preventDefault();
    const t = parseFloat(li.dataset.t);
    setActive(lines.indexOf(li));
    if (!video) return;
    video.currentTime = t;
    video.play().catch(function () { /* autoplay refused: the frame is shown anyway */ });
  });
  if (search) search.addEventListener("input", applyFilter);
  toggles.forEach(function (t) { t.addEventListener("change", applyFilter); });
  if (video) {
    video.addEventListener("timeupdate", function () { setActive(lineAt(video.currentTime)); });
    video.addEventListener("seeked", function () { setActive(lineAt(video.currentTime)); });
  }
  panel.dataset.ready = "1";
})();
