"""Evaluation: how well the student agrees with its teachers and how good retrieval is.

- :mod:`~training.evaluation.metrics`: top-1 agreement and nDCG@k (thesis 5.3), shared by
  distillation (``training.distill``) and the retrieval-quality report;
- :mod:`~training.evaluation.retrieval`: retrieval agreement of a catalogue with a reference
  catalogue (nDCG@k per label and level);
- :mod:`~training.evaluation.recommendation`: recommendation quality, leave one episode out;
- :mod:`~training.evaluation.benchmarks`: tagging agreement and latency read from the
  benchmarks' JSON outputs;
- :mod:`~training.evaluation.report`: the retrieval-quality report (issue 8), drawn by
  :mod:`~training.evaluation.plots` and :mod:`~training.evaluation.page`;
  :mod:`~training.evaluation.results` and :mod:`~training.evaluation.display` hold what the
  others share (JSON-able results; names and number formats).

Pure functions over stores and the benchmarks' JSON files; every result is plain JSON-able data.
The submodules are imported on demand (distillation needs only ``metrics``).
"""
