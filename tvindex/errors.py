"""The error every layer may raise for an expected failure caused by input or environment.

The command line prints it as one ``tvindex: error: ...`` line (exit 2), without a traceback.
Layer-specific errors (MediaError, StoreError, QueryError, ConfigError, ...) are listed beside
it in ``tvindex.cli``.
"""


class UserError(Exception):
    """An expected failure caused by input or environment; printed without a traceback."""
