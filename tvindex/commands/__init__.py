"""One module per ``tvindex`` sub-command (see ``tvindex/cli.py``)."""
