"""The Elasticsearch catalogue store (``store.EsStore``)."""
