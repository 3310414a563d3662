"""tvindex: content-based indexing and search for a broadcaster's video catalogue."""

__version__ = "0.1.0"
