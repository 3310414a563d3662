"""The one L2 row normaliser, for frame embeddings, stored vectors and queries.

Rules, the same everywhere: each row of a [N, D] matrix (or a single [D] vector) is divided by
its Euclidean norm; a row of zeros stays zeros (never NaN) unless ``strict``, where a zero or
non-finite row is an error naming the row.
"""

from __future__ import annotations

import numpy as np


class NormaliseError(ValueError):
    """A row cannot be normalised under ``strict``: zeros, NaN or infinity."""


def unit_rows(x, *, dtype=np.float32, eps: float = 1e-12, strict: bool = False,
              in_place: bool = False, chunk: int = 16384) -> np.ndarray:
    """[N, D] (or [D]) -> rows of unit L2 norm.

    By default a new array computed in float64 and returned as ``dtype`` (frame embeddings,
    queries). ``in_place``: ``x`` must be a float32 [N, D] array; it is normalised in place
    by chunks of rows in float32, without an [N, D] temporary (``np.linalg.norm`` makes one,
    and is ~30x slower on a million rows), and returned.
    """
    if in_place:
        for lo in range(0, len(x), chunk):
            c = x[lo:lo + chunk]
            norms = np.sqrt(np.einsum("ij,ij->i", c, c))[:, None]
            np.divide(c, norms, out=c, where=norms > 0)
        return x
    a = np.asarray(x, np.float64)
    one = a.ndim == 1
    a = np.atleast_2d(a)
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    if strict:
        if not np.isfinite(a).all():
            raise NormaliseError("vectors contain NaN or infinite values")
        if (norms == 0).any():
            raise NormaliseError(f"row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is a zero "
                                 "vector")
    out = (a / np.maximum(norms, eps)).astype(dtype, copy=False)
    return out[0] if one else out
