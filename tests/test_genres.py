"""The genre tagger (training/genres, tvindex genres): models, losses and metrics against
hand-computed values, splits by programme, resumable training, and end to end through the
CLI on a small catalogue on both backends: one programme's genre hidden, predicted, found
with anygenre:."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.genres.config import load_genre_config
from training.genres.data import EpisodeSequences, collate, pick_steps
from training.genres.fit import GenreTrainError, load_model, train
from training.genres.losses import asl, bce, create_loss
from training.genres.metrics import (
    average_precision,
    evaluate,
    mean_average_precision,
    prf,
    top_k_predictions,
)
from training.genres.models import MODELS, InitStateLSTM, create_model
from training.genres.predict import choose, predict
from training.genres.splits import holdout, split_by_programme
from tvindex.core.genres import GenreScore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate

REPO = Path(__file__).resolve().parent.parent


# --- losses ------------------------------------------------------------------------------
def test_asl_is_bce_at_zero_focusing_and_margin():
    torch.manual_seed(0)
    z, y = torch.randn(6, 5), (torch.rand(6, 5) > 0.5).float()
    assert torch.allclose(asl(z, y, gamma_pos=0, gamma_neg=0, margin=0), bce(z, y), atol=1e-6)


def test_asl_by_hand():
    # one positive at p = 0.8, one negative at p = 0.3; gamma+ = 1, gamma- = 2, m = 0.1
    z = torch.logit(torch.tensor([[0.8, 0.3]]))
    y = torch.tensor([[1.0, 0.0]])
    pos = -(1 - 0.8) ** 1 * np.log(0.8)
    pm = 0.3 - 0.1
    neg = -(pm ** 2) * np.log(1 - pm)
    got = float(asl(z, y, gamma_pos=1, gamma_neg=2, margin=0.1))
    assert got == pytest.approx((pos + neg) / 2, rel=1e-5)
    # a negative below the margin costs nothing and gets no gradient
    z = torch.logit(torch.tensor([[0.04]])).requires_grad_()
    loss = asl(z, torch.zeros(1, 1), gamma_neg=4, margin=0.05)
    loss.backward()
    assert float(loss.detach()) == 0 and float(z.grad) == 0
    with pytest.raises(ValueError):
        create_loss("focal")


# --- metrics -----------------------------------------------------------------------------
TRUTH = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
SCORES = np.array([[0.9, 0.6, 0.1], [0.2, 0.8, 0.3], [0.7, 0.1, 0.65], [0.1, 0.2, 0.3]])


def test_top_k_and_prf_by_hand():
    top1 = top_k_predictions(SCORES, 1)
    assert top1.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]
    m = prf(TRUTH, top1)
    # tp: row0 1, row1 1, row2 0, row3 0 = 2; predicted 4; true 4
    assert m["micro"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    # per genre (all have support): g0 P 1/2 R 1/2, g1 P 1 R 1, g2 P 0 R 0
    assert m["macro"]["precision"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["macro"]["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["macro"]["f1"] == pytest.approx((0.5 + 1 + 0) / 3)
    # per episode: P 1, 1, 0, 0; R 1, 1/2, 0, 0 (no true genre: 0)
    assert m["samples"]["precision"] == pytest.approx(0.5)
    assert m["samples"]["recall"] == pytest.approx(1.5 / 4)
    assert m["samples"]["f1"] == pytest.approx((1 + 2 / 3) / 4)
    thr = evaluate(TRUTH, SCORES, threshold=0.5)["threshold"]
    # predicted: row0 {0,1}, row1 {1}, row2 {0,2}: tp 3 of 5 predicted, 4 true
    assert thr["micro"]["precision"] == pytest.approx(3 / 5)
    assert thr["micro"]["recall"] == pytest.approx(3 / 4)


def test_average_precision_by_hand():
    # genre 0: positives rows 0, 1; ranking by score: row0 (0.9), row2 (0.7), row1 (0.2)
    assert average_precision(TRUTH[:, 0], SCORES[:, 0]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert mean_average_precision(TRUTH, SCORES) == pytest.approx(
        ((1 + 2 / 3) / 2 + 1.0 + 1.0) / 3)  # genre 2's one positive ranks first
    out = evaluate(TRUTH, SCORES)
    assert set(out) == {"top1", "top2", "top3", "top4", "top5", "threshold", "map", "n"}


# --- models ------------------------------------------------------------------------------
def test_every_model_masks_padding_and_pooling_ignores_order():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    for name in MODELS:
        net = create_model(name, dim=8, n_genres=3, hidden=16, dropout=0.0).eval()
        out = net(x, mask)
        assert out.shape == (2, 3), name
        noisy = x.clone()
        noisy[1, 4:] = 100.0  # padding must not matter
        assert torch.allclose(net(noisy, mask), out, atol=1e-5), name
        flipped = x.flip(1)
        same = torch.allclose(net(flipped, torch.ones(2, 6, dtype=torch.bool))[0], out[0],
                              atol=1e-5)
        assert same == (name in ("mean-linear", "meanmax-mlp")), name
    with pytest.raises(ValueError):
        create_model("gru", dim=8, n_genres=3)


def test_lstm_initial_state_comes_from_the_input():
    net = InitStateLSTM(dim=4, n_genres=2, hidden=5, layers=2)
    x = torch.randn(3, 7, 4)
    h0, c0 = net.initial_state(x, torch.ones(3, 7, dtype=torch.bool))
    assert h0.shape == c0.shape == (2, 3, 5)
    assert not torch.allclose(h0[:, 0], h0[:, 1])  # differs per input, not zeros
    assert not torch.allclose(h0, c0)  # two separate layers


def test_profile_is_appended():
    net = create_model("mean-linear", dim=4, n_genres=2, profile_dim=3)
    out = net(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 3))
    assert out.shape == (2, 2)


# --- data and splits ---------------------------------------------------------------------
def test_split_by_programme_never_shares_a_programme():
    progs = [f"p{i // 3}" for i in range(60)]  # 20 programmes of 3 episodes
    for seed in range(5):
        parts = split_by_programme(progs, test=0.2, val=0.1, seed=seed)
        sets = {k: {progs[i] for i in v} for k, v in parts.items()}
        assert not (sets["train"] & sets["test"] or sets["train"] & sets["val"]
                    or sets["val"] & sets["test"])
        assert sum(len(v) for v in parts.values()) == 60
        assert len(parts["test"]) >= 12 and len(parts["val"]) >= 6
    held = holdout(progs, ["p3"])
    assert held["test"].tolist() == [9, 10, 11] and 9 not in held["train"]


def test_subsampling_keeps_order():
    assert pick_steps(5, 8, None).tolist() == [0, 1, 2, 3, 4]
    assert pick_steps(10, 4, None).tolist() == [0, 3, 6, 9]
    drawn = pick_steps(100, 10, np.random.default_rng(0))
    assert len(set(drawn.tolist())) == 10 and drawn.tolist() == sorted(drawn.tolist())


def synthetic(n_prog: int = 12, per: int = 3, dim: int = 16, seed: int = 0
              ) -> EpisodeSequences:
    """Programmes of three genres, each a direction in embedding space."""
    rng = np.random.default_rng(seed)
    ids, progs, seqs, genres = [], [], [], []
    names = ("news", "nature", "sport")
    for p in range(n_prog):
        g = p % 3
        for e in range(per):
            x = rng.normal(0, 0.5, (int(rng.integers(4, 12)), dim)).astype(np.float32)
            x[:, g] += 1.5
            ids.append(f"p{p}-{e}")
            progs.append(f"p{p}")
            seqs.append(x)
            genres.append((names[g],))
    return EpisodeSequences(ids, progs, seqs, genres)


def test_collate_pads_and_masks():
    data = synthetic(n_prog=2, per=2)
    x, mask, prof = collate(data, [0, 1], max_len=6)
    lengths = [min(6, len(data.sequences[i])) for i in (0, 1)]
    assert x.shape == (2, max(lengths), 16) and mask.sum(1).tolist() == lengths
    assert prof is None


def test_training_learns_and_resumes(tmp_path: Path):
    data = synthetic()
    split = split_by_programme(data.programme_ids, test=0.25, seed=0)
    cfg = load_genre_config(overrides={"model.name": "mean-linear", "loss.name": "bce",
                                       "optim.epochs": 4, "optim.lr": 0.05,
                                       "output_dir": str(tmp_path), "name": "r"})
    _, whole = train(cfg, data, split)
    assert whole["test"]["top1"]["micro"]["f1"] > 0.8  # a learnable toy problem
    # the same run stopped after 2 epochs and resumed ends where the whole run ends
    short = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 2})})
    train(short, data, split, run_dir=tmp_path / "r")
    with pytest.raises(GenreTrainError):
        train(short, data, split, run_dir=tmp_path / "r")  # exists: resume or rename
    _, resumed = train(cfg, data, split, run_dir=tmp_path / "r", resume=True)
    hist = [json.loads(x) for x in (tmp_path / "r" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert resumed["test"]["map"] == pytest.approx(whole["test"]["map"], abs=1e-6)
    saved = load_genre_config(tmp_path / "r" / "config.yaml")
    assert saved.optim.epochs == 4 and saved.model.name == "mean-linear"
    model = load_model(tmp_path / "r")
    assert model.genres == ["nature", "news", "sport"]


def test_choose_and_predict_only_unlabelled():
    assert choose(["a", "b", "c"], np.array([0.2, 0.7, 0.6]), 0.5, 1) == [
        GenreScore("b", pytest.approx(0.7), True), GenreScore("c", pytest.approx(0.6), True)]
    assert [g.genre for g in choose(["a", "b"], np.array([0.3, 0.1]), 0.5, 1)] == ["a"]
    data = synthetic()
    data.genres[0] = data.genres[1] = data.genres[2] = ()  # programme p0 (news) hidden
    cfg = load_genre_config(overrides={"model.name": "meanmax-mlp", "optim.epochs": 8,
                                       "model.hidden": 32})
    model, _ = train(cfg, data, {"train": data.labelled()})
    episodes, programmes = predict(model, data)
    assert sorted(episodes) == ["p0-0", "p0-1", "p0-2"] and list(programmes) == ["p0"]
    assert programmes["p0"][0].genre == "news"


# --- end to end: the CLI on both backends --------------------------------------------------
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog"))
GENRES = {"noticies": "news", "natura": "nature", "esports": "sport; news",
          "tertulia": "news", "boscos": "nature", "futbol": "sport"}
HIDDEN = "misteri"  # looks like news; its genre is hidden


def _tags(eid: str, direction: int, rng: np.random.Generator) -> EpisodeTags:
    segments = []
    for i in range(6):
        v = rng.normal(0, 0.3, 8)
        v[direction] += 2.0
        if direction == 2:  # sport; news: both directions
            v[0] += 2.0
        segments.append(SegmentTags(i, i * 5.0, i * 5.0 + 5, i * 5.0 + 2.5,
                                    {"coco80": aggregate(np.array([[0.9, 0.2]], np.float32), 0.5)},
                                    embedding=(v / np.linalg.norm(v)).astype(np.float32)))
    stats = {"coco80": aggregate(np.array([[0.9, 0.2]] * 6, np.float32), 0.5)}
    tags = EpisodeTags(eid, f"fp-{eid}", "v1", 30.0, segments, stats, "shots")
    tags.embedding = np.mean([s.embedding for s in segments], axis=0).astype(np.float32)
    tags.embedding_model = "toy"
    return tags


def fill_catalogue(store) -> None:
    rng = np.random.default_rng(0)
    direction = {"news": 0, "nature": 1, "sport; news": 2, "sport": 2}
    programmes = [ProgrammeRecord(p, p.title(), genre=g) for p, g in GENRES.items()]
    programmes.append(ProgrammeRecord(HIDDEN, "Misteri", genre=""))
    episodes = [EpisodeRecord(f"{p.id}-{k}", p.id, f"{p.id} {k}", f"/m/{p.id}{k}.mp4",
                              dt.date(2024, 1, 1 + k)) for p in programmes for k in range(3)]
    store.upsert_catalogue(programmes, episodes)
    store.register_label_sets([OBJ])
    for e in episodes:
        d = direction.get(GENRES.get(e.programme_id, "news"), 0)
        store.write_episode(_tags(e.id, d, rng))


# Each CLI call starts Python and torch (seconds): the Elasticsearch run is in the slow suite
# (tests/test_genres_store.py checks that backend's genres and filters in the default one).
@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.slow)])
def cli_env(request, tmp_path: Path):
    """(environment, data dir) for the CLI on a filled catalogue of either backend."""
    env = dict(os.environ)
    data = tmp_path / "data"
    if request.param == "sqlite":
        from search.backends.sqlite.store import SqliteStore

        with SqliteStore(data / "catalogue.sqlite") as store:
            fill_catalogue(store)
    else:
        from search.backends.elasticsearch.store import EsStore

        cfg = request.getfixturevalue("es_config")
        with EsStore(cfg) as store:
            fill_catalogue(store)
        env.update({"TVINDEX__CATALOGUE__BACKEND": "elasticsearch",
                    "ELASTICSEARCH_URL": cfg.url,
                    "TVINDEX__ELASTICSEARCH__INDEX_PREFIX": cfg.index_prefix})
    return env, data


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_fit_predict_and_search(cli_env, tmp_path: Path):
    env, data = cli_env
    runs = tmp_path / "runs"
    fit = cli(env, "genres", "fit", "--config", "config/train/genres-mean.yaml",
              "--set", "optim.epochs=100", "--set", "optim.lr=0.05", "--holdout", "tertulia",
              "--output-dir", str(runs), "--data-dir", str(data), "--json")
    assert fit.returncode == 0, fit.stderr
    summary = json.loads(fit.stdout)
    assert summary["genres"] == ["nature", "news", "sport"]
    assert summary["test_episodes"] == 3 and summary["test"]["top1"]["micro"]["precision"] == 1
    run = runs / "genres-mean"
    assert (run / "config.yaml").exists() and (run / "best.pt").exists()
    ev = cli(env, "genres", "evaluate", str(run), "--data-dir", str(data), "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["programmes"] == ["tertulia"]
    pred = cli(env, "genres", "predict", str(run), "--data-dir", str(data), "--json")
    assert pred.returncode == 0, pred.stderr
    out = json.loads(pred.stdout)
    assert sorted(out["episodes"]) == [f"{HIDDEN}-{k}" for k in range(3)]
    assert out["programmes"][HIDDEN][0]["genre"] == "news"
    assert out["programmes"][HIDDEN][0]["predicted"] is True
    found = cli(env, "search", "object:person anygenre:news", "--level", "programme",
                "--data-dir", str(data), "--json")
    assert found.returncode == 0, found.stderr
    ids = [h["id"] for h in json.loads(found.stdout)["hits"]]
    assert HIDDEN in ids and "esports" in ids and "natura" not in ids
    meta_only = cli(env, "search", "object:person genre:news", "--level", "programme",
                    "--data-dir", str(data), "--json")
    assert HIDDEN not in [h["id"] for h in json.loads(meta_only.stdout)["hits"]]
    bad = cli(env, "genres", "predict", str(tmp_path / "nowhere"), "--data-dir", str(data))
    assert bad.returncode == 2 and "no config.yaml" in bad.stderr


# --- the API, the pages and the report -----------------------------------------------------
def test_api_pages_and_report_show_predicted_genres(tmp_path: Path):
    from test_webui_catalogue import web_settings

    from search.backends.sqlite.store import SqliteStore
    from training.evaluation.page import render_html
    from training.evaluation.report import build_report, summary_lines
    from webui import create_app

    store = SqliteStore(tmp_path / "cat.sqlite")
    fill_catalogue(store)
    app = create_app(web_settings(tmp_path), store)
    client = app.test_client()
    body = client.get(f"/api/v1/programmes/{HIDDEN}").get_json()
    assert body["genres"] == [] and all(ep["genres"] == [] for ep in body["episodes"])
    assert "genres" not in build_report(store, evaluated_location="t")
    store.write_predicted_genres(
        {f"{HIDDEN}-0": [GenreScore("news", 0.83, True)],
         "esports-0": [GenreScore("sport", 0.9, True)]},
        {HIDDEN: [GenreScore("news", 0.81, True)]})
    body = client.get(f"/api/v1/programmes/{HIDDEN}").get_json()
    assert body["genres"] == [{"genre": "news", "score": 0.81, "predicted": True}]
    assert body["episodes"][0]["genres"] == [{"genre": "news", "score": 0.83,
                                              "predicted": True}]
    episode = client.get("/api/v1/episodes/esports-0").get_json()
    assert episode["genres"] == [{"genre": "sport", "score": 1.0, "predicted": False},
                                 {"genre": "news", "score": 1.0, "predicted": False}]
    page = client.get(f"/programmes/{HIDDEN}").get_data(as_text=True)
    assert "pill-predicted" in page and "predicted 0.81" in page and "news 0.83" in page
    player = client.get(f"/episodes/{HIDDEN}-0").get_data(as_text=True)
    assert "predicted 0.83" in player
    report = build_report(store, evaluated_location="t")
    section = report["genres"]
    assert section["episodes_predicted"] == 2 and section["programmes_predicted"] == 1
    assert section["agreement_with_catalogue"] == {  # esports-0: sport of {sport, news}
        "episodes": 1, "micro_precision": 1.0, "micro_recall": 0.5, "micro_f1": 0.6667}
    assert any(line.startswith("genres: 2 episodes") for line in summary_lines(report))
    assert "Predicted genres" in render_html(report)


# --- end to end on the demo catalogue ------------------------------------------------------
@pytest.mark.media
def test_demo_catalogue_hidden_genre_is_predicted_and_found(tmp_path_factory, shared_dir):
    """The demo catalogue (demo/catalogue.csv: programmes with overlapping genres) indexed by
    the real taggers: La plaça's genres hidden, the model fitted on the other four
    programmes, its prediction stored, and `anygenre:` finds it where `genre:` does not."""
    import csv
    import shutil

    from test_webui_catalogue import demo_env, index_demo

    data = tmp_path_factory.mktemp("genredemo") / "data"
    shutil.copytree(index_demo(tmp_path_factory, shared_dir), data)
    env = demo_env(shared_dir)
    with open(REPO / "demo" / "catalogue.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["genre"] for r in rows if r["programme_id"] == "la-placa"} == {"news;urban"}
    hidden = data.parent / "hidden.csv"
    with open(hidden, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "genre": "" if r["programme_id"] == "la-placa" else r["genre"]}
                    for r in rows)
    text = hidden.read_text().replace("${TVINDEX_SHARED_DIR}", str(shared_dir))
    hidden.write_text(text)
    config = str(REPO / "demo" / "config.yaml")
    # The genre metadata changes, the media does not: nothing is tagged again.
    idx = cli(env, "--config", config, "index", str(hidden), "--data-dir", str(data),
              "--no-words", "--no-progress")
    assert idx.returncode == 0 and "indexed 0, unchanged 11" in idx.stdout, idx.stderr
    runs = data.parent / "runs"
    fit = cli(env, "--config", config, "genres", "fit", "--output-dir", str(runs),
              "--data-dir", str(data), "--json")
    assert fit.returncode == 0, fit.stderr
    learnt = set(json.loads(fit.stdout)["genres"])
    assert "urban" in learnt and "news" not in learnt  # news only La plaça has: hidden
    pred = cli(env, "--config", config, "genres", "predict", str(runs / "genres-lstm"),
               "--data-dir", str(data), "--json")
    assert pred.returncode == 0, pred.stderr
    predicted = {g["genre"] for g in json.loads(pred.stdout)["programmes"]["la-placa"]}
    assert "urban" in predicted, predicted  # a square full of pedestrians: urban
    found = cli(env, "--config", config, "search", "anygenre:urban", "--level", "programme",
                "--data-dir", str(data), "--json")
    assert "la-placa" in [h["id"] for h in json.loads(found.stdout)["hits"]], found.stdout
    meta_only = cli(env, "--config", config, "search", "genre:urban", "--level", "programme",
                    "--data-dir", str(data), "--json")
    assert "la-placa" not in [h["id"] for h in json.loads(meta_only.stdout)["hits"]]
