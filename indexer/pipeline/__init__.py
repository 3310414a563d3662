"""The pipelined indexer: decoding in worker processes, batched tagging in the main process
(one per device), one writer, bounded hand-over between them (``engine``, ``workers``,
``decode``); the taggers built once per run and only when something needs tagging
(``models``); the same run on a Ray cluster (``ray_engine``, the driver; ``ray_tasks``, what
runs on the cluster)."""
