"""The ``taggers.openclip`` section (the OpenCLIP tagger: image embeddings per shot, no
labels) and the ``visual`` section (how ``visual:"..."`` query terms are answered)."""

from __future__ import annotations

from pydantic import Field

from tvindex.settings.base import _Section


class OpenClipSettings(_Section):
    # An OpenCLIP architecture name (open_clip.list_models(), e.g. ViT-B-32), or the name of
    # the architecture ``config`` describes.
    arch: str = "ViT-B-32"
    # A model config JSON ({"embed_dim", "vision_cfg", "text_cfg"}, open_clip's format) for
    # an architecture open_clip does not ship; a file name (model resolver) or a path. Empty:
    # open_clip's own config of ``arch``.
    config: str = ""
    # The weights (a state dict, e.g. open_clip_pytorch_model.bin of a Hugging Face OpenCLIP
    # repository): a file name (model resolver) or a path. Empty: the file
    # <model dir>/openclip/<arch>/open_clip_pytorch_model.bin (or the same under the cache).
    # Never downloaded, and never replaced by random weights.
    weights: str = ""


class VisualSettings(_Section):
    # Shots each visual: term takes from the CLIP index (the nearest by cosine), before the
    # other terms and filters narrow them.
    top_k: int = Field(100, ge=1, le=10_000)
    # Shots less similar than this (cosine of the CLIP text and image embeddings) are no
    # match. Real ViT-B-32 weights give roughly 0.25-0.35 to a fitting caption; the value is
    # not calibrated (no weights were available when it was written; docs/visual-search.md).
    min_similarity: float = Field(0.2, ge=-1, le=1)
