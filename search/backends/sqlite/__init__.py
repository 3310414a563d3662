"""The embedded SQLite catalogue store (``store.SqliteStore``)."""
