"""Label vocabularies shared by several taggers."""

from __future__ import annotations

from tvindex.core.labels import LabelSet

# The 80 COCO detection classes in COCO id order: the order YOLO (Ultralytics) emits them.
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

COCO80 = LabelSet("coco80", "sigmoid", COCO80_NAMES)


def imagenet1k() -> LabelSet:
    """ImageNet-1k in class-index order, named by the first lemma of each synset (timm's data).

    Two names repeat (crane the bird and the machine; maillot twice): those are qualified
    with their synset id so every label name is unique and searchable.
    """
    from collections import Counter

    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    n = info.num_classes()
    first = [info.index_to_description(i).split(",")[0].strip() for i in range(n)]
    counts = Counter(first)
    names = tuple(
        name if counts[name] == 1 else f"{name} ({info.index_to_label_name(i)})"
        for i, name in enumerate(first)
    )
    return LabelSet("imagenet1k", "softmax", names)


def read_label_file(path) -> tuple[str, ...]:
    """One label per line (blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())
