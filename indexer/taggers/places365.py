"""Places365 scene classifier (CSAIL's official checkpoints) as a frame tagger.

The official files are ``{arch}_places365.pth.tar``: a dict whose ``state_dict`` holds the
weights of a torchvision-style network wrapped in DataParallel (keys ``module.…``), and
``categories_places365.txt`` with lines ``/a/airfield 0``. Logits are softmax (one scene).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from indexer.taggers.base import RuntimeContext, TaggerError, file_id
from indexer.taggers.preprocess import center_crop
from indexer.taggers.registry import register_tagger
from indexer.taggers.torch_tagger import TorchTagger, read_state_dict
from tvindex.core.labels import LabelSet
from tvindex.settings import Places365Settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_categories(path: Path) -> tuple[str, ...]:
    """Official category file -> names in class-index order ('/a/arena/hockey 12' -> 'arena/hockey')."""
    entries: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not parts[0].startswith("/"):
            raise TaggerError(f"{path}:{n}: expected '/x/name INDEX', got {line!r}")
        entries[int(parts[1])] = parts[0][3:] if parts[0][2:3] == "/" else parts[0].lstrip("/")
    if sorted(entries) != list(range(len(entries))):
        raise TaggerError(f"{path}: category indices are not 0..{len(entries) - 1}")
    return tuple(entries[i] for i in range(len(entries)))


def build_network(arch: str, num_classes: int = 365) -> torch.nn.Module:
    import torchvision

    builders = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
    if arch not in builders:
        raise TaggerError(f"places365 arch {arch!r} not supported; use one of {sorted(builders)}")
    return builders[arch](weights=None, num_classes=num_classes)


def load_official_checkpoint(path: Path, arch: str) -> torch.nn.Module:
    """Load a ``.pth.tar`` in the official format into a fresh network."""
    state = read_state_dict(path)
    fc = state.get("fc.weight")
    net = build_network(arch, num_classes=int(fc.shape[0]) if fc is not None else 365)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise TaggerError(f"{path}: weights do not fit a {arch}: {exc}") from exc
    return net


@register_tagger("places365")
class Places365Tagger(TorchTagger):
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, cfg: Places365Settings, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.image_size = cfg.image_size
        weights = ctx.models.resolve(cfg.weights, config_key="taggers.places365.weights")
        cats = ctx.models.resolve(cfg.categories, config_key="taggers.places365.categories")
        names = read_categories(cats)
        self.model = self._finish_model(load_official_checkpoint(weights, cfg.arch))
        n_out = self.model.fc.out_features
        if n_out != len(names):
            raise TaggerError(f"{weights} has {n_out} outputs but {cats} lists {len(names)} names")
        self.label_sets = (LabelSet("places365", "softmax", names),)
        self.weights_id = file_id(weights)
        self.embedding_dim = int(self.model.fc.in_features)  # 512 resnet18, 2048 resnet50

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return center_crop(frame, self.image_size)

    def forward_outputs(self, batch: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        # torchvision's ResNet._forward_impl, keeping the pooled features fc sees.
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(batch))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        features = torch.flatten(m.avgpool(x), 1)
        return {"places365": m.fc(features)}, features
