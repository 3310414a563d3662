"""Streaming a transfer set into PyTorch: shard order shuffled per epoch, a shuffle buffer,
augmentation, normalisation. Each DataLoader worker reads its own shards."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from indexer.taggers.preprocess import to_chw_float
from training.distill.transfer import Row, TransferSet

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def shuffled(items: Iterable[Row], buffer: int, rng: np.random.Generator) -> Iterator[Row]:
    """Approximate shuffle with a bounded buffer (exact when the buffer holds everything)."""
    pool: list[Row] = []
    for item in items:
        if len(pool) < buffer:
            pool.append(item)
            continue
        j = int(rng.integers(len(pool)))
        yield pool[j]
        pool[j] = item
    rng.shuffle(pool)  # type: ignore[arg-type]
    yield from pool


class TransferStream(IterableDataset):
    """Yields ``(x [3, S, S] float32 normalised, {label set: teacher logits [n]})``.

    ``transform(image, rng) -> [S, S, 3] uint8`` (augmentation for training, the student's
    plain resize for evaluation). ``views``: include the extra teacher-tagged crops.
    """

    def __init__(self, ts: TransferSet, split: str, transform: Transform,
                 mean: tuple[float, float, float], std: tuple[float, float, float], *,
                 views: bool = True, shuffle: bool = True, seed: int = 0,
                 buffer: int = 4096) -> None:
        self.ts, self.split, self.transform = ts, split, transform
        self.mean, self.std = mean, std
        self.views, self.shuffle, self.seed, self.buffer = views, shuffle, seed, buffer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.ts.count(self.split, views=self.views)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        info = get_worker_info()
        wid, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, wid])
        shards = [i for i in range(len(self.ts.shards)) if i % workers == wid]
        if self.shuffle:
            rng.shuffle(shards)
        rows: Iterable[Row] = self.ts.rows(self.split, views=self.views, shard_order=shards)
        if self.shuffle:
            rows = shuffled(rows, self.buffer, rng)
        for row in rows:
            image = self.transform(row.image(), rng)
            x = torch.from_numpy(to_chw_float([image], self.mean, self.std)[0])
            yield x, {name: torch.from_numpy(np.asarray(v, np.float32))
                      for name, v in row.logits.items()}
