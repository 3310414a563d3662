// tvindex player: an episode is a time range [start, end) of its media file. The player keeps
// to that range: a timeline slider from the episode's start to its end (mouse and keyboard),
// clamped seeking, a stop within one frame of the end, editors' keys (J/K/L, space, , . frame
// step, i/o in/out marks, ? help), and SMPTE timecodes of the episode's clock.
// Without JavaScript the <video> still starts at the shot: its src carries a media fragment
// (#t=start,end) and it keeps the browser's controls.
// Plain JavaScript, no build step, no inline scripts (the CSP forbids them).
"use strict";

(function () {
  const video = document.getElementById("player");
  if (!video) return;
  const d = video.dataset;
  const epStart = parseFloat(d.episodeStart || "0");
  const epEnd = parseFloat(d.episodeEnd || "0");
  const startAt = parseFloat(d.start || String(epStart));
  const rateNum = parseInt(d.rateNum || "25", 10);
  const rateDen = parseInt(d.rateDen || "1", 10);
  const fps = rateNum / rateDen;
  const frame = 1 / fps;
  const hasClock = d.clock === "1";
  const nominal = parseInt(d.nominalFps || String(Math.round(fps)), 10);
  const drop = parseInt(d.drop || "0", 10);
  const startFrames = parseInt(d.startFrames || "0", 10);
  const bounded = epEnd > epStart;

  // ---- timecodes (tvindex.core.timecode, in JavaScript) ---------------------------------
  function fileFrames(t) {
    return Math.floor((t + 0.0005) * rateNum / rateDen + 1e-6);
  }
  const originFrames = fileFrames(epStart);

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function label(frames) {
    const day = 24 * 3600 * nominal - drop * (1440 - 144);
    let n = ((frames % day) + day) % day;
    if (drop) {
      const perMin = nominal * 60 - drop;
      const per10 = perMin * 10 + drop;
      const tens = Math.floor(n / per10);
      const rem = n % per10;
      n += drop * 9 * tens;
      if (rem >= drop) n += drop * Math.floor((rem - drop) / perMin);
    }
    const ff = n % nominal;
    const secs = Math.floor(n / nominal);
    return pad(Math.floor(secs / 3600)) + ":" + pad(Math.floor(secs / 60) % 60) + ":" +
      pad(secs % 60) + (drop ? ";" : ":") + pad(ff);
  }

  function clock(t) {
    const s = Math.max(0, t);
    const m = Math.floor(s / 60);
    const rest = (s - 60 * m).toFixed(1);
    return m + ":" + (rest.length < 4 ? "0" : "") + rest;
  }

  // The label of the frame showing at file time t: the episode's timecode, or m:ss.s
  // (episode-relative) when the episode has no clock.
  function timecode(t) {
    if (!hasClock) return clock(t - epStart);
    return label(startFrames + Math.max(0, fileFrames(t) - originFrames));
  }

  // ---- the range -------------------------------------------------------------------------
  // The last moment inside the episode: half a frame before its end, so the frame shown is
  // the episode's last and the time stays within one frame of the end.
  const lastT = bounded ? Math.max(epStart, epEnd - frame / 2) : Infinity;

  function clamp(t) {
    if (!bounded) return Math.max(0, t);
    return Math.min(lastT, Math.max(epStart, t));
  }

  function seek(t) {
    video.currentTime = clamp(t);
  }

  // ---- controls: the browser's own scrub over the whole file, so ours replace them -------
  const bar = document.getElementById("player-controls");
  const slider = document.getElementById("scrubber");
  const fill = document.getElementById("scrub-fill");
  const display = document.getElementById("player-time");
  const rateOut = document.getElementById("player-rate");
  const playButton = document.getElementById("play-toggle");
  const marksOut = document.getElementById("player-marks");
  const help = document.getElementById("keys-help");
  const playhead = document.getElementById("playhead");
  const timeline = document.getElementById("timeline");
  video.controls = false;
  if (bar) bar.hidden = false;
  if (slider) slider.hidden = false;

  let reverse = 0; // playback speed backwards (J), 0: not reversing
  let reverseLast = 0;
  let marks = { in: null, out: null };

  function stopReverse() { reverse = 0; }

  function showRate() {
    if (!rateOut) return;
    const r = reverse ? -reverse : (video.paused ? 0 : video.playbackRate);
    rateOut.textContent = r === 0 ? "paused" : (r > 0 ? "▶ " : "◀ ") + Math.abs(r) + "×";
  }

  function render() {
    const t = video.currentTime;
    const span = bounded ? epEnd - epStart : (video.duration || 1);
    const frac = Math.min(1, Math.max(0, (t - epStart) / span));
    if (fill) fill.style.width = (100 * frac).toFixed(3) + "%";
    const tc = timecode(t);
    if (display) display.textContent = tc + " / " + timecode(bounded ? lastT : video.duration || 0);
    if (slider) {
      slider.setAttribute("aria-valuenow", (t - epStart).toFixed(3));
      slider.setAttribute("aria-valuetext", tc);
    }
    if (playhead && timeline) {
      playhead.hidden = false;
      playhead.style.left = "calc(var(--label-width) + (100% - var(--label-width)) * " +
        frac.toFixed(4) + ")";
    }
    if (playButton) {
      const playing = !video.paused || reverse > 0;
      playButton.textContent = playing ? "Pause" : "Play";
      playButton.setAttribute("aria-pressed", playing ? "true" : "false");
    }
    showRate();
    markCurrentShot(t);
  }

  function markCurrentShot(t) {
    let current = null;
    document.querySelectorAll(".shot-card[data-seek]").forEach(function (el) {
      if (parseFloat(el.dataset.seek) <= t + 0.01) current = el.dataset.index;
    });
    document.querySelectorAll("[data-index]").forEach(function (el) {
      el.classList.toggle("is-current", el.dataset.index === current);
    });
    // The side panel's "shots like this one" follows the current shot.
    const similar = document.getElementById("current-similar");
    const card = current !== null ? document.getElementById("shot-" + current) : null;
    const action = card && card.parentElement.querySelector(".similar-action");
    if (similar && action) {
      similar.href = action.getAttribute("href");
      similar.textContent = "Shots like shot " + current;
    }
  }

  // ---- the stop at the episode's end -----------------------------------------------------
  function atEnd() {
    video.pause();
    stopReverse();
    if (video.currentTime > lastT || epEnd - video.currentTime > frame) {
      video.currentTime = lastT;
    }
    video.dataset.ended = "1";
  }

  function check(mediaTime) {
    // Stop when the next frame would be past the end (one frame early at 1x: the frame
    // presented now is the last, or nearly so; the correction seeks to the very last).
    if (!bounded || video.paused) return;
    const ahead = frame * Math.max(1, video.playbackRate);
    if (mediaTime + ahead >= epEnd) atEnd();
  }

  if (bounded) {
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      const onFrame = function (_now, meta) {
        check(meta.mediaTime);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    } else {
      const tick = function () {
        check(video.currentTime);
        window.requestAnimationFrame(tick);
      };
      window.requestAnimationFrame(tick);
    }
    video.addEventListener("timeupdate", function () { check(video.currentTime); });
    video.addEventListener("seeking", function () {
      const t = video.currentTime;
      if (t < epStart - 1e-3 || t > lastT + 1e-3) video.currentTime = clamp(t);
    });
    video.addEventListener("pause", function () {
      if (video.currentTime > lastT) video.currentTime = lastT;
    });
  }
  video.addEventListener("play", function () {
    delete video.dataset.ended;
    stopReverse();
    if (bounded && video.currentTime >= lastT - frame / 2) video.currentTime = epStart;
  });
  for (const ev of ["timeupdate", "seeked", "play", "pause", "ratechange", "loadedmetadata"]) {
    video.addEventListener(ev, render);
  }

  // ---- the start -------------------------------------------------------------------------
  let positioned = false;
  function seekToStart() {
    if (positioned) return;
    positioned = true;
    const target = clamp(startAt);
    if (Math.abs(video.currentTime - target) < 0.01) {
      video.dataset.ready = "1";
      render();
      return;
    }
    video.addEventListener("seeked", function once() {
      video.removeEventListener("seeked", once);
      video.dataset.ready = "1";
    });
    video.currentTime = target;
  }
  if (video.readyState >= 1) seekToStart();
  else video.addEventListener("loadedmetadata", seekToStart);

  video.addEventListener("error", function () {
    const note = document.getElementById("player-error");
    if (note) note.hidden = false;
  });

  // ---- transport ---------------------------------------------------------------------------
  function play(rate) {
    stopReverse();
    video.playbackRate = rate;
    if (video.paused) video.play().catch(function () { /* refused: the frame stays */ });
    render();
  }

  function pause() {
    stopReverse();
    video.pause();
    render();
  }

  function toggle() {
    if (video.paused && !reverse) play(1);
    else pause();
  }

  // Backwards: the browser plays forwards only, so a position moving back at the chosen
  // speed is shown by seeking to it whenever the previous seek is done.
  let reversePos = 0;
  function reverseTick(now) {
    if (!reverse) { render(); return; }
    const dt = reverseLast ? (now - reverseLast) / 1000 : 0;
    reverseLast = now;
    reversePos -= dt * reverse;
    if (reversePos <= epStart) {
      video.currentTime = epStart;
      stopReverse();
      render();
      return;
    }
    if (!video.seeking) video.currentTime = reversePos;
    render();
    window.requestAnimationFrame(reverseTick);
  }

  // J: slower when playing forward faster than 1x, else backwards (1x, 2x, 4x, 8x).
  function keyJ() {
    if (!video.paused && video.playbackRate > 1) { play(video.playbackRate / 2); return; }
    if (!video.paused) video.pause();
    const was = reverse;
    reverse = was ? Math.min(8, was * 2) : 1;
    if (!was) {
      reverseLast = 0;
      reversePos = video.currentTime;
      window.requestAnimationFrame(reverseTick);
    }
    render();
  }

  // L: forwards; again: faster (2x, 4x, 8x); after J: slower backwards first.
  function keyL() {
    if (reverse > 1) { reverse /= 2; render(); return; }
    if (reverse) { stopReverse(); pause(); return; }
    if (video.paused) play(1);
    else play(Math.min(8, video.playbackRate * 2));
  }

  function step(n) {
    pause();
    // Land in the middle of the target frame: no rounding at a frame's edge.
    const f = fileFrames(video.currentTime) + n;
    seek((f + 0.5) / fps);
  }

  function mark(which) {
    marks[which] = clamp(video.currentTime);
    if (marks.in !== null && marks.out !== null && marks.out < marks.in) {
      marks = which === "in" ? { in: marks.in, out: null } : { in: null, out: marks.out };
    }
    if (marksOut) {
      marksOut.hidden = false;
      const inTc = marks.in === null ? "–" : timecode(marks.in);
      const outTc = marks.out === null ? "–" : timecode(marks.out);
      marksOut.textContent = "In " + inTc + " · Out " + outTc;
      marksOut.dataset.in = marks.in === null ? "" : marks.in.toFixed(3);
      marksOut.dataset.out = marks.out === null ? "" : marks.out.toFixed(3);
    }
  }

  function showHelp() {
    if (help && typeof help.showModal === "function" && !help.open) help.showModal();
  }

  const KEYS = {
    j: keyJ, k: pause, l: keyL, " ": toggle,
    ",": function () { step(-1); }, ".": function () { step(1); },
    i: function () { mark("in"); }, o: function () { mark("out"); },
    "?": showHelp,
  };

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const el = ev.target;
    if (el && el.closest && el.closest("input, textarea, select, [contenteditable], dialog")) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    // Space on a link or button activates it; elsewhere it plays.
    if (key === " " && el && el.closest && el.closest("a, button, summary, [role=slider]") &&
        el !== slider) return;
    const fn = KEYS[key];
    if (!fn) return;
    ev.preventDefault();
    fn();
  });

  if (playButton) playButton.addEventListener("click", toggle);
  const back = document.getElementById("frame-back");
  const fwd = document.getElementById("frame-forward");
  if (back) back.addEventListener("click", function () { step(-1); });
  if (fwd) fwd.addEventListener("click", function () { step(1); });
  const helpButton = document.getElementById("keys-help-open");
  if (helpButton) helpButton.addEventListener("click", showHelp);
  const helpClose = document.getElementById("keys-help-close");
  if (helpClose) helpClose.addEventListener("click", function () { help.close(); });

  // ---- the slider: pointer and keyboard ----------------------------------------------------
  if (slider) {
    const total = bounded ? epEnd - epStart : 0;
    slider.setAttribute("aria-valuemin", "0");
    if (bounded) slider.setAttribute("aria-valuemax", total.toFixed(3));
    function fromPointer(ev) {
      const box = slider.getBoundingClientRect();
      const frac = Math.min(1, Math.max(0, (ev.clientX - box.left) / box.width));
      const span = bounded ? total : (video.duration || 0);
      seek(epStart + frac * span);
    }
    let dragging = false;
    slider.addEventListener("pointerdown", function (ev) {
      dragging = true;
      slider.setPointerCapture(ev.pointerId);
      slider.focus();
      fromPointer(ev);
    });
    slider.addEventListener("pointermove", function (ev) { if (dragging) fromPointer(ev); });
    slider.addEventListener("pointerup", function () { dragging = false; });
    slider.addEventListener("pointercancel", function () { dragging = false; });
    slider.addEventListener("keydown", function (ev) {
      const big = bounded ? Math.max(10, total / 10) : 10;
      const moves = {
        ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: big, PageDown: -big,
      };
      if (ev.key in moves) {
        ev.preventDefault();
        // Shift+arrow: one frame.
        if (ev.shiftKey && Math.abs(moves[ev.key]) === 1) { step(moves[ev.key]); return; }
        pause();
        seek(video.currentTime + moves[ev.key]);
      } else if (ev.key === "Home") {
        ev.preventDefault(); pause(); seek(epStart);
      } else if (ev.key === "End") {
        ev.preventDefault(); pause(); seek(bounded ? lastT : video.duration || 0);
      }
    });
  }

  // ---- a track for each searched label (the page's ?q=, passed on by the results) ----------
  // Where in this episode each positive label term of the query is present: the search API
  // answers with the shots where it is (its presence rule), in this programme.
  const timelineBox = document.getElementById("timeline");
  const query = new URLSearchParams(window.location.search).get("q") || "";
  const svgNS = "http://www.w3.org/2000/svg";

  function labelTerms(text) {
    const terms = [];
    const re = /(^|\s)([-~]?)([a-z][\w-]*):("[^"]+"|[^\s"]+)/gi;
    let m;
    while ((m = re.exec(text)) !== null) {
      const field = m[3].toLowerCase();
      if (m[2] || ["programme", "genre", "after", "before", "said", "screen", "subtitle", "text"]
        .includes(field)) continue;
      const term = m[3] + ":" + m[4];
      if (!terms.includes(term) && terms.length < 6) terms.push(term);
    }
    return terms;
  }

  function drawTrack(term, shots) {
    const span = bounded ? epEnd - epStart : 1;
    const row = document.createElement("div");
    row.className = "timeline-row timeline-searched";
    row.dataset.term = term;
    const name = document.createElement("span");
    name.className = "track-label";
    name.textContent = term;
    name.title = "searched: " + term + " (" + shots.length + " shot" + (shots.length === 1 ? "" : "s") + ")";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("class", "track track-searched");
    svg.setAttribute("viewBox", "0 0 1000 12");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", term + " present in " + shots.length + " shot" +
      (shots.length === 1 ? "" : "s") + (shots.length ? ": " + shots.map(function (h) {
        return timecode(h.start_s);
      }).join(", ") : ""));
    for (const h of shots) {
      const r = document.createElementNS(svgNS, "rect");
      r.setAttribute("x", (1000 * (h.start_s - epStart) / span).toFixed(2));
      r.setAttribute("y", "0");
      r.setAttribute("width", Math.max(1000 * (h.end_s - h.start_s) / span - 1, 1).toFixed(2));
      r.setAttribute("height", "12");
      r.setAttribute("fill-opacity", (0.35 + 0.65 * Math.min(1, h.score)).toFixed(2));
      r.dataset.seek = String(h.start_s);
      const title = document.createElementNS(svgNS, "title");
      title.textContent = term + " " + h.score.toFixed(2) + " · " + timecode(h.start_s);
      r.append(title);
      svg.append(r);
    }
    row.append(name, svg);
    const shotsRow = timelineBox.querySelector(".timeline-shots");
    shotsRow.after(row);
  }

  function loadTrack(term) {
    const programme = timelineBox.dataset.programmeTitle || "";
    const scoped = programme && !programme.includes('"')
      ? term + ' programme:"' + programme + '"' : term;
    const found = [];
    function page(url, left) {
      return fetch(url, { headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { hits: [] }; })
        .then(function (body) {
          for (const h of body.hits || []) {
            if (h.episode_id === timelineBox.dataset.episode && h.start_s !== null) found.push(h);
          }
          if (body.next && left > 0) return page(body.next, left - 1);
          return null;
        });
    }
    return page(timelineBox.dataset.searchUrl + "?level=shot&limit=100&q=" +
      encodeURIComponent(scoped), 20)
      .then(function () {
        found.sort(function (a, b) { return a.start_s - b.start_s; });
        return found;
      })
      .catch(function () { return null; /* no track: the rest of the page works */ });
  }

  if (timelineBox && timelineBox.dataset.searchUrl && query) {
    const terms = labelTerms(query);
    Promise.all(terms.map(loadTrack)).then(function (results) {
      // each row goes right under the shots: the last first, so they read in query order
      for (let i = terms.length - 1; i >= 0; i--) {
        if (results[i]) drawTrack(terms[i], results[i]);
      }
      timelineBox.dataset.tracks = String(terms.length);
    });
  }

  // ---- the timeline's shots and tracks, the shot list: seek without leaving the page -------
  document.addEventListener("click", function (ev) {
    const target = ev.target.closest("[data-seek]");
    if (!target || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    seek(parseFloat(target.dataset.seek));
    if (target.dataset.index !== undefined) {
      const params = new URLSearchParams(window.location.search);
      params.set("shot", target.dataset.index);
      history.replaceState(null, "", "?" + params.toString());
    }
    play(1);
  });
  render();
})();
