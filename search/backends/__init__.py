"""The catalogue store backends (``sqlite``, ``elasticsearch``), registered by dotted path in
``search.store.STORE_BACKENDS``, and what they derive alike from the indexed tags
(``derive``)."""
