"""The web app over the hand-built test catalogue (``test_webui_catalogue.build_catalogue``),
as fixtures every web test file may use: ``store``, ``app`` (with the API key set) and
``client``. A test file that needs another catalogue or app defines its own fixture of the same
name, which wins. Registered in conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_webui_catalogue import API_KEY, build_catalogue, web_settings

from search.backends.sqlite.store import SqliteStore
from webui import create_app


@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    return build_catalogue(tmp_path)


@pytest.fixture()
def app(tmp_path: Path, store: SqliteStore) -> Flask:
    return create_app(web_settings(tmp_path, api_key=API_KEY), store)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()
