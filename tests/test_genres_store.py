"""Genres in both stores: catalogue genres as ';'-separated lists, predicted genres with their
score and flag, and the ``genre:`` / ``anygenre:`` filters (tvindex.core.genres,
search/backends/*/genres.py). The store fixtures come from tests/test_store.py."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from test_store import (  # noqa: F401  (fixtures)
    OBJ,
    SCN,
    backend,
    empty_store,
    episode_tags,
    make_store,
    seg,
)

from search.engine import run_search
from search.query import parse_query
from tvindex.core.genres import GenreScore, split_genres
from tvindex.core.records import EpisodeRecord, ProgrammeRecord
from tvindex.core.store import CatalogueStore, StoreError


def test_split_genres_normalises_and_dedups():
    assert split_genres(" News ; SPORT;;news ;  sci   fi ") == ("news", "sport", "sci fi")
    assert split_genres("") == () and split_genres(None) == ()
    assert split_genres("drama") == ("drama",)


def test_anygenre_parses_and_round_trips():
    q = parse_query('object:car anygenre:news anygenre:"sci fi" genre:drama')
    assert q.any_genres == ("news", "sci fi") and q.genres == ("drama",)
    assert parse_query(q.to_query()) == q
    assert q.to_dict()["any_genres"] == ["news", "sci fi"]
    assert "any_genres" not in parse_query("object:car").to_dict()


@pytest.fixture()
def gstore(empty_store: CatalogueStore) -> CatalogueStore:  # noqa: F811
    s = empty_store
    s.upsert_catalogue(
        [ProgrammeRecord("beach", "Beach", genre="Nature; Documentary"),
         ProgrammeRecord("city", "City", genre="news"),
         ProgrammeRecord("mystery", "Mystery", genre="")],
        [EpisodeRecord("b1", "beach", "One", "/m/a.mp4", dt.date(2021, 5, 1)),
         EpisodeRecord("c1", "city", "Rush", "/m/c.mp4", dt.date(2022, 1, 1)),
         EpisodeRecord("m1", "mystery", "Unknown", "/m/m.mp4", dt.date(2022, 2, 1)),
         EpisodeRecord("m2", "mystery", "Unknown 2", "/m/n.mp4", dt.date(2022, 2, 8))])
    s.register_label_sets([OBJ, SCN])
    for eid in ("b1", "c1", "m1", "m2"):
        s.write_episode(episode_tags(eid, [
            seg(0, [[0.9, 0.8, 0.1, 0.0]], [[0.8, 0.1, 0.1]], 0.0),
            seg(1, [[0.9, 0.1, 0.7, 0.0]], [[0.1, 0.8, 0.1]], 5.0)]))
    return s


def hits(store: CatalogueStore, text: str, level: str) -> list[str]:
    return [h.id for h in run_search(store, text, level, limit=50).hits]


def test_catalogue_genre_is_a_list(gstore: CatalogueStore):
    assert hits(gstore, "object:person genre:documentary", "programme") == ["beach"]
    assert hits(gstore, "object:person genre:NATURE", "episode") == ["b1"]
    assert hits(gstore, "object:person genre:news genre:nature", "programme") == ["beach", "city"]
    assert len(hits(gstore, "object:person genre:documentary", "shot")) == 2
    assert hits(gstore, "object:person genre:drama", "episode") == []


def test_predicted_genres_round_trip_and_filter(gstore: CatalogueStore):
    assert gstore.predicted_genres("episode") == {}
    gstore.write_predicted_genres(
        {"m1": [GenreScore("News", 0.8, True), GenreScore("drama", 0.55, True)],
         "m2": [GenreScore("drama", 0.6, True)]},
        {"mystery": [GenreScore("drama", 0.575, True)]})
    got = gstore.predicted_genres("episode")
    assert got == {"m1": [GenreScore("news", 0.8, True), GenreScore("drama", 0.55, True)],
                   "m2": [GenreScore("drama", 0.6, True)]}
    assert gstore.predicted_genres("programme", ["mystery", "city"]) == {
        "mystery": [GenreScore("drama", 0.575, True)]}
    # genre: is the catalogue's alone; anygenre: adds the item's own predictions
    assert hits(gstore, "object:person genre:drama", "episode") == []
    assert sorted(hits(gstore, "object:person anygenre:drama", "episode")) == ["m1", "m2"]
    assert sorted(hits(gstore, "object:person anygenre:news", "episode")) == ["c1", "m1"]
    assert hits(gstore, "object:person anygenre:drama", "programme") == ["mystery"]
    assert sorted(hits(gstore, "object:person anygenre:news", "programme")) == ["city"]
    shots = hits(gstore, "object:person anygenre:drama", "shot")
    assert sorted({s.split("@")[0] for s in shots}) == ["m1", "m2"]
    # a new prediction replaces the item's old one; replace_all drops every other
    gstore.write_predicted_genres({"m1": [GenreScore("sport", 0.9, True)]}, {})
    assert gstore.predicted_genres("episode", ["m1"]) == {"m1": [GenreScore("sport", 0.9, True)]}
    assert hits(gstore, "object:person anygenre:news", "episode") == ["c1"]
    gstore.write_predicted_genres({"m2": [GenreScore("sport", 0.7, True)]}, {},
                                  replace_all=True)
    assert list(gstore.predicted_genres("episode")) == ["m2"]
    assert gstore.predicted_genres("programme") == {}
    assert hits(gstore, "object:person anygenre:drama", "programme") == []


def test_predictions_survive_reindex_and_unknown_ids_are_refused(gstore: CatalogueStore):
    gstore.write_predicted_genres({"m1": [GenreScore("drama", 0.7, True)]}, {})
    gstore.write_episode(episode_tags("m1", [
        seg(0, [[0.95, 0.1, 0.1, 0.0]], [[0.8, 0.1, 0.1]], 0.0)]))
    assert [s.split("@")[0] for s in hits(gstore, "object:person anygenre:drama", "shot")] \
        == ["m1"]
    with pytest.raises(StoreError):
        gstore.write_predicted_genres({"nope": [GenreScore("drama", 0.7, True)]}, {})
    with pytest.raises(StoreError):
        gstore.predicted_genres("shot")


def test_catalogue_genres_follow_metadata_changes(gstore: CatalogueStore):
    gstore.upsert_catalogue([ProgrammeRecord("city", "City", genre="Sport;News")], [])
    assert hits(gstore, "object:person genre:sport", "episode") == ["c1"]
    gstore.upsert_catalogue([ProgrammeRecord("city", "City", genre="comedy")], [])
    assert hits(gstore, "object:person genre:news", "episode") == []


def test_migration_5_splits_existing_genres(tmp_path):
    """A schema-4 catalogue's programme genres become rows when it is opened."""
    from search.backends.sqlite.schema import MIGRATIONS
    from search.backends.sqlite.store import SqliteStore

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for v in range(1, 5):
        for statement in MIGRATIONS[v].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '4'), ('generation', '0')")
    db.execute("INSERT INTO programmes (id, title, genre) VALUES ('p', 'P', 'News ; Sport;')")
    db.commit()
    db.close()
    with SqliteStore(path) as store:
        rows = store.db.execute("SELECT genre, predicted FROM programme_genres "
                                "ORDER BY genre").fetchall()
    assert rows == [("news", 0), ("sport", 0)]
