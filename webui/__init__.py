"""The web layer: server-rendered pages for editors and a versioned JSON API (``/api/v1``).

``create_app(settings, store=None)`` builds the Flask application; ``tvindex serve`` runs it
with waitress. The web layer talks to the catalogue only through ``search.engine`` and the
``CatalogueStore`` interface.
"""

from webui.app import create_app

__all__ = ["create_app"]
