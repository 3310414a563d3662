"""The HTML pages on a hand-built catalogue: search (filters, levels, empty states, query
errors with suggestions), programme charts and similar programmes, player, labels."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from test_webui_catalogue import build_catalogue, web_settings

from search.backends.sqlite.store import SqliteStore
from search.query import QueryError
from webui import create_app
from webui.pages import compose_query, did_you_mean


class Collector(HTMLParser):
    """Start tags with their attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, **attrs: str | bool) -> list[dict[str, str | None]]:
        """Tags with these attribute values (True: the attribute is present)."""
        return [a for t, a in self.tags if t == tag
                and all((k in a) if v is True else a.get(k) == v for k, v in attrs.items())]

    def by_class(self, cls: str) -> list[tuple[str, dict]]:
        return [(t, a) for t, a in self.tags if cls in (a.get("class") or "").split()]


def parse(html: str) -> Collector:
    c = Collector()
    c.feed(html)
    return c


@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    return build_catalogue(tmp_path)


@pytest.fixture()
def client(tmp_path: Path, store: SqliteStore) -> FlaskClient:
    return create_app(web_settings(tmp_path), store).test_client()


def page(client: FlaskClient, url: str, status: int = 200) -> tuple[str, Collector]:
    resp = client.get(url)
    assert resp.status_code == status, (url, resp.status_code)
    assert resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    return html, parse(html)


def test_landing_page_offers_labels_and_programmes(client):
    html, doc = page(client, "/")
    assert "tvindex" in html and doc.find("input", name="q")
    chips = [a["href"] for a in doc.find("a") if "chip-link" in (a.get("class") or "")]
    assert "/?q=object:dog" in chips and "/?q=scene:beach" in chips
    assert "/programmes/beach-dogs" in [a["href"] for a in doc.find("a")]
    assert doc.find("input", type="radio", name="level", value="shot", checked=True)


def test_search_results_link_to_the_player_at_the_shot(client):
    html, doc = page(client, "/?q=object:dog")
    cards = doc.by_class("hit")
    assert len(cards) == 5  # the shots where dog is present
    links = [a["href"] for a in doc.find("a") if a.get("class") == "card-link"]
    assert "/episodes/bd2?shot=0&q=object:dog" in links  # the query: the player's label tracks
    assert "/thumbnails/bd2/0.jpg" in [i["src"] for i in doc.find("img")]
    assert "5</strong> shots match" in html
    assert re.search(r"dog <span class=\"chip-score\">0\.9[0-9]</span>", html)


def test_filters_add_to_the_query(client):
    html, doc = page(client, "/?q=object:dog&programme=beach-dogs&after=2020-01-01&level=episode")
    assert 'Searching <code>object:dog programme:beach-dogs after:2020-01-01</code>' in html
    assert [a["data-hit-id"] for _, a in doc.by_class("hit")] == ["bd1"]
    assert doc.find("option", value="beach-dogs", selected=True)
    assert doc.find("input", name="after", value="2020-01-01")


def test_filter_only_query(client):
    _, doc = page(client, "/?programme=dog-days")
    assert [a["data-hit-id"] for _, a in doc.by_class("hit")] == ["dd1@0", "dd1@1"]


def test_levels_episode_and_programme(client):
    _, doc = page(client, "/?q=object:dog&level=programme")
    assert [a["data-hit-id"] for _, a in doc.by_class("hit")][:1] == ["dog-days"]
    assert "/posters/programmes/dog-days.jpg" in [i["src"] for i in doc.find("img")]
    _, doc = page(client, "/?q=object:dog&level=episode")
    assert "/posters/episodes/bd2.jpg" in [i["src"] for i in doc.find("img")]


def test_no_results_suggests_labels(client):
    html, doc = page(client, "/?q=object:bicycle&programme=beach-dogs")
    assert "No shot matches" in html and "Nothing in the catalogue matches" in html
    chips = [a["href"] for a in doc.find("a") if "chip-link" in (a.get("class") or "")]
    assert chips  # something to click instead


def test_unknown_label_offers_the_closest_names(client):
    html, doc = page(client, "/?q=object:dgo%20scene:beach", status=400)
    assert "unknown label &#39;dgo&#39;" in html
    fixes = [a["href"] for a in doc.find("a") if "chip-link" in (a.get("class") or "")]
    assert "/?q=object:dog+scene:beach&level=shot" in fixes


def test_syntax_error_points_at_the_column(client):
    html, _ = page(client, "/?q=dog%20OR", status=400)
    assert "dangling OR at column 5" in html
    assert "dog OR\n    ^" in html


def test_bad_form_values_are_400_pages(client):
    assert "level must be one of" in page(client, "/?q=dog&level=x", 400)[0]
    assert "after must be a date" in page(client, "/?q=dog&after=yesterday", 400)[0]
    assert "unknown programme" in page(client, "/?programme=nope", 400)[0]


def test_pagination_links(client):
    _, doc = page(client, "/?q=object:person&limit=3")
    nxt = [a["href"] for a in doc.find("a", rel="next")]
    assert nxt == ["/?q=object:person&limit=3&offset=3"]
    assert not doc.find("a", rel="prev")
    _, doc = page(client, nxt[0])
    assert [a["href"] for a in doc.find("a", rel="prev")] == ["/?q=object:person&limit=3&offset=0"]


def test_programme_page_charts_episodes_and_similar(client):
    html, doc = page(client, "/programmes/beach-dogs")
    charts = doc.find("figure")
    assert {c["data-label-set"] for c in charts} == {"coco80", "places365"}
    score_bars = [a for _, a in doc.by_class("bar-score")]
    coverage_bars = [a for _, a in doc.by_class("bar-coverage")]
    assert len(score_bars) == len(coverage_bars) >= 5
    assert all(0 <= float(a["width"]) <= 100 for a in score_bars + coverage_bars)
    assert "/episodes/bd1" in [a["href"] for a in doc.find("a")]
    similar = html[html.index('id="similar"'):]
    assert similar.index("/programmes/dog-days") < similar.index("/programmes/city")


def test_programme_without_indexed_episodes(client):
    html, _ = page(client, "/programmes/kitchen")
    assert "No episode of this programme is indexed yet" in html
    assert "Nothing to compare yet" in html
    page(client, "/programmes/nope", 404)


def test_player_starts_at_the_shot_in_file_time(client):
    _, doc = page(client, "/episodes/c1?shot=1")
    (video,) = doc.find("video")
    assert video["src"] == "/media/c1#t=15.000,20.000"  # a media fragment: no JS needed
    assert float(video["data-start"]) == 15.0  # file time: the episode is [10, 20) of c.mp4
    assert (float(video["data-episode-start"]), float(video["data-episode-end"])) == (10, 20)
    shots = [a for _, a in doc.by_class("shot-card")]
    assert [a["data-seek"] for a in shots] == ["10.0", "15.0"]
    assert "is-current" in shots[1]["class"]
    assert len(doc.by_class("shot-rect")) == 2


def test_player_without_a_shot_starts_at_the_episode(client):
    _, doc = page(client, "/episodes/c1")
    assert float(doc.find("video")[0]["data-start"]) == 10.0
    page(client, "/episodes/c1?shot=7", 404)
    page(client, "/episodes/c1?shot=x", 400)
    page(client, "/episodes/nope", 404)


def test_unplayable_format_says_so(tmp_path, store: SqliteStore):
    media = tmp_path / "media" / "x.avi"
    media.write_bytes(b"RIFF....AVI ")
    store.upsert_catalogue([], [store_episode("bd2", str(media))])
    client = create_app(web_settings(tmp_path), store).test_client()
    html, doc = page(client, "/episodes/bd2")
    assert not doc.find("video") and "Browsers cannot play this file" in html


def store_episode(eid: str, path: str):
    from tvindex.core.records import EpisodeRecord

    return EpisodeRecord(eid, "beach-dogs", "Two", path, dt.date(2019, 5, 1))


def test_labels_page(client):
    _, doc = page(client, "/labels")
    tabs = [a["href"] for a in doc.find("a") if a["href"].startswith("/labels?set=")]
    assert tabs == ["/labels?set=coco80", "/labels?set=places365"]
    rows = [a["href"] for a in doc.find("a") if a["href"].startswith("/?q=object:")]
    assert rows[0] == "/?q=object:dog"  # carried by the most episodes
    assert "/?q=object:%22traffic+light%22" in rows
    _, doc = page(client, "/labels?set=places365&match=for")
    assert [a["href"] for a in doc.find("a") if a["href"].startswith("/?q=scene:")] == [
        "/?q=scene:%22forest+path%22"]
    page(client, "/labels?set=nope", 404)


def test_empty_catalogue(tmp_path):
    client = create_app(web_settings(tmp_path / "empty")).test_client()
    assert "The catalogue is empty" in page(client, "/")[0]
    assert "No label sets yet" in page(client, "/labels")[0]
    assert "No programmes yet" in page(client, "/programmes")[0]


def test_compose_query_quotes_and_orders_filters():
    assert compose_query(" dog ", "la placa", dt.date(2020, 1, 2), None) == (
        'dog programme:"la placa" after:2020-01-02')
    assert compose_query("", "", None, dt.date(2021, 1, 1)) == "before:2021-01-01"


@pytest.mark.parametrize(("query", "message", "known", "fixed"), [
    ("object:bycicle -car", ("unknown label 'bycicle' in 'object:bycicle' (searched coco80); "
     "did you mean: bicycle, broccoli?"), {"bicycle", "broccoli"},
     ["object:bicycle -car", "object:broccoli -car"]),
    ('object:"trafic light"', ("unknown label 'trafic light' in 'object:\"trafic light\"' "
     "(searched coco80); did you mean: traffic light?"), {"traffic light"},
     ['object:"traffic light"']),
    ("potters", "unknown label 'potters'; did you mean: potter's wheel?", {"potter's wheel"},
     ['"potter\'s wheel"']),
    ("programme:ciutad", "unknown programme 'ciutad'; did you mean: Ciutat, en bici?",
     {"Ciutat, en bici"}, ['programme:"Ciutat, en bici"']),
])
def test_did_you_mean_rewrites_the_query(query, message, known, fixed):
    assert [f["query"] for f in did_you_mean(query, QueryError(message), known)] == fixed
