"""Genre and programme-type tagging: a multi-label classifier over each episode's sequence of
segment embeddings (and optionally its label profile), trained on the catalogue's own genre
metadata and used to tag the episodes and programmes that have none.

``models`` (one registry: mean-linear, meanmax-mlp, lstm, tcn), ``losses`` (bce, asl),
``metrics`` (top-k and thresholded P/R/F1, micro/macro/samples; mAP), ``splits`` (by
programme), ``data`` (sequences from the store), ``config``, ``fit`` (training, resumable),
``predict``, ``synthetic`` (the benchmark's generated episodes). See docs/genres.md.
"""
