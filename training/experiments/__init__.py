"""Reproductions of the reference thesis's experiments, each runnable as ``python -m``."""
