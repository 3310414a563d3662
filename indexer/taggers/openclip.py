"""OpenCLIP (PyPI ``open-clip-torch``, the ``clip`` extra) as a tagger of image embeddings,
and its text tower for ``visual:`` query terms.

CLIP embeds pictures and captions in one space, so a shot can be found by a sentence
(``visual:"a man riding a bicycle"``). The tagger emits no labels: per frame, the image
tower's embedding (``predict_visual``), which the indexer averages per shot and episode
beside, never instead of, the frame embedding of ``taggers.embedding`` (similar shots and
picture search keep theirs). :class:`OpenClipTextEncoder` loads the same model for queries
and answers with the same identity, so a query is only ever compared with its own space.

Offline only. The architecture comes from the configs open_clip ships (``arch``) or from a
config JSON (``config``); the weights from a local file, loaded here as a state dict, so
open_clip's ``pretrained=`` tags (which download) are never used. A missing file is a
``ModelNotFoundError`` naming where it was looked for, never a fallback to random weights.
The tokenizer's BPE vocabulary ships inside the open_clip wheel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.taggers.base import RuntimeContext, TaggerError, file_id, tagger_identity
from indexer.taggers.preprocess import center_crop
from indexer.taggers.registry import register_tagger
from indexer.taggers.torch_tagger import TorchTagger, read_state_dict, resolve_device
from indexer.weights import ModelNotFoundError, ModelResolver, find_local
from tvindex.core.vectors import unit_rows
from tvindex.settings.visual import OpenClipSettings

# The normalisation every OpenAI and LAION CLIP image tower was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHTS_FILE = "open_clip_pytorch_model.bin"  # the name in LAION's Hugging Face repositories
_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise TaggerError("the openclip tagger needs open-clip-torch: pip install -e '.[clip]' "
                          f"({exc})") from exc
    return open_clip


def default_weights(arch: str, models: ModelResolver) -> Path:
    """``openclip/<arch>/open_clip_pytorch_model.bin`` under the model directory, else under
    the cache; ModelNotFoundError naming both places otherwise."""
    if not arch or "/" in arch or "\\" in arch or arch.startswith("."):
        raise TaggerError(f"taggers.openclip.arch: {arch!r} is not an architecture name")
    relative = Path("openclip") / arch / WEIGHTS_FILE
    found, tried = find_local(relative, models)
    if found is not None:
        return found
    where = (", ".join(map(str, tried)) if tried
             else f"{relative} (TVINDEX_MODEL_DIR is not set)")
    raise ModelNotFoundError(
        f"OpenCLIP weights for {arch!r} not found; looked for {where}. To fix: put the "
        f"weights there (e.g. {WEIGHTS_FILE} of laion/CLIP-ViT-B-32-laion2B-s34B-b79K for "
        "ViT-B-32), or set taggers.openclip.weights to a file. CLIP weights are never "
        "downloaded")


def read_config(path: Path) -> dict[str, Any]:
    """A model config JSON in open_clip's format: at least embed_dim, vision_cfg, text_cfg."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaggerError(f"taggers.openclip.config: {path}: not readable JSON ({exc})") from exc
    if not isinstance(spec, dict) or any(k not in spec for k in _CONFIG_KEYS):
        raise TaggerError(f"taggers.openclip.config: {path}: expected an object with "
                          f"{', '.join(_CONFIG_KEYS)}")
    return spec


def build_model(cfg: OpenClipSettings, models: ModelResolver) -> tuple[torch.nn.Module, str]:
    """The CLIP model of ``cfg`` with its local weights, on the CPU in eval mode, and its id
    (architecture, or the config's hash, and the weights' content hash): the part of the
    identity that changes whenever the embeddings could."""
    open_clip = _open_clip()
    weights = (models.resolve(cfg.weights, config_key="taggers.openclip.weights")
               if cfg.weights else default_weights(cfg.arch, models))
    if cfg.config:
        spec = read_config(models.resolve(cfg.config, config_key="taggers.openclip.config"))
        try:
            model = open_clip.CLIP(**{k: spec[k] for k in _CONFIG_KEYS},
                                   quick_gelu=bool(spec.get("quick_gelu", False)))
        except (TypeError, ValueError) as exc:
            raise TaggerError(f"taggers.openclip.config: {exc}") from exc
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        arch_id = f"{cfg.arch}+{digest}"
    else:
        if cfg.arch not in open_clip.list_models():
            raise TaggerError(f"taggers.openclip.arch: open_clip has no architecture "
                              f"{cfg.arch!r} (e.g. ViT-B-32, ViT-B-16, ViT-L-14); or describe "
                              "it in taggers.openclip.config")
        # No pretrained tag and no base tower weights: nothing is fetched, the weights
        # come from the local file below.
        model = open_clip.create_model(cfg.arch, pretrained=None, load_weights=False,
                                       pretrained_image=False, pretrained_text=False,
                                       device="cpu")
        arch_id = cfg.arch
    load_weights(model, weights, cfg.arch)
    return model.eval(), f"{arch_id}:{file_id(weights)}"


def load_weights(model: torch.nn.Module, path: Path, arch: str) -> None:
    """A state dict (bare, under ``state_dict``, or with DataParallel's ``module.``) into
    ``model``; TaggerError when the file is not one or does not fit."""
    state = read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise TaggerError(f"{path}: weights do not fit OpenCLIP {arch}: {exc}") from exc


def image_size_of(model: torch.nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@register_tagger("openclip")
class OpenClipTagger(TorchTagger):
    """Unit image embeddings per frame (``visual_dim``), no label sets, no frame features."""

    mean = CLIP_MEAN
    std = CLIP_STD

    def __init__(self, cfg: OpenClipSettings, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        model, self.weights_id = build_model(cfg or OpenClipSettings(), ctx.models)
        self.model = self._finish_model(model)
        self.image_size = image_size_of(model)
        self.label_sets = ()
        with torch.inference_mode():  # the embedding's size, from the model itself
            probe = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
            self.visual_dim = int(self.model.encode_image(probe).shape[-1])

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        # CLIP's own rule: the short side to the input size, then the centre square.
        return center_crop(frame, self.image_size, crop_pct=1.0)

    def forward_outputs(self, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], None]:
        return {}, None

    def predict(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {}  # no labels; the image tower runs in predict_visual only

    def predict_visual(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.batch_size):
            x = self.to_tensor(frames[start:start + self.batch_size])
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
                out.append(self.model.encode_image(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.visual_dim), np.float32)


class OpenClipTextEncoder:
    """The text tower of the openclip tagger's model, for ``visual:`` terms: captions -> unit
    embeddings in the space of the tagger's image embeddings. ``identity()`` is the tagger's,
    so a search can check that its index was made by this very model."""

    def __init__(self, cfg: OpenClipSettings, ctx: RuntimeContext) -> None:
        self._open_clip = _open_clip()
        model, self.weights_id = build_model(cfg or OpenClipSettings(), ctx.models)
        self.device = resolve_device(ctx.device)
        self.model = model.to(self.device)
        self.context_length = int(getattr(model, "context_length", 77))

    def identity(self) -> str:
        return tagger_identity(OpenClipTagger.name, self.weights_id)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N] texts -> [N, D] float32 unit rows."""
        tokens = self._open_clip.tokenize(list(texts), context_length=self.context_length)
        with torch.inference_mode():
            out = self.model.encode_text(tokens.to(self.device)).float().cpu().numpy()
        return unit_rows(out)
