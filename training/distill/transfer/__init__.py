"""The transfer set: frames with every teacher's logits, cached once, streamed for training.

Layout of a transfer-set folder (copy it as is to a GPU machine)::

    index.json          what the set holds: label sets, teachers, parameters, shards, sources
    shard-00000.npz     up to ``shard_size`` frames: JPEG bytes + logits + per-frame metadata
    shard-00001.npz     ...

A shard is a plain ``.npz`` (no pickles): ``ids``, ``sources``, ``groups``, ``splits``,
``kinds`` (strings), ``time_s``, ``view``, ``jpeg`` (all JPEGs concatenated, uint8) with
``offsets`` [n + 1], and ``logits__<label set>`` [n, labels] float32. Readers go shard by
shard, so the set can grow beyond memory.

Splits are by source, never by frame: every frame of a video (or catalogue programme, or
group of near-duplicate photos) lands in the split that a hash of its group id picks, so test
frames come from footage the student never saw. Extraction resumes: frames already stored
(by id) are skipped, so re-running after a crash continues where it stopped.

Modules: ``layout`` (the format's names, ``TransferError``), ``sources`` (what frames come
from, and the split), ``frames`` (a source's frames, JPEG coding), ``writing`` (``extract``)
and ``reading`` (``TransferSet``).
"""

from __future__ import annotations

from training.distill.transfer.frames import (
    decode_jpeg,
    encode_jpeg,
    random_view,
    read_image,
    source_frames,
)
from training.distill.transfer.layout import (
    FORMAT,
    IMAGE_EXTENSIONS,
    INDEX_FILE,
    PROVENANCE_FILE,
    SPLITS,
    VERSION,
    TransferError,
)
from training.distill.transfer.reading import Row, TransferSet, describe
from training.distill.transfer.sources import (
    Source,
    discover_sources,
    sources_in_catalogue,
    sources_in_folder,
    split_of,
)
from training.distill.transfer.writing import ExtractParams, ExtractReport, extract

__all__ = [
    "FORMAT",
    "IMAGE_EXTENSIONS",
    "INDEX_FILE",
    "PROVENANCE_FILE",
    "SPLITS",
    "VERSION",
    "ExtractParams",
    "ExtractReport",
    "Row",
    "Source",
    "TransferError",
    "TransferSet",
    "decode_jpeg",
    "describe",
    "discover_sources",
    "encode_jpeg",
    "extract",
    "random_view",
    "read_image",
    "source_frames",
    "sources_in_catalogue",
    "sources_in_folder",
    "split_of",
]
