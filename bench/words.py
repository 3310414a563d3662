"""Words benchmark (issue 17): speech, on-screen text and phrase search on generated media.

Prints one JSON object:
- ``asr``: word error rate per language (en, es, ca) on sentences spoken by espeak-ng, indexed
  through ``tvindex index`` (speech only) as one short programme-like clip per sentence (silence
  around it); keyword recall over the 20 English phrases; the real-time factor the words pass
  reported; and known-item success@1 of ``said:"..."`` phrase queries at episode level.
- ``vad``: real-time factor of the speech source with and without voice-activity detection on
  programme-like audio (sentences with pauses and low noise), median of interleaved rounds.
- ``ocr``: exact-line rate and character error rate of RapidOCR on lower thirds and captions
  rendered with PIL (fonts x sizes >= 24 px x backgrounds on 720p frames), ms per frame, and
  the pre-check's recall on them (frames with text it lets through: edge test and the quick
  detector pass).
- ``demo_screen``: the screen source over the demo catalogue's footage, with and without the
  pre-check: ms per sampled frame, skip rate, frames read; ``demo_frame_parts``: what each
  step costs on demo frames (decoding, edge test, quick detector, full reading).
espeak-ng's voices are robotic (formant synthesis): Whisper hears them worse than people;
the Spanish and Catalan numbers are as measured, not a target. English sentences use American
spelling, as Whisper writes it. The machine may be loaded by
other work: ``loadavg`` is recorded at the start and the end.

Usage: python bench/words.py [--rounds 2] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from words_media import (
    AUDIO_RATE,
    BACKGROUNDS,
    FONTS,
    Utterance,
    lower_third_frame,
    make_clip,
    speak,
)

# (sentence, a phrase query of consecutive words in it)
EN = [
    ("The city council approved the new budget on Monday.", "new budget"),
    ("Heavy rain is expected in the mountains this weekend.", "heavy rain"),
    ("The football team won the final match of the season.", "final match"),
    ("Farmers are worried about the long summer drought.", "summer drought"),
    ("A new hospital will open next year in the north.", "new hospital"),
    ("The museum shows paintings from the twentieth century.", "museum shows paintings"),
    ("Train services were cancelled because of the strike.", "train services"),
    ("Thousands of people walked through the old town.", "old town"),
    ("The president met with teachers and students today.", "teachers and students"),
    ("Fishermen returned to the harbor before the storm.", "harbor before the storm"),
    ("The orchestra played music by a local composer.", "local composer"),
    ("Prices of fruit and vegetables rose again in March.", "fruit and vegetables"),
    ("Firefighters stopped the forest fire near the village.", "forest fire"),
    ("The library will stay open late during the exams.", "library will stay open"),
    ("Scientists found a rare bird on the island.", "rare bird"),
    ("The bridge across the river needs urgent repairs.", "urgent repairs"),
    ("Cyclists crossed the finish line in the rain.", "finish line"),
    ("The airport expects more travelers this summer.", "more travelers"),
    ("Children planted trees in the school garden.", "school garden"),
    ("The mayor opened the new sports hall this morning.", "sports hall"),
]
ES = [
    "El ayuntamiento aprobó el nuevo presupuesto el lunes.",
    "Se esperan fuertes lluvias en la montaña este fin de semana.",
    "El equipo de fútbol ganó el último partido de la temporada.",
    "Los agricultores están preocupados por la sequía.",
    "Miles de personas pasearon por el casco antiguo.",
    "Los bomberos apagaron el incendio cerca del pueblo.",
]
CA = [
    "L'ajuntament va aprovar el nou pressupost dilluns.",
    "S'esperen pluges fortes a la muntanya aquest cap de setmana.",
    "L'equip de futbol va guanyar l'últim partit de la temporada.",
    "Els pagesos estan preocupats per la sequera.",
    "Milers de persones van passejar pel barri vell.",
    "Els bombers van apagar l'incendi a prop del poble.",
]
STOP = {"the", "and", "this", "with", "from", "about", "will", "were", "are", "that", "again",
        "because", "through", "before", "during", "across", "more", "next", "today", "near"}
LINES = ["Núria Puigcercós", "alcaldessa de Girona", "Jordi Vilanova · periodista",
         "Pluja a la Garrotxa", "Elecciones municipales 2027", "María José Ibáñez",
         "Consell Comarcal del Baix Empordà", "Última hora: tall a l'AP-7",
         "Xavier Çaldes i Muñoz", "Debat a Sant Cugat", "Festa Major de Gràcia",
         "Pau Gasol, exjugador", "El temps: 24 °C a Lleida", "Roser Vendrell Font",
         "Entrevista exclusiva"]


def norm_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).casefold().replace("'", " ").replace("’", " ")
    return re.findall(r"\w+", text)


def levenshtein(a: list | str, b: list | str) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    errors = sum(levenshtein(norm_words(r), norm_words(h)) for r, h in zip(refs, hyps, strict=True))
    return round(errors / max(1, sum(len(norm_words(r)) for r in refs)), 4)


def keywords(sentence: str) -> list[str]:
    return [w for w in norm_words(sentence) if len(w) >= 4 and w not in STOP]


def asr_section(work: Path, beam_size: int) -> dict:
    """Index one clip per sentence through the CLI (speech only) and read the store."""
    from search.engine import run_search
    from search.store import open_store
    from tvindex.settings import load_settings

    rows, truth = ["programme,episode_id,media_path,language"], {}
    items = [(f"en{i:02d}", s, "en") for i, (s, _) in enumerate(EN)]
    items += [(f"es{i:02d}", s, "es") for i, s in enumerate(ES)]
    items += [(f"ca{i:02d}", s, "ca") for i, s in enumerate(CA)]
    for eid, sentence, lang in items:
        dur = 1.5 + len(speak(sentence, lang)) / AUDIO_RATE + 2.5
        make_clip(work / f"{eid}.mp4", round(dur, 1), speech=[Utterance(1.5, sentence, lang)],
                  size=(160, 96), fps=2)
        rows.append(f"Bench {lang},{eid},{eid}.mp4,{lang}")
        truth[eid] = (sentence, lang)
    (work / "asr.csv").write_text("\n".join(rows) + "\n")
    data = work / "asr-data"
    env = os.environ | {"TVINDEX__WORDS__ENABLED": "[speech]",
                        "TVINDEX__WORDS__SPEECH__BEAM_SIZE": str(beam_size)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tvindex.cli", "index", str(work / "asr.csv"),
                           "--data-dir", str(data), "--taggers", "tflite-detector", "--json",
                           "--no-progress"], check=False, capture_output=True, text=True, env=env,
                          cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tvindex index failed:\n{proc.stderr[-3000:]}")
    words = json.loads(proc.stdout)["words"]
    settings = load_settings(overrides={"paths.data_dir": str(data)})
    out: dict = {"index_wall_s": round(wall, 1), "speech_cost": words["cost"].get("speech"),
                 "failed": words["failed"]}
    with open_store(settings) as store:
        hyps = {eid: " ".join(s.text for s in store.transcript(eid, "speech")) for eid in truth}
        for lang in ("en", "es", "ca"):
            ids = [e for e in truth if truth[e][1] == lang]
            out[f"wer_{lang}"] = wer([truth[e][0] for e in ids], [hyps[e] for e in ids])
        found = total = 0
        for i, (sentence, _) in enumerate(EN):
            hyp = set(norm_words(hyps[f"en{i:02d}"]))
            kws = keywords(sentence)
            found += sum(1 for k in kws if k in hyp)
            total += len(kws)
        out["keyword_recall_en"] = round(found / total, 4)
        out["keywords"] = total
        ok, misses = 0, []
        for i, (_, phrase) in enumerate(EN):
            page = run_search(store, f'said:"{phrase}"', level="episode", limit=3)
            top = page.hits[0].id if page.hits else None
            ok += top == f"en{i:02d}"
            if top != f"en{i:02d}":
                misses.append({"query": phrase, "top": top, "heard": hyps[f"en{i:02d}"]})
        out["known_item_success_at_1"] = round(ok / len(EN), 4)
        out["known_item_misses"] = misses
        out["examples"] = {e: hyps[e] for e in ("en00", "es00", "ca00")}
    return out


def vad_section(rounds: int, ctx, beam_size: int) -> dict:
    """RTF with and without VAD on one programme-like track (8 sentences, 3 s pauses)."""
    from indexer.words import create_word_extractor
    from tvindex.settings.words import SpeechWordSettings

    rng = np.random.default_rng(0)
    parts = []
    for sentence, _ in EN[:8]:
        parts += [np.zeros(3 * AUDIO_RATE, np.float32), speak(sentence, "en")]
    parts.append(np.zeros(3 * AUDIO_RATE, np.float32))
    audio = np.concatenate(parts)
    audio += rng.normal(0, 0.003, audio.size).astype(np.float32)  # a quiet room, not silence
    seconds = audio.size / AUDIO_RATE
    ex = {vad: create_word_extractor("speech", SpeechWordSettings(
        language="en", vad=vad, beam_size=beam_size), ctx) for vad in (True, False)}
    for e in ex.values():
        e.model()
    times: dict[bool, list[float]] = {True: [], False: []}
    found = {}
    for _ in range(rounds):
        for vad in (True, False):
            t0 = time.perf_counter()
            segs = ex[vad].transcribe(audio, 0.0, "en")
            times[vad].append(time.perf_counter() - t0)
            found[vad] = " ".join(s.text for s in segs)
    refs = " ".join(s for s, _ in EN[:8])
    return {"audio_s": round(seconds, 1), "speech_share": round(
        sum(p.size for p in parts[1::2]) / audio.size, 3),
        "x_real_time_vad": round(seconds / statistics.median(times[True]), 2),
        "x_real_time_no_vad": round(seconds / statistics.median(times[False]), 2),
        "seconds_vad": [round(t, 2) for t in times[True]],
        "seconds_no_vad": [round(t, 2) for t in times[False]],
        "wer_vad": wer([refs], [found[True]]), "wer_no_vad": wer([refs], [found[False]])}


def ocr_section(rounds: int) -> dict:
    from indexer.words.screen import OcrEngine
    from indexer.words.textcheck import has_text_lines
    from tvindex.settings.words import ScreenWordSettings

    engine = OcrEngine(ScreenWordSettings())
    cases, k = [], 0
    for font in FONTS:
        for size in (24, 32, 48):
            for bg in BACKGROUNDS:
                where = "lower" if k % 2 == 0 else "caption"
                cases.append((LINES[k % len(LINES)], font, size, bg, where))
                k += 1
    exact = chars = errors = passed = 0
    per_size: dict[int, list[int]] = {}
    ms: list[float] = []
    misses = []
    for text, font, size, bg, where in cases:
        img = lower_third_frame(text, font, size, bg, where=where)
        passed += has_text_lines(img) and engine.detects_text(img)
        t0 = time.perf_counter()
        got = " ".join(t for t, _ in engine.read(img))
        ms.append(1000 * (time.perf_counter() - t0))
        hit = got == text
        exact += hit
        per_size.setdefault(size, []).append(int(hit))
        errors += levenshtein(got, text)
        chars += len(text)
        if not hit:
            misses.append({"truth": text, "read": got, "font": Path(font).name, "size": size,
                           "background": bg, "where": where})
    return {"frames": len(cases), "text_px": [24, 32, 48], "fonts": [Path(f).name for f in FONTS],
            "exact_line_rate": round(exact / len(cases), 4),
            "exact_by_size": {s: round(sum(v) / len(v), 3) for s, v in per_size.items()},
            "cer": round(errors / chars, 4), "ms_per_720p_frame_median": round(
                statistics.median(ms), 1), "precheck_recall": round(passed / len(cases), 4),
            "misses": misses}


def demo_section() -> dict:
    from indexer.catalogue import load_manifest
    from indexer.words import create_word_extractor
    from tvindex.settings.words import ScreenWordSettings

    cat = load_manifest(ROOT / "demo" / "catalogue.csv")
    out = {}
    for precheck in (True, False):
        ex = create_word_extractor("screen", ScreenWordSettings(precheck=precheck))
        ex.engine()
        lines = sum(len(ex.extract(ep)) for ep in cat.episodes)
        out["precheck" if precheck else "no_precheck"] = ex.cost() | {"segments": lines}
    a, b = out["precheck"], out["no_precheck"]
    out["saving"] = round(1 - a["seconds"] / b["seconds"], 3) if b["seconds"] else None
    return out


def parts_section(rounds: int) -> dict:
    """What one demo frame costs in each step (interleaved rounds, medians): decoding is left
    out (frames decoded first), so the shares show where the pre-check's time goes."""
    from indexer.catalogue import load_manifest
    from indexer.media import Sampler, probe
    from indexer.words.screen import READ_MAX_SIDE, OcrEngine
    from indexer.words.textcheck import has_text_lines
    from tvindex.settings.words import ScreenWordSettings

    cat = load_manifest(ROOT / "demo" / "catalogue.csv")
    sampler = Sampler("interval", 5.0, max_side=READ_MAX_SIDE)
    frames, decode = [], []
    for ep in cat.episodes:
        t0 = time.perf_counter()
        got = list(sampler.frames(ep.media_path, probe(ep.media_path), ep.start_s or 0.0,
                                  ep.end_s))
        decode.append((time.perf_counter() - t0) / max(1, len(got)))
        frames += [f.image for f in got[:2]]
    engine = OcrEngine(ScreenWordSettings())
    steps = {"edges": lambda im: has_text_lines(im), "quick_detector": engine.detects_text,
             "full_read": engine.read}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for im in frames:
                fn(im)
            times[name].append(1000 * (time.perf_counter() - t0) / len(frames))
    return {"frames": len(frames), "ms_decode_per_sampled_frame_median": round(
        1000 * statistics.median(decode), 1)} | {
        f"ms_{k}": round(statistics.median(v), 1) for k, v in times.items()} | {
        "spread_ms": {k: [round(min(v), 1), round(max(v), 1)] for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the VAD timing")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--beam-size", type=int, default=5, help="words.speech.beam_size")
    ap.add_argument("--only", nargs="+", choices=["asr", "vad", "ocr", "demo", "parts"])
    args = ap.parse_args()
    from indexer.taggers.base import RuntimeContext
    from indexer.weights import ModelResolver
    from tvindex.settings import load_settings

    settings = load_settings()
    ctx = RuntimeContext(device="cpu", models=ModelResolver.from_settings(settings))
    want = set(args.only or ["asr", "vad", "ocr"] + ([] if args.skip_demo else ["demo", "parts"]))
    result: dict = {"loadavg_start": os.getloadavg(), "cpus": os.cpu_count(),
                    "beam_size": args.beam_size,
                    "targets": {"wer_en": 0.15, "keyword_recall_en": 0.9,
                                "ocr_exact_line_rate": 0.9, "asr_x_real_time_vad": 5.0,
                                "ocr_s_per_sampled_frame_demo": 0.1}}
    with tempfile.TemporaryDirectory(prefix="words-bench-") as tmp:
        if "asr" in want:
            result["asr"] = asr_section(Path(tmp), args.beam_size)
        if "vad" in want:
            result["vad"] = vad_section(args.rounds, ctx, args.beam_size)
        if "ocr" in want:
            result["ocr"] = ocr_section(args.rounds)
        if "demo" in want:
            result["demo_screen"] = demo_section()
        if "parts" in want:
            result["demo_frame_parts"] = parts_section(max(3, args.rounds))
    result["loadavg_end"] = os.getloadavg()
    met = {}
    if "asr" in result:
        met["wer_en"] = result["asr"]["wer_en"] <= 0.15
        met["keyword_recall_en"] = result["asr"]["keyword_recall_en"] >= 0.9
    if "vad" in result:
        met["asr_x_real_time_vad"] = result["vad"]["x_real_time_vad"] >= 5.0
    if "ocr" in result:
        met["ocr_exact_line_rate"] = result["ocr"]["exact_line_rate"] >= 0.9
    if "demo_screen" in result:
        met["ocr_s_per_sampled_frame_demo"] = (
            result["demo_screen"]["precheck"]["ms_per_frame"] <= 100)
    result["met"] = met
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
