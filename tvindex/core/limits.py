"""Defaults every interface shares: how many results a listing shows when the caller does
not say (``tvindex search``/``similar --limit``, the API's ``limit``, the web UI's pages)."""

# Results per listing when no limit is given: the CLI, the JSON API and the web UI alike.
DEFAULT_LIMIT = 20
