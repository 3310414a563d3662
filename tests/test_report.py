"""The retrieval-quality report (issue 8): retrieval agreement (nDCG@10 against a reference
catalogue), leave-one-episode-out recommendation quality, the figures read from the
benchmarks, and the report itself (HTML, PNG plots, JSON with finite numbers only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_webui_catalogue import REPO, demo_env, index_demo

from search.backends.sqlite.store import SqliteStore
from training.evaluation.benchmarks import latency, tagging_agreement
from training.evaluation.recommendation import leave_one_episode_out
from training.evaluation.report import build_report, write_report
from training.evaluation.results import finite_json, walk_numbers
from training.evaluation.retrieval import (
    LabelKey,
    ranking_ndcg,
    retrieval_agreement,
    stratified_sample,
)
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueStore

HOSTILE = '<b onclick="x">&amp;$x$'
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", HOSTILE))
SCN = LabelSet("places365", "softmax", ("street", "forest", "road"))
MODEL = "fake-embedder:w1"


def dcg(gains: list[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def make_store(path: Path | CatalogueStore,
               episodes: dict[str, tuple[str, list[dict[str, float]], dict[str, float],
                                         list[float] | None]]) -> CatalogueStore:
    """A store (an SQLite file, or an empty store of another backend) filled from
    ``{episode: (programme, [coco80 scores per segment], places365 scores, embedding or
    None)}``; every segment is one frame with the given probabilities."""
    store = (SqliteStore(path, min_score=0.05, top_k=0) if isinstance(path, Path) else path)
    programmes = sorted({p for p, *_ in episodes.values()})
    store.upsert_catalogue([ProgrammeRecord(p, p.title()) for p in programmes],
                           [EpisodeRecord(e, p, e, f"/media/{e}.mp4")
                            for e, (p, *_) in sorted(episodes.items())])
    store.register_label_sets([OBJ, SCN])
    for e, (_, shots, scene, emb) in sorted(episodes.items()):
        segments, obj_rows, scn_rows = [], [], []
        for i, scores in enumerate(shots):
            obj = np.array([[scores.get(n, 0.0) for n in OBJ.labels]], np.float32)
            scn = np.array([[scene.get(n, 0.0) for n in SCN.labels]], np.float32)
            obj_rows.append(obj)
            scn_rows.append(scn)
            segments.append(SegmentTags(
                i, 5.0 * i, 5.0 * i + 5, 5.0 * i + 2.5,
                {"coco80": aggregate(obj, 0.5), "places365": aggregate(scn, 0.2)},
                embedding=None if emb is None else np.asarray(emb, np.float32)))
        stats = {"coco80": aggregate(np.concatenate(obj_rows), 0.5),
                 "places365": aggregate(np.concatenate(scn_rows), 0.2)}
        store.write_episode(EpisodeTags(
            e, f"fp-{e}", "v1", 5.0 * len(shots), segments, stats, "shots",
            embedding=None if emb is None else np.asarray(emb, np.float32),
            embedding_model=MODEL if emb is not None else ""))
    return store


# --- retrieval agreement ------------------------------------------------------------------


def test_ranking_ndcg_by_hand():
    reference = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    ideal = dcg([0.9, 0.5, 0.1])
    assert ranking_ndcg(["b", "a", "c"], reference, 10) == pytest.approx(
        dcg([0.5, 0.9, 0.1]) / ideal)
    # An item the reference does not rank counts 0; a short ranking gains nothing below it.
    assert ranking_ndcg(["x", "a"], reference, 10) == pytest.approx(dcg([0.0, 0.9]) / ideal)
    assert ranking_ndcg(["a", "b", "c"], reference, 10) == pytest.approx(1.0)
    assert ranking_ndcg([], reference, 10) == 0.0
    assert ranking_ndcg(["a"], [], 10) is None  # nothing relevant: no nDCG
    # k cuts both the ranking and the ideal.
    assert ranking_ndcg(["b", "a"], reference, 1) == pytest.approx(0.5 / 0.9)


def two_stores(tmp_path: Path, reference: CatalogueStore | None = None,
               evaluated: CatalogueStore | None = None
               ) -> tuple[CatalogueStore, CatalogueStore]:
    """Reference and evaluated stores of the same catalogue (two shots per episode, equal
    dog scores within an episode) that disagree on how to rank 'dog' (present everywhere in
    both: every score reaches coco80's threshold of 0.5, so search ranks all three)."""
    def episodes(dog: dict[str, float], extra: dict[str, dict[str, float]]):
        out = {}
        for e, p in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")):
            shot = {"person": 0.7, "dog": dog[e], **extra.get(e, {})}
            out[e] = (p, [shot, shot], {"street": 0.8, "forest": 0.2}, None)
        return out

    reference = make_store(reference or tmp_path / "ref.sqlite",
                           episodes({"a1": 0.8, "a2": 0.6, "b1": 0.5}, {}))
    evaluated = make_store(evaluated or tmp_path / "eval.sqlite",
                           episodes({"a1": 0.5, "a2": 0.9, "b1": 0.7},
                                    {"b1": {"car": 0.9}}))
    return reference, evaluated


def test_retrieval_agreement_is_one_against_itself(tmp_path: Path):
    reference, _ = two_stores(tmp_path)
    result = retrieval_agreement(reference, reference)
    assert result["available"]
    for level in ("shot", "episode", "programme"):
        s = result["levels"][level]
        assert s["n_labels"] == result["selection"]["evaluated"] > 0
        assert s["mean"] == pytest.approx(1.0) and s["min"] == pytest.approx(1.0)
        assert s["mean_overlap"] == pytest.approx(1.0)


def test_retrieval_agreement_hand_checked(tmp_path: Path):
    reference, evaluated = two_stores(tmp_path)
    result = retrieval_agreement(evaluated, reference, worst=1)
    # Present in the reference: person, dog (coco80), street, forest (places365); 'car' is
    # only in the evaluated store, the hostile label nowhere.
    chosen = {(r["label_set"], r["label"]) for r in result["levels"]["episode"]["per_label"]}
    assert chosen == {("coco80", "person"), ("coco80", "dog"), ("places365", "street"),
                      ("places365", "forest")}
    assert result["selection"]["present"] == 4

    def dog(level: str) -> float:
        return next(r["ndcg"] for r in result["levels"][level]["per_label"]
                    if r["label"] == "dog")

    # Episodes: evaluated order a2 (.9), b1 (.7), a1 (.5); reference scores .6, .5, .8.
    assert dog("episode") == pytest.approx(dcg([0.6, 0.5, 0.8]) / dcg([0.8, 0.6, 0.5]))
    # Shots: two per episode, ties broken by id.
    assert dog("shot") == pytest.approx(dcg([0.6, 0.6, 0.5, 0.5, 0.8, 0.8])
                                        / dcg([0.8, 0.8, 0.6, 0.6, 0.5, 0.5]))
    # Programmes: alpha .7 vs beta .7 evaluated (a tie: by id), .7 vs .5 reference.
    assert dog("programme") == pytest.approx(1.0)
    assert result["levels"]["episode"]["worst"][0]["label"] == "dog"
    others = [r["ndcg"] for r in result["levels"]["shot"]["per_label"] if r["label"] != "dog"]
    assert others == pytest.approx([1.0, 1.0, 1.0])


def test_stratified_sample_is_seeded_and_covers_frequencies():
    labels = [LabelKey("s", f"l{i:03d}", 1 + i // 10) for i in range(90)]
    a = stratified_sample(labels, 30, seed=3)
    assert a == stratified_sample(labels, 30, seed=3) and len(a) == 30
    assert len({k.name for k in a}) == 30
    freq = sorted(k.frequency for k in a)
    assert freq[:10] == sorted(freq[:10]) and max(freq[:10]) <= 3  # a third from the rarest
    assert min(freq[-10:]) >= 7  # and a third from the most common
    assert stratified_sample(labels, 100) == sorted(labels, key=lambda k: k.name)
    assert stratified_sample(labels, 31, seed=0) != stratified_sample(labels, 31, seed=1)


# --- leave one episode out ----------------------------------------------------------------

E1, E2, E3 = np.eye(4)[0], np.eye(4)[1], np.eye(4)[2]


def loo_store(tmp_path: Path, embeddings: bool = True,
              store: CatalogueStore | None = None) -> CatalogueStore:
    """news: n1, n2 (person); nature: t1, t2 (dog, forest); cars: c1 alone (car, road).
    n2's embedding (0.6 e1 + 0.8 e2) is nearer the nature episodes' (e2) than n1's (e1)."""
    def ep(programme: str, obj: dict[str, float], scn: dict[str, float], emb):
        return (programme, [obj, obj], scn, list(emb) if embeddings else None)

    return make_store(store or tmp_path / "loo.sqlite", {
        "n1": ep("news", {"person": 0.9}, {"street": 1.0}, E1),
        "n2": ep("news", {"person": 0.8}, {"street": 1.0}, 0.6 * E1 + 0.8 * E2),
        "t1": ep("nature", {"dog": 0.8}, {"forest": 1.0}, E2),
        "t2": ep("nature", {"dog": 0.7}, {"forest": 1.0}, E2),
        "c1": ep("cars", {"car": 0.9}, {"road": 1.0}, E3),
    })


def test_leave_one_episode_out_known_answer(tmp_path: Path):
    store = loo_store(tmp_path)
    result = leave_one_episode_out(store, embedding_weight=0.5, label_weight=0.5)
    assert result["available"]
    assert result["programmes"] == 3 and result["queries"] == 4
    assert result["skipped_single_episode"] == 1 and result["skipped"] == ["c1"]
    reps = result["representations"]
    # Embedding alone: n2's own programme, rebuilt without it, is n1 alone (cos 0.6), below
    # nature (cos 0.8): rank 2. Had n2 stayed in its profile, news would win (cos 0.89).
    ranks = {p["episode"]: p["rank"] for p in result["per_episode"]}
    assert ranks == {"n1": {"embedding": 1, "labels": 1, "blend": 1},
                     "n2": {"embedding": 2, "labels": 1, "blend": 1},
                     "t1": {"embedding": 1, "labels": 1, "blend": 1},
                     "t2": {"embedding": 1, "labels": 1, "blend": 1}}
    assert reps["embedding"]["precision@1"] == pytest.approx(0.75)
    assert reps["embedding"]["mrr"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert reps["embedding"]["ndcg"] == pytest.approx((3 + 1 / math.log2(3)) / 4)
    for rep in ("labels", "blend"):
        assert reps[rep]["precision@1"] == reps[rep]["mrr"] == reps[rep]["ndcg"] == 1.0
    n2 = next(p for p in result["per_episode"] if p["episode"] == "n2")
    assert n2["top"]["embedding"] == "nature"
    assert n2["margin"]["embedding"] == pytest.approx(0.6 - 0.8, abs=1e-5)
    assert reps["embedding"]["margin_min"] == pytest.approx(-0.2, abs=1e-5)
    sweep = {p["embedding_weight"]: p["precision@1"] for p in result["weight_sweep"]}
    assert sweep[0.0] == 1.0 and sweep[1.0] == 0.75
    assert result["chance"]["precision@1"] == pytest.approx(1 / 3)


def test_leave_one_episode_out_without_embeddings(tmp_path: Path):
    store = loo_store(tmp_path, embeddings=False)
    result = leave_one_episode_out(store)
    reps = result["representations"]
    assert not reps["embedding"]["available"] and reps["embedding"]["precision@1"] is None
    assert reps["labels"]["precision@1"] == reps["blend"]["precision@1"] == 1.0


def test_leave_one_episode_out_needs_two_episodes(tmp_path: Path):
    store = make_store(tmp_path / "one.sqlite", {
        "a": ("p", [{"person": 0.9}], {"street": 1.0}, None),
        "b": ("q", [{"dog": 0.9}], {"forest": 1.0}, None)})
    result = leave_one_episode_out(store)
    assert not result["available"] and result["skipped_single_episode"] == 2
    assert "two indexed episodes" in result["reason"]


def test_same_figures_on_elasticsearch(tmp_path: Path, es_server, es_config):
    """The metrics only use the store interface: Elasticsearch gives the SQLite figures."""
    from search.backends.elasticsearch.store import EsStore

    def es(name: str) -> EsStore:
        cfg = es_server.config(f"{es_config.index_prefix}{name}-")  # removed with es_config's
        return EsStore(cfg, min_score=0.05, top_k=0)

    sqlite_pair = two_stores(tmp_path)
    es_pair = two_stores(tmp_path, es("ref"), es("eval"))
    ours, theirs = (retrieval_agreement(b, a) for a, b in (es_pair, sqlite_pair))
    for level in ("shot", "episode", "programme"):
        assert [r["ndcg"] for r in ours["levels"][level]["per_label"]] == pytest.approx(
            [r["ndcg"] for r in theirs["levels"][level]["per_label"]])
    loo_es = leave_one_episode_out(loo_store(tmp_path, store=es("loo")))
    loo_sqlite = leave_one_episode_out(loo_store(tmp_path))
    assert [p["rank"] for p in loo_es["per_episode"]] == [
        p["rank"] for p in loo_sqlite["per_episode"]]


# --- figures from the benchmarks ----------------------------------------------------------


def bench_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api_load.json").write_text(json.dumps(
        {"loaded": {"latency_ms": {"p50": 4.0, "p90": 8.0, "p99": 20.5}, "errors": 0}}))
    # NaN is what Python's json writes for a failed measurement: it must never come back.
    (folder / "query_latency.json").write_text(
        '{"queries": {"warm": {"three_label": {"n": 30, "p50_ms": 2.5, "p95_ms": 4.0, '
        '"p99_ms": NaN, "max_ms": 9}}}}')
    (folder / "vector_search.json").write_text("")
    (folder / "distill_report.json").write_text(json.dumps({
        "heads": {"objects": "coco80", "scenes": "places365"}, "gain": "linear",
        "thesis": {"tv3 frames": {"objects": {"top1": 0.72, "ndcg@5": 0.53, "ndcg@10": 0.43},
                                  "scenes": {"top1": 0.03, "ndcg@5": 0.025}}},
        "prior": {"coco80": {"all": {"frames": 10, "top1": 0.2, "ndcg@5": 0.4}}},
        "runs": [{"loss": {"name": "head-aware"}, "config": "c.yaml",
                  "test": {"coco80": {"all": {"frames": 10, "top1": 0.5, "ndcg@5": 0.8,
                                              "ndcg@10": 0.85}},
                           "places365": {"all": {"frames": 10, "top1": 0.6, "ndcg@5": 0.9,
                                                 "ndcg@10": float("nan")}}}}]}))
    return folder


def test_figures_from_the_benchmarks(tmp_path: Path):
    bench = bench_files(tmp_path / "bench")
    lat = latency(bench)
    assert lat["available"] and any("empty" in p for p in lat["problems"])
    rows = {(r["benchmark"], r["measurement"]): r for r in lat["rows"]}
    assert rows[("api_load", "loaded.latency_ms")]["p99"] == 20.5
    three = rows[("query_latency", "queries.warm.three_label")]
    assert three["p50"] == 2.5 and "p99" not in three and three["n"] == 30
    tag = tagging_agreement(bench / "distill_report.json", bench)
    assert tag["available"] and tag["runs"][0]["name"] == "head-aware"
    assert tag["runs"][0]["heads"]["coco80"]["ndcg@5"] == 0.8
    assert tag["thesis"]["tv3 frames"]["coco80"]["ndcg@5"] == 0.53
    assert not latency(tmp_path / "nowhere")["available"]
    missing = tagging_agreement(tmp_path / "nowhere.json", tmp_path / "nowhere")
    assert not missing["available"] and "nowhere.json" in missing["reason"]


# --- the report ---------------------------------------------------------------------------


def assert_finite(report: dict) -> None:
    numbers = list(walk_numbers(report))
    assert numbers
    bad = [(path, v) for path, v in numbers if not math.isfinite(v)]
    assert not bad, bad


def test_report_on_hand_built_stores(tmp_path: Path):
    reference, evaluated = two_stores(tmp_path)
    loo = loo_store(tmp_path)
    bench = bench_files(tmp_path / "bench")
    report = build_report(evaluated, evaluated_location="eval", reference=reference,
                          reference_location="ref", distill_report=bench / "distill_report.json",
                          bench_dir=bench)
    assert report["retrieval_agreement"]["available"]
    index = write_report(report, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert_finite(saved)
    assert set(saved["plots"]) == {"retrieval", "recommendation", "tagging"}  # no embeddings
    for name in saved["plots"].values():
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_ref = build_report(loo, evaluated_location="loo", reference=None)
    assert not no_ref["retrieval_agreement"]["available"]
    assert no_ref["recommendation"]["evaluated"]["available"]
    page = index.read_text()
    assert "<h2>Retrieval agreement</h2>" in page and 'src="retrieval_ndcg.png"' in page
    write_report(no_ref, tmp_path / "out")  # the same folder: stale plots go
    assert (tmp_path / "out" / "recommendation_weights.png").is_file()
    assert not (tmp_path / "out" / "retrieval_ndcg.png").exists()


def test_hostile_label_is_escaped(tmp_path: Path):
    store = make_store(tmp_path / "h.sqlite", {
        "a": ("p", [{HOSTILE: 0.9}], {"street": 1.0}, None),
        "b": ("p", [{HOSTILE: 0.5, "dog": 0.4}], {"street": 1.0}, None)})
    report = build_report(store, evaluated_location="<h>", reference=store,
                          reference_location="<r>")
    labels = [r["label"] for r in report["retrieval_agreement"]["levels"]["shot"]["per_label"]]
    assert HOSTILE in labels
    page = write_report(report, tmp_path / "out").read_text()
    assert HOSTILE not in page and "<h>" not in page
    assert "&lt;b onclick=&quot;x&quot;&gt;&amp;amp;$x$" in page


def test_finite_json():
    data = finite_json({"a": float("nan"), "b": [np.float32(1.5), np.inf, np.int64(3)],
                        "c": np.array([1.0, -np.inf]), "d": (True, None)})
    assert data == {"a": None, "b": [1.5, None, 3], "c": [1.0, None], "d": [True, None]}
    json.dumps(data, allow_nan=False)


@pytest.mark.media
def test_report_on_the_demo_catalogue(tmp_path_factory, shared_dir: Path, tmp_path: Path):
    data = index_demo(tmp_path_factory, shared_dir)
    bench = bench_files(tmp_path / "bench")
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
         "report", "--out", str(out), "--data-dir", str(data), "--reference", str(data),
         "--bench-dir", str(bench)], env=demo_env(shared_dir), capture_output=True, text=True,
        timeout=300, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {out / 'index.html'}" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert_finite(report)
    assert (out / "index.html").read_text().startswith("<!doctype html>")
    assert {"retrieval", "recommendation", "tagging"} <= set(report["plots"])
    for name in report["plots"].values():
        assert (out / name).stat().st_size > 1000
    ra = report["retrieval_agreement"]
    assert ra["available"] and ra["selection"]["evaluated"] > 10
    for level in ("shot", "episode", "programme"):  # the store is its own reference
        assert ra["levels"][level]["mean"] == pytest.approx(1.0)
    loo = report["recommendation"]["evaluated"]
    assert loo["available"] and loo["programmes"] == 5 and loo["queries"] == 11
    assert loo["representations"]["blend"]["precision@1"] is not None
    assert report["latency"]["available"] and report["tagging_agreement"]["available"]


def test_report_command_errors(tmp_path: Path):
    from tvindex.cli import main

    assert main(["report", "--out", str(tmp_path / "o"), "--data-dir", str(tmp_path / "d"),
                 "--reference", str(tmp_path / "missing")]) == 2
    # An empty catalogue has nothing to report on.
    assert main(["report", "--out", str(tmp_path / "o"), "--data-dir",
                 str(tmp_path / "d")]) == 2
