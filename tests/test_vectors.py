"""search.vectors: the FAISS vector index keyed by string ids (exact and IVF-SQ8 kinds)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed")

from search.vectors import (
    EXACT,
    IVF_SQ8,
    VectorIndex,
    VectorIndexError,
    default_nlist,
)
from tvindex.core.vectors import unit_rows


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return unit_rows(rng.standard_normal((n, dim)), strict=True)


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int,
              spread: float = 0.35) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (shots of a programme look alike)."""
    centres = rng.standard_normal((clusters, dim))
    return unit_rows(centres[rng.integers(0, clusters, n)]
                     + spread * rng.standard_normal((n, dim)), strict=True)


def catalogue_like(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors of shots of episodes of programmes (200 programmes of 5 episodes): a
    shot's neighbours spread over a few inverted-file cells, so nprobe matters."""
    programmes = rng.standard_normal((200, dim))
    episodes = programmes[np.arange(1000) // 5] + 0.7 * rng.standard_normal((1000, dim))
    return unit_rows(episodes[rng.integers(0, 1000, n)] + rng.standard_normal((n, dim)),
                     strict=True)


def tied(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    """Unit vectors with four entries of +-0.5: every inner product is a multiple of 0.25,
    exact in float32, so scores tie often and exactly."""
    x = np.zeros((n, dim), np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return x


def brute_force(db: np.ndarray, ids: list[str], queries: np.ndarray, k: int,
                exclude: set[str] = frozenset()) -> list[list[tuple[str, float]]]:
    """numpy top-k by inner product, ties by id (the reference the index must equal)."""
    scores = queries.astype(np.float64) @ db.T.astype(np.float64)
    names = np.array(ids)
    keep = np.array([i not in exclude for i in ids])
    out = []
    for row in scores:
        order = np.lexsort((names[keep], -row[keep]))[:k]
        out.append([(str(names[keep][j]), float(row[keep][j])) for j in order])
    return out


def assert_same(got, want, atol=0.0):
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=0, atol=atol)


def recall_at(got, want, k: int) -> float:
    return float(np.mean([len({i for i, _ in g[:k]} & {i for i, _ in w[:k]}) / k
                          for g, w in zip(got, want)]))


@pytest.fixture(scope="module")
def approx_data():
    """20 000 catalogue-like unit vectors of dim 64 (+ 200 held-out queries), exact top-10."""
    rng = np.random.default_rng(7)
    x = catalogue_like(rng, 20_200, 64)
    db, queries = x[:20_000], x[20_000:]
    ids = [f"EP{i // 100}@{i % 100}" for i in range(len(db))]
    return ids, db, queries, brute_force(db, ids, queries, 10)


# ---------------------------------------------------------------------------------------------
# Exact kind


@pytest.mark.parametrize("n_queries", [3, 40])  # FAISS: per-pair SIMD below 20 queries, BLAS above
def test_exact_equals_numpy_top_k(n_queries):
    rng = np.random.default_rng(0)
    db = unit(rng, 700, 24)
    ids = [f"shot-{i:04d}" for i in range(len(db))]
    index = VectorIndex(24)
    index.add(ids, db)
    queries = unit(rng, n_queries, 24)
    got = index.search(queries, 10)
    assert index.kind == EXACT
    assert_same(got, brute_force(db, ids, queries, 10), atol=1e-5)


@pytest.mark.parametrize("n_queries", [5, 64])
@pytest.mark.parametrize("k", [1, 7, 50])
def test_exact_ties_are_broken_by_id(n_queries, k):
    rng = np.random.default_rng(1)
    db = tied(rng, 3000, dim=6)  # 240 distinct vectors: duplicates and equal scores everywhere
    ids = [f"{rng.integers(1_000_000):06d}-{i}" for i in range(len(db))]  # ids not in row order
    index = VectorIndex(6)
    index.add(ids, db)
    queries = tied(rng, n_queries, dim=6)
    got = index.search(queries, k)
    assert_same(got, brute_force(db, ids, queries, k))  # scores exact: multiples of 1/4
    # the k-th place is tied with vectors left out, more of them than the first search window
    # (k + 8) holds, so the window had to grow
    tied_outside = [int((queries[j] @ db.T == row[-1][1]).sum()) - sum(
        s == row[-1][1] for _, s in row) for j, row in enumerate(got)]
    assert max(tied_outside) > 8


def test_exclude_and_short_results():
    rng = np.random.default_rng(2)
    db = tied(rng, 300)
    ids = [f"p{i}" for i in range(len(db))]
    index = VectorIndex(16)
    index.add(ids, db)
    excluded = set(ids[::3]) | {"not-there"}
    got = index.search(db[:25], 12, exclude=excluded)
    assert_same(got, brute_force(db, ids, db[:25], 12, exclude=excluded))
    assert all(len(row) == 12 and not ({i for i, _ in row} & excluded) for row in got)
    # the query's own id is the usual exclusion ("similar to this shot", itself left out)
    assert index.search(db[:1], 1, exclude={"p0"})[0][0][0] != "p0"
    assert index.search(db[:2], 5, exclude=set(ids)) == [[], []]
    assert len(index.search(db[:1], 1000)[0]) == 300
    assert index.search(db[:1], 0) == [[]]
    assert VectorIndex(16).search(db[:2], 3) == [[], []]


def test_replacement_and_removal_keep_the_id_map():
    rng = np.random.default_rng(3)
    db = unit(rng, 200, 32)
    ids = [f"E@{i}" for i in range(200)]
    index = VectorIndex(32)
    index.add(ids[:150], db[:150])
    new = unit(rng, 50, 32)
    index.add(ids[100:200], np.concatenate([new, db[150:200]]))  # E@100..149 replaced
    assert len(index) == 200 and index.ids() == sorted(ids)
    top = index.search(new, 1)
    assert [row[0][0] for row in top] == ids[100:150]
    assert all(abs(row[0][1] - 1) < 1e-5 for row in top)
    # the old vectors of replaced ids are gone: they no longer find themselves
    assert all(row[0][1] < 0.99 for row in index.search(db[100:150], 1))
    assert index.remove(["E@0", "E@1", "E@0", "missing"]) == 2
    assert len(index) == 198 and "E@0" not in index and "E@2" in index
    hits = {i for row in index.search(db[:10], 200) for i, _ in row}
    assert hits == set(ids) - {"E@0", "E@1"}
    index.add(["E@0"], db[:1])  # an id can come back after removal
    assert index.search(db[:1], 1)[0][0][0] == "E@0" and len(index) == 199


def test_rebuild_equals_incremental_updates_exactly():
    rng = np.random.default_rng(4)
    db = unit(rng, 400, 20)
    ids = [f"s{i}" for i in range(400)]
    incremental = VectorIndex(20)
    incremental.add(ids[:300], db[:300])
    replacement = unit(rng, 60, 20)
    incremental.add(ids[40:100], replacement)
    incremental.remove(ids[200:260])
    incremental.add(ids[300:], db[300:])
    final = dict(zip(ids, db))
    final.update(zip(ids[40:100], replacement))
    for i in ids[200:260]:
        del final[i]
    order = rng.permutation(len(final))  # the store may list them in any order
    items = list(final.items())
    rebuilt = VectorIndex(20)
    rebuilt.rebuild(items[j] for j in order)
    queries = unit(rng, 30, 20)
    assert rebuilt.ids() == incremental.ids() == sorted(final)
    assert rebuilt.search(queries, 15) == incremental.search(queries, 15)
    rebuilt.rebuild([])
    assert len(rebuilt) == 0 and rebuilt.kind == EXACT


# ---------------------------------------------------------------------------------------------
# Approximate kind


def test_approximate_recall_at_10(approx_data):
    ids, db, queries, exact = approx_data
    index = VectorIndex(64, exact_threshold=5_000)
    index.add(ids, db)
    assert index.kind == IVF_SQ8 and len(index) == 20_000
    assert index.nlist == default_nlist(20_000) == 128 and index.nprobe == 8
    got = index.search(queries, 10)
    assert recall_at(got, exact, 10) >= 0.95
    assert all(a[1] >= b[1] for row in got for a, b in itertools.pairwise(row))
    # nprobe for one call: every cell scanned leaves only the 8-bit codes' rounding; one cell
    # misses neighbours
    assert recall_at(index.search(queries, 10, nprobe=10_000), exact, 10) >= 0.98
    assert recall_at(index.search(queries, 10, nprobe=1), exact, 10) < 0.93
    assert index.nprobe == 8


def test_growing_past_the_threshold_turns_approximate(approx_data):
    ids, db, queries, exact = approx_data
    index = VectorIndex(64, exact_threshold=12_000)
    index.add(ids[:8_000], db[:8_000])
    assert index.kind == EXACT
    index.add(ids[5_000:], db[5_000:])  # 3 000 replaced, the rest new: 20 000
    assert index.kind == IVF_SQ8 and len(index) == 20_000 and index.trained_count == 20_000
    assert index.ids() == sorted(ids)
    assert recall_at(index.search(queries, 10), exact, 10) >= 0.95
    assert not index.needs_rebuild


def test_approximate_id_map_on_replace_remove_and_rebuild(approx_data):
    ids, db, queries, exact = approx_data
    rng = np.random.default_rng(5)
    index = VectorIndex(64, exact_threshold=5_000)
    index.add(ids, db)
    gone = ids[:1_000]
    index.remove(gone)
    moved = clustered(rng, 500, 64, clusters=5)
    index.add(ids[1_000:1_500], moved)
    assert len(index) == 19_000 and not (set(gone) & set(index.ids()))
    top = index.search(moved[:50], 1)
    assert [row[0][0] for row in top] == ids[1_000:1_050]
    hits = {i for row in index.search(queries, 50) for i, _ in row}
    assert not hits & set(gone)
    # rebuild from the same items: same recall against the same exact reference
    items = dict(zip(ids, db))
    items.update(zip(ids[1_000:1_500], moved))
    for i in gone:
        del items[i]
    rebuilt = VectorIndex(64, exact_threshold=5_000)
    rebuilt.rebuild(items.items())
    assert rebuilt.kind == IVF_SQ8 and rebuilt.ids() == index.ids()
    current = [(i, v) for i, v in items.items()]
    reference = brute_force(np.stack([v for _, v in current]), [i for i, _ in current],
                            queries, 10)
    r_inc = recall_at(index.search(queries, 10, nprobe=16), reference, 10)
    r_reb = recall_at(rebuilt.search(queries, 10, nprobe=16), reference, 10)
    assert r_inc >= 0.95 and r_reb >= 0.95 and abs(r_inc - r_reb) <= 0.02
    # exclusion on the approximate kind
    row = rebuilt.search(queries[:1], 10, exclude={exact[0][0][0]})[0]
    assert len(row) == 10 and exact[0][0][0] not in {i for i, _ in row}


def test_needs_rebuild_after_shrinking(approx_data):
    ids, db, _, _ = approx_data
    index = VectorIndex(64, exact_threshold=5_000)
    index.add(ids[:6_000], db[:6_000])
    assert index.kind == IVF_SQ8 and not index.needs_rebuild
    index.remove(ids[:4_000])
    assert index.kind == IVF_SQ8 and index.needs_rebuild
    index.rebuild((i, v) for i, v in zip(ids[4_000:6_000], db[4_000:6_000]))
    assert index.kind == EXACT and not index.needs_rebuild


# ---------------------------------------------------------------------------------------------
# Persistence


@pytest.mark.parametrize("threshold", [50_000, 5_000])
def test_save_load_round_trip(tmp_path, approx_data, threshold):
    ids, db, queries, _ = approx_data
    n = 8_000
    index = VectorIndex(64, exact_threshold=threshold, nprobe=12)
    index.add(ids[:n], db[:n])
    index.remove(ids[:10])
    index.save(tmp_path / "vec")
    loaded = VectorIndex.load(tmp_path / "vec")
    assert (loaded.kind, len(loaded), loaded.nprobe, loaded.dim) == (
        index.kind, len(index), index.nprobe, 64)
    assert loaded.ids() == index.ids()
    assert loaded.search(queries, 10) == index.search(queries, 10)
    manifest = json.loads((tmp_path / "vec" / "manifest.json").read_text())
    assert manifest["kind"] == index.kind and manifest["count"] == n - 10
    assert manifest["dim"] == 64 and manifest["version"] == 1
    # the loaded index keeps working: new labels never collide with saved ones
    loaded.add(["fresh"], db[n:n + 1])
    assert loaded.search(db[n:n + 1], 1)[0][0][0] == "fresh" and len(loaded) == n - 9
    assert VectorIndex.load(tmp_path / "vec", nprobe=3).nprobe == (3 if threshold < n else 0)


def test_save_is_atomic_and_replaces_the_old_generation(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    db = unit(rng, 50, 8)
    index = VectorIndex(8)
    index.add([f"a{i}" for i in range(50)], db)
    target = tmp_path / "vec"
    index.save(target)
    first = sorted(os.listdir(target))
    index.remove(["a0", "a1"])
    index.save(target)
    assert len(os.listdir(target)) == 3 and sorted(os.listdir(target)) != first
    assert len(VectorIndex.load(target)) == 48

    # a crash before the manifest is replaced: the new data files exist, the old index loads
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    index.remove(["a2"])
    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        index.save(target)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(VectorIndex.load(target)) == 48
    index.save(target)  # the next save tidies the orphaned files
    assert len(os.listdir(target)) == 3 and len(VectorIndex.load(target)) == 47


def test_load_rejects_missing_foreign_and_inconsistent_directories(tmp_path):
    with pytest.raises(VectorIndexError, match="no vector index"):
        VectorIndex.load(tmp_path / "absent")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(VectorIndexError, match="not a tvindex-vectors manifest"):
        VectorIndex.load(tmp_path / "foreign")
    index = VectorIndex(4)
    index.add(["x", "y"], np.eye(4, dtype=np.float32)[:2])
    index.save(tmp_path / "ok")
    path = tmp_path / "ok" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(manifest | {"count": 3}))
    with pytest.raises(VectorIndexError, match="inconsistent"):
        VectorIndex.load(tmp_path / "ok")
    path.write_text(json.dumps(manifest | {"version": 99}))
    with pytest.raises(VectorIndexError, match="version 99"):
        VectorIndex.load(tmp_path / "ok")
    path.write_text(json.dumps(manifest))
    (tmp_path / "ok" / manifest["index_file"]).write_bytes(b"garbage")
    with pytest.raises(VectorIndexError, match="cannot read"):
        VectorIndex.load(tmp_path / "ok")


def test_checksums_are_recorded_on_save_and_checked_on_load(tmp_path):
    rng = np.random.default_rng(8)
    index = VectorIndex(8)
    index.add([f"a{i}" for i in range(20)], unit(rng, 20, 8))
    d = tmp_path / "vec"
    sums = index.save_files(d)
    manifest = json.loads((d / "manifest.json").read_text())
    assert set(sums) == {"manifest.json", manifest["index_file"], manifest["ids_file"]}
    for name, record in sums.items():
        data = (d / name).read_bytes()
        assert record == {"size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()}
    assert VectorIndex.load(d, checksums=sums).ids() == index.ids()
    faiss_file = d / manifest["index_file"]
    size = faiss_file.stat().st_size
    data = bytearray(faiss_file.read_bytes())
    data[size // 2] ^= 0xFF  # same size, one byte other
    faiss_file.write_bytes(bytes(data))
    with pytest.raises(VectorIndexError, match="differs from the recorded sha256"):
        VectorIndex.load(d, checksums=sums)
    faiss_file.write_bytes(b"\0" * (size - 3))
    with pytest.raises(VectorIndexError, match=f"{size - 3} bytes, {size} recorded"):
        VectorIndex.load(d, checksums=sums)
    faiss_file.unlink()
    with pytest.raises(VectorIndexError, match="missing"):
        VectorIndex.load(d, checksums=sums)
    with pytest.raises(VectorIndexError, match="missing"):
        VectorIndex.load(d)  # without checksums too: never an empty index
    index.save_files(d)  # a new generation: the old record does not name its files
    with pytest.raises(VectorIndexError, match="differs from the recorded sha256|not the file"):
        VectorIndex.load(d, checksums=sums)


def _planted_catalogue(tmp_path):
    from test_recommend import tags_for
    from test_store import OBJ, SCN

    from search.backends.sqlite.store import SqliteStore
    from tvindex.core.records import EpisodeRecord, ProgrammeRecord

    store = SqliteStore(tmp_path / "cat.sqlite", top_k=0)
    layout = {"cooking": ["c1", "c2"], "sport": ["s1"]}
    store.upsert_catalogue([ProgrammeRecord(p, p.title()) for p in layout],
                           [EpisodeRecord(e, p, e, str(tmp_path / f"{e}.mp4"))
                            for p, eps in layout.items() for e in eps])
    store.register_label_sets([OBJ, SCN])
    rng = np.random.default_rng(0)
    for p, eps in layout.items():
        for e in eps:
            store.write_episode(tags_for(e, p, 3, rng))
    return store, rng


def test_state_without_checksums_loads_unverified_and_sync_records_them(tmp_path):
    from search.vector_catalogue import VectorCatalogue

    store, _ = _planted_catalogue(tmp_path)
    vectors = VectorCatalogue(store, tmp_path / "vectors", check_interval_s=0.0)
    vectors.sync()
    want = vectors.search("shot", store.embeddings("shot")[1][0], 5)
    state_path = vectors.dir / "state.json"
    old = json.loads(state_path.read_text())
    del old["files"]  # what a sync before checksums wrote
    state_path.write_text(json.dumps(old))
    reader = VectorCatalogue(store, vectors.dir, check_interval_s=0.0)
    status = reader.status()
    assert status["damaged"] == {} and status["current"]
    assert {lv: v["status"] for lv, v in status["levels"].items()} == {
        "shot": "unverified", "episode": "unverified", "programme": "unverified"}
    assert reader.search("shot", store.embeddings("shot")[1][0], 5) == want
    report = reader.sync()  # nothing changed in the store: still rewrites, with checksums
    assert report.repaired == {} and not report.rebuilt
    assert set(json.loads(state_path.read_text())["files"]) == {"shot", "episode", "programme"}
    assert {v["status"] for v in VectorCatalogue(store, vectors.dir).status()[
        "levels"].values()} == {"ok"}
    assert reader.search("shot", store.embeddings("shot")[1][0], 5) == want
    # an old state with a broken file: damaged (FAISS cannot read it), not empty
    state_path.write_text(json.dumps(old | {"sync_id": "old"}))
    (faiss_file,) = (vectors.dir / "shot").glob("index-*.faiss")
    faiss_file.write_bytes(b"garbage")
    status = VectorCatalogue(store, vectors.dir).status()
    assert list(status["damaged"]) == ["shot"]
    assert "cannot read the index files" in status["damaged"]["shot"]
    store.close()


def test_readers_never_see_a_sync_in_progress_as_damage(tmp_path):
    """A reader that reads state.json while another instance is replacing the files waits
    for that sync (shared lock) and looks again, instead of calling the level damaged."""
    import threading

    from test_recommend import tags_for

    from search.vector_catalogue import VectorCatalogue, VectorsDamaged

    store, rng = _planted_catalogue(tmp_path)
    writer = VectorCatalogue(store, tmp_path / "vectors")
    writer.sync()
    reader = VectorCatalogue(store, writer.dir)
    stop = threading.Event()
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                for level in ("shot", "episode", "programme"):
                    reader.index(level)
            except VectorsDamaged as exc:
                errors.append(exc)
                return

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads finely
    thread = threading.Thread(target=read)
    thread.start()
    try:
        for n in range(40):
            store.write_episode(tags_for("c1", "cooking", 2 + n % 3, rng))
            writer.sync()
    finally:
        stop.set()
        thread.join(30)
        sys.setswitchinterval(switch)
    assert errors == []
    store.close()


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_a_clear_value_error():
    index = VectorIndex(8)
    good = unit_rows(np.ones((2, 8)), strict=True)
    cases = [
        (lambda: index.add(["a", "b"], np.ones((2, 7)) / np.sqrt(7)), "dimension 7, the index 8"),
        (lambda: index.add(["a"], good[0]), "must be 2-D"),
        (lambda: index.add(["a", "b"], np.stack([good[0], np.full(8, np.nan)])),
         "row 1 has NaN"),
        (lambda: index.add(["a", "b"], good * 2), "row 0 has L2 norm 2"),
        (lambda: index.add(["a"], good), "1 ids for 2 vectors"),
        (lambda: index.add(["a", "a"], good), "'a' appears twice"),
        (lambda: index.add("ab", good), "not one string"),
        (lambda: index.add(["a", ""], good), "non-empty strings"),
        (lambda: index.add(["a", "b"], np.array([["x"] * 8] * 2)), "must be numbers"),
        (lambda: index.search(good[:, :4], 3), "dimension 4"),
        (lambda: index.search(np.ones((1, 1, 8)), 3), "must be 2-D"),
        (lambda: index.search(good, -1), "non-negative integer"),
        (lambda: index.search(good, 2.5), "non-negative integer"),
        (lambda: index.search(good, 3, exclude="a"), "not one string"),
        (lambda: index.search(good, 3, nprobe=0), "nprobe must be a positive integer"),
        (lambda: index.rebuild([("a", good[0]), ("a", good[1])]), "'a' appears twice"),
        (lambda: index.rebuild([("a", good[0]), ("b", good[1, :4])]), "item 1 .'b'.: vector of"),
        (lambda: index.rebuild([("a", good[0]), ("b", good[1] * np.nan)]),
         r"item 1 \('b'\): vector has NaN"),
        (lambda: VectorIndex(0), "dim must be a positive integer"),
        (lambda: unit_rows(np.zeros((2, 3)), strict=True), "row 0 is a zero vector"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert len(index) == 0  # nothing half-added
    index.add(["a", "b"], good.astype(np.float64))  # float64 and lists of floats are accepted
    index.add(["c"], good[:1].tolist())
    assert len(index) == 3


# ---------------------------------------------------------------------------------------------
# GPU (only where FAISS is a GPU build and sees a device)


@pytest.mark.skipif(not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0,
                    reason="needs a FAISS GPU build and a GPU (faiss-cpu here)")
def test_gpu_search_matches_cpu(approx_data):
    ids, db, queries, _ = approx_data
    for threshold in (50_000, 5_000):
        cpu = VectorIndex(64, exact_threshold=threshold, use_gpu=False)
        gpu = VectorIndex(64, exact_threshold=threshold, use_gpu=True)
        cpu.add(ids, db)
        gpu.add(ids, db)
        want, got = cpu.search(queries, 10), gpu.search(queries, 10, exclude={ids[0]})
        assert gpu._gpu_index is not None
        assert recall_at(got, want, 10) >= (0.99 if threshold == 50_000 else 0.95)
