"""The openclip tagger and visual: query terms (issue 17, part 5).

No CLIP weights exist on these machines, so this tests the plumbing only, on a small randomly
initialised OpenCLIP architecture saved as a local weights file (as real weights would be):
image embeddings per shot, beside the store; their FAISS index; visual: terms ranked by the
cosine of CLIP's text and image towers, recomputed here with open_clip directly; how they
combine with labels and filters; the errors. Nothing here says anything about retrieval
quality (docs/visual-search.md).
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.catalogue import load_catalogue
from indexer.embedder import build_text_encoder
from indexer.indexing import run_index
from indexer.media import Sampler
from indexer.taggers import Tagger, TaggerError, tagger_from_settings
from indexer.taggers.labels import COCO80
from indexer.weights import ModelNotFoundError
from search.backends.elasticsearch.store import EsStore
from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from search.facets import run_facets
from search.query import QueryError
from search.vector_catalogue import VectorCatalogue
from search.visual_search import VisualSearch, attach
from search.visual_vectors import VisualFiles, visual_catalogue, visual_writer
from tvindex.core.store import StoreError
from tvindex.settings import load_settings

open_clip = pytest.importorskip(
    "open_clip", reason="open-clip-torch is not installed (pip install 'tvindex[clip]')")

# A small CLIP: ViT of width 64, 2 layers, 16-pixel patches on 64-pixel pictures; a text
# transformer of width 64, 2 layers; 32-dimensional joint space. Built in well under 2 s.
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                       "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2}}
ARCH = "tvindex-tiny"
# CLIP's image normalisation, written out here rather than taken from the tagger.
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
QUERY = "a red square on a blue wall"


def tiny_clip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The tiny model's config JSON and its randomly initialised weights (a state dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY)
    config, weights = folder / f"{ARCH}.json", folder / f"{ARCH}-{seed}.bin"
    config.write_text(json.dumps(TINY))
    torch.save(model.state_dict(), weights)
    return config, weights


def clip_settings(folder: Path, seed: int = 0, **overrides):
    """Settings that index with the tiny model (and tests/test_taggers.py builds it by)."""
    config, weights = tiny_clip(folder / "models", seed)
    return load_settings(overrides={
        "taggers.device": "cpu", "taggers.active": ["openclip"], "taggers.batch_size": 3,
        "taggers.openclip.arch": ARCH, "taggers.openclip.config": str(config),
        "taggers.openclip.weights": str(weights), "sampling.mode": "interval",
        "sampling.every_s": 0.5, "paths.data_dir": str(folder / "var"),
        "paths.cache_dir": str(folder / "cache"), "visual.top_k": 1000,
        "visual.min_similarity": -1.0, **overrides}, environ={})


class ColourTagger(Tagger):
    """Labels from the pixels: car on reddish frames, person on bluish ones."""

    def __init__(self) -> None:
        self.name = "colour"
        self.label_sets = (COCO80,)
        self.weights_id = "colour-1"

    def predict(self, frames):
        out = np.full((len(frames), len(COCO80.labels)), -10.0, np.float32)
        for i, f in enumerate(frames):
            r, _, b = f.reshape(-1, 3).mean(axis=0)
            out[i, COCO80.labels.index("car")] = 10.0 if r > b else -10.0
            out[i, COCO80.labels.index("person")] = 10.0 if b > r else -10.0
        return {COCO80.name: out}


def _video(path: Path, colour: tuple[int, int, int], seconds: int = 2, fps: int = 4) -> None:
    """64x64 frames of one colour with a square of its complement moving across."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(seconds * fps):
            img = np.empty((64, 64, 3), np.uint8)
            img[:] = colour
            x = (6 * i) % 44
            img[20:44, x:x + 20] = [255 - c for c in colour]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_catalogue(root: Path) -> Path:
    """Two programmes, three episodes of 2 s: four 0.5 s segments each."""
    _video(root / "Reds" / "red_a.mp4", (200, 30, 30))
    _video(root / "Reds" / "red_b.mp4", (160, 60, 20))
    _video(root / "Blues" / "blue_a.mp4", (20, 40, 190))
    return root


def index_into(store, s, taggers, root: Path) -> VectorCatalogue:
    """What ``tvindex index`` does: write through the visual writer, then sync the indexes;
    and what ``tvindex search`` does: attach the visual searcher. Returns the CLIP index."""
    vectors = VectorCatalogue.from_settings(store, s)
    report = run_index(load_catalogue(root), visual_writer(store, vectors), taggers,
                       s.sampling, s.aggregation, embedder=None, batch_size=3, progress=False)
    assert not report.failed
    vectors.sync()
    visual = visual_catalogue(store, vectors)
    visual.sync()
    attach(store, VisualSearch.from_settings(store, s, lambda: build_text_encoder(s)))
    return visual


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openclip")
    s = clip_settings(folder)
    root = make_catalogue(folder / "media")
    clip = tagger_from_settings("openclip", s)
    (folder / "var").mkdir()
    store = SqliteStore(folder / "var" / "catalogue.sqlite")
    visual = index_into(store, s, [clip, ColourTagger()], root)
    yield store, s, root, clip, visual
    store.close()


def reference_model(s) -> torch.nn.Module:
    model = open_clip.CLIP(**TINY)
    model.load_state_dict(torch.load(s.taggers.openclip.weights, weights_only=True))
    return model.eval()


def reference_cosines(s, root: Path, text: str) -> dict[str, float]:
    """Shot id -> cosine of the text and the shot's frame, by open_clip alone."""
    model = reference_model(s)
    sampler = Sampler.from_section(s.sampling)
    ids, images = [], []
    for ep in load_catalogue(root).episodes:
        for i, frame in enumerate(sampler.sample(ep.media_path)):
            ids.append(f"{ep.id}@{i}")
            images.append((frame.image.astype(np.float32) / 255.0 - MEAN) / STD)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        img = model.encode_image(x, normalize=True).numpy()
        txt = model.encode_text(open_clip.tokenize([text]), normalize=True).numpy()[0]
    return dict(zip(ids, (img @ txt).tolist()))


def test_embeddings_are_stored_per_shot_apart_from_the_frame_embedding(indexed):
    store, _, _, clip, visual = indexed
    assert clip.label_sets == () and clip.embedding_dim == 0 and clip.visual_dim == 32
    files = VisualFiles(visual.dir)
    states = store.episode_states()
    assert len(states) == 3
    for st in states:
        record = files.read(st.id)
        assert record.model == clip.identity() and record.frames == 4
        assert record.shots.shape == (4, 32) and list(record.index) == [0, 1, 2, 3]
        np.testing.assert_allclose(np.linalg.norm(record.shots, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(record.episode, record.shots.mean(axis=0), atol=1e-6)
    status = visual.status()
    assert status["model"] == clip.identity() and status["current"]
    assert {k: v["count"] for k, v in status["levels"].items()} == {
        "shot": 12, "episode": 3, "programme": 2}
    assert (visual.dir / "state.json").is_file()
    # The store's own embeddings (similar items, picture search) are not CLIP's.
    assert store.embedding_model() is None


def test_visual_term_ranks_shots_by_clip_cosine(indexed):
    store, s, root, _, _ = indexed
    expected = reference_cosines(s, root, QUERY)
    page = run_search(store, f'visual:"{QUERY}"', "shot", limit=20)
    assert page.total == 12 and sorted(h.id for h in page.hits) == sorted(expected)
    # Best first by the cosine computed here (allowing float32 noise between near-ties), and
    # the cosines differ enough for the order to mean something.
    cosines = [expected[h.id] for h in page.hits]
    assert all(a >= b - 1e-5 for a, b in pairwise(cosines))
    assert max(cosines) - min(cosines) > 1e-3
    for hit in page.hits:
        assert hit.score == pytest.approx((1 + expected[hit.id]) / 2, abs=1e-4)
        assert hit.evidence[-1].term == f'visual:"{QUERY}"'
        assert hit.evidence[-1].score == pytest.approx(expected[hit.id], abs=1e-3)
    # A bare word, and the floor and top_k of the visual section.
    word = reference_cosines(s, root, "bicycle")
    top = run_search(store, "visual:bicycle", "shot", limit=1).hits[0]
    assert word[top.id] >= max(word.values()) - 1e-5
    floor = sorted(expected.values())[6]
    narrow = VisualSearch.from_settings(
        store, s.model_copy(update={"visual": s.visual.model_copy(
            update={"min_similarity": floor, "top_k": 4})}), lambda: build_text_encoder(s))
    assert set(narrow.shots(QUERY)) == set(sorted(expected, key=lambda k: -expected[k])[:4])


def test_visual_term_combines_with_labels_filters_and_levels(indexed):
    store, s, root, _, _ = indexed
    text = f'visual:"{QUERY}"'
    everything = [h.id for h in run_search(store, text, "shot", limit=50).hits]
    cars = run_search(store, f"{text} object:car", "shot", limit=50)
    assert 0 < cars.total < len(everything)
    assert all(h.id.startswith("reds-") for h in cars.hits)
    # Every label probability is ~1, so the visual order is kept among the cars.
    assert [h.id for h in cars.hits] == [i for i in everything if i.startswith("reds-")]
    assert {e.term for e in cars.hits[0].evidence} == {"object:car", text}
    blues = run_search(store, f"{text} programme:Blues", "shot", limit=50)
    assert [h.id for h in blues.hits] == [i for i in everything if i.startswith("blues-")]
    assert run_search(store, f"{text} object:car programme:Blues", "shot").total == 0
    floor = run_search(store, text, "shot", limit=50, min_score=0.5)
    assert floor.total == sum(h.score >= 0.5 for h in run_search(store, text, "shot",
                                                                 limit=50).hits)
    episodes = run_search(store, f"{text} object:car", "episode")
    assert sorted(h.id for h in episodes.hits) == ["reds-red-a", "reds-red-b"]
    for hit in episodes.hits:
        assert hit.best_shot is not None and hit.best_shot["id"].startswith(hit.id + "@")
    expected = reference_cosines(s, root, QUERY)
    best = {}
    for sid, c in expected.items():
        best[sid.split("-")[0]] = max(best.get(sid.split("-")[0], -2.0), c)
    programmes = run_search(store, text, "programme")
    assert [h.id for h in programmes.hits] == sorted(best, key=lambda k: -best[k])
    with pytest.raises(StoreError, match="visual"):
        run_facets(store, text, "shot")


def test_missing_weights_name_where_they_were_looked_for(tmp_path: Path):
    s = load_settings(overrides={"taggers.device": "cpu", "taggers.openclip.arch": "ViT-B-32",
                                 "paths.cache_dir": str(tmp_path / "cache")},
                      environ={"TVINDEX_MODEL_DIR": str(tmp_path / "models")})
    where = str(tmp_path / "models" / "openclip" / "ViT-B-32" / "open_clip_pytorch_model.bin")
    with pytest.raises(ModelNotFoundError) as err:
        tagger_from_settings("openclip", s)
    assert where in str(err.value) and "never downloaded" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="open_clip_pytorch_model.bin"):
        build_text_encoder(s)
    bad = s.model_copy(update={"taggers": s.taggers.model_copy(update={
        "openclip": s.taggers.openclip.model_copy(update={"weights": str(tmp_path / "x.bin")})})})
    with pytest.raises(ModelNotFoundError, match="x.bin"):
        tagger_from_settings("openclip", bad)
    (tmp_path / "junk.bin").write_bytes(b"not a state dict")
    with pytest.raises(TaggerError, match="junk.bin"):
        tagger_from_settings("openclip", clip_settings(tmp_path, **{
            "taggers.openclip.weights": str(tmp_path / "junk.bin")}))


def test_query_errors_without_a_clip_index(indexed, tmp_path: Path):
    store, _, root, _, _ = indexed
    for text, why in [("-visual:bicycle object:car", "cannot be used with -"),
                      ("visual:bicycle OR object:car", "cannot be OR-ed"),
                      ("object:car then visual:bicycle", "after 'then'")]:
        with pytest.raises(QueryError, match=why):
            run_search(store, text)
    plain = SqliteStore(tmp_path / "plain.sqlite")
    try:
        with pytest.raises(QueryError, match="visual: needs the openclip tagger"):
            run_search(plain, "visual:bicycle")
        # Attached, but indexed without the openclip tagger: no CLIP embeddings.
        labels_only = clip_settings(tmp_path, **{"paths.data_dir": str(tmp_path / "var2")})
        index_into(plain, labels_only, [ColourTagger()], root)
        with pytest.raises(QueryError, match="no shot of this catalogue has CLIP embeddings"):
            run_search(plain, "visual:bicycle")
        assert run_search(plain, "object:car").total == 8
    finally:
        plain.close()


def test_another_model_reindexes_and_refuses_a_stale_index(indexed, tmp_path: Path):
    store, s, root, clip, _ = indexed
    assert build_text_encoder(s).identity() == clip.identity()
    other = clip_settings(tmp_path, seed=1)
    other_clip = tagger_from_settings("openclip", other)
    assert other_clip.identity() != clip.identity()
    # The index was made by seed 0: a text encoder of seed 1 must not be compared with it.
    attach(store, VisualSearch.from_settings(store, s, lambda: build_text_encoder(other)))
    try:
        with pytest.raises(QueryError, match="the CLIP index was made by"):
            run_search(store, "visual:bicycle")
    finally:
        attach(store, VisualSearch.from_settings(store, s, lambda: build_text_encoder(s)))
    # Resuming with the same model redoes nothing.
    report = run_index(load_catalogue(root), visual_writer(store, VectorCatalogue.from_settings(
        store, s)), [clip, ColourTagger()], s.sampling, s.aggregation, embedder=None,
        progress=False)
    assert report.indexed == [] and len(report.skipped) == 3


QUERIES = [(f'visual:"{QUERY}"', "shot"), (f'visual:"{QUERY}" object:car', "shot"),
           ("visual:bicycle programme:Reds", "shot"), (f'visual:"{QUERY}"', "episode"),
           ("visual:bicycle object:person", "programme")]


def test_elasticsearch_answers_as_sqlite(indexed, es_config, tmp_path: Path):
    """The CLIP side is backend-independent: the same catalogue in Elasticsearch answers
    visual: terms with the same hits, scores and best shots."""
    sqlite, s, root, clip, _ = indexed
    es = EsStore(es_config)
    here = s.model_copy(update={"paths": s.paths.model_copy(
        update={"data_dir": tmp_path / "var"})})
    try:
        index_into(es, here, [clip, ColourTagger()], root)
        for text, level in QUERIES:
            want, got = (run_search(st, text, level, limit=20) for st in (sqlite, es))
            assert want.total == got.total > 0, text
            assert [(h.id, round(h.score, 5), (h.best_shot or {}).get("id"))
                    for h in got.hits] == [(h.id, round(h.score, 5),
                                            (h.best_shot or {}).get("id"))
                                           for h in want.hits], text
    finally:
        es.close()
