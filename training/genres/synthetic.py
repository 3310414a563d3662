"""Generated "episodes" made of real frames, for the genre benchmark (bench/genres.py).

No labelled broadcast archive exists here, so the benchmark builds one from real pictures:
the transfer photos (``$TVINDEX_SHARED_DIR/transfer``; categories from their file names and
packages, :func:`category_of`) and frames of the shared videos, each embedded once by the
product's embedding tagger. A *programme* draws 1-3 genres (long-tailed priors, like seed
004's imbalance); each of its episodes is a sequence of shots (one embedding per shot):

- each genre of the episode contributes one *block* per signature category pair (c1, c2):
  a run of 1-6 shots of c1 and a run of 1-6 shots of c2 (segments of different lengths);
  filler runs (shots of any category: trailers, presenters, adverts) are added between
  blocks, about a quarter of the shots;
- a shot is a pool picture's embedding plus Gaussian noise (norm ``noise``), renormalised;
  consecutive shots of a run repeat a picture half of the time (a scene held over cuts).

Two variants:

- ``ordered=False`` (order-free): every genre has its own category pair, and an episode's
  shots are shuffled: order carries no information;
- ``ordered=True`` (order-dependent): genres come in twins with the *same* pair, c1 then c2
  for one and c2 then c1 for the other; runs keep their order. The two twins have identical
  distributions of shot contents, so a model that pools over time can tell which pair an
  episode has but not which twin: only the order can.

Test programmes draw pictures from a disjoint half of every category's pool (``test_share``
of the programmes, chosen by the seed), so a model cannot pass by memorising pictures.

Limits, plainly: the "genres" are defined by the generator from picture categories, not by
broadcasters; real genres are fuzzier and overlap more; a few hundred distinct pictures
stand for a whole archive's variety (shots of one category are near one another in
embedding space, far more than real shots of a genre); the noise model is isotropic; real
episodes have hundreds of shots, these 10-40. The benchmark therefore says which model and
loss learn this kind of structure (bags of content, order of content, imbalance), not what
accuracy an archive would see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from training.genres.data import EpisodeSequences

# File-name rules, first match wins: (category, regular expression on the file name).
CATEGORY_RULES: tuple[tuple[str, str], ...] = (
    ("fish", r"fishes|clickgame_sea|dolphin|crab|narwhal"),
    ("insects", r"[_-]bee|butterfly|caterpillar|dragonfly|ladybird|mantis|woodlouse|slug|twowings"),
    ("energy", r"renewable"),
    ("tools", r"categorization_tools|stethoscope|cementmixer|dumper|wheel_tractor"),
    ("household", r"categorization_others"),
    ("music", r"world_music"),
    ("monuments", r"monument|details_|castle|bridge|braille_statue"),
    ("food", (r"apricot|pudding|mince_pie|roast_turkey|strawberry|cherimoya|ginger|seville|"
              r"rambutan|kiwi|fruits|opencv-doc__apple|opencv-doc__orange|citrus|coffee")),
    ("animals", (r"world_animals|farm_animals|erase_|tuxpaint.*(fox|giraffe|doe|otter|owl|"
                 r"peacock|marmot|goat|tiger|bear|blackbuck|guineafowl|gnu|pig)|cheetah|lion|"
                 r"squirrel|baboon|chelsea|chameleon")),
    ("vehicles", r"aero|f22|bradley|rocket|motorcycle"),
    ("interiors", r"interior|studio"),
    ("landscapes", (r"wallpapers|lxqt|mate-backgrounds|sddm|blender-data__(forest|sunrise|"
                    r"sunset|night|courtyard)|flower|holm_oak|tree336|daffodil|china|"
                    r"video__tree")),
    ("street", r"blender-data__city|video__(bikes|vtest)|building|leuven|licenseplate"),
    ("graphics", r"scenetext|sudoku|graf1|opencv-doc__box|coins|board|pca_test"),
    ("animation", r"video__bigbuckbunny"),
    ("talk", r"video__carphone|astronaut"),
)


def category_of(name: str) -> str | None:
    """The category of a transfer photo or video frame name (None: not used)."""
    low = name.lower()
    for category, pattern in CATEGORY_RULES:
        if re.search(pattern, low):
            return category
    return None


@dataclass
class Pools:
    """Embeddings of the pictures of each category, each split into a train half and a test
    half (disjoint pictures)."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]

    @classmethod
    def split(cls, pools: Mapping[str, np.ndarray], seed: int, min_items: int = 6) -> Pools:
        rng = np.random.default_rng(seed)
        train, test = {}, {}
        for cat in sorted(pools):
            vecs = np.asarray(pools[cat], np.float32)
            if len(vecs) < min_items:
                continue
            order = rng.permutation(len(vecs))
            half = len(vecs) // 2
            train[cat], test[cat] = vecs[order[half:]], vecs[order[:half]]
        return cls(train, test)

    @property
    def categories(self) -> list[str]:
        return sorted(self.train)


def genre_priors(n: int, exponent: float = 1.1) -> np.ndarray:
    """Long-tailed genre frequencies (Zipf-like: the first genre is about n^exponent times as
    common as the last), as in seed 004's trailer genres."""
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def generate(pools: Pools, *, ordered: bool, n_genres: int = 10, programmes: int = 160,
             episodes_per_programme: int = 4, test_share: float = 0.25, noise: float = 0.35,
             seed: int = 0) -> tuple[EpisodeSequences, dict[str, np.ndarray], list[str]]:
    """Episodes, the split (train/test indices, by programme) and the genre names."""
    rng = np.random.default_rng(seed)
    cats = pools.categories
    pairs_needed = n_genres // 2 if ordered else n_genres
    all_pairs = [(a, b) for i, a in enumerate(cats) for b in cats[i + 1:]]
    if len(all_pairs) < pairs_needed:
        raise ValueError(f"{len(cats)} categories give too few pairs for {n_genres} genres")
    # Pairs share no category where possible (distinct signatures).
    order = rng.permutation(len(all_pairs))
    pairs: list[tuple[str, str]] = []
    used: set[str] = set()
    for i in order:
        a, b = all_pairs[i]
        if a not in used and b not in used:
            pairs.append((a, b))
            used |= {a, b}
        if len(pairs) == pairs_needed:
            break
    for i in order:  # not enough disjoint pairs: allow sharing
        if len(pairs) == pairs_needed:
            break
        if all_pairs[i] not in pairs:
            pairs.append(all_pairs[i])
    if ordered:
        signatures = [p for pair in pairs for p in (pair, (pair[1], pair[0]))]
        names = [f"{a}>{b}" for a, b in signatures]
    else:
        signatures = list(pairs)
        names = [f"{a}+{b}" for a, b in signatures]
    twin = (lambda g: g ^ 1) if ordered else (lambda g: g)
    prior = genre_priors(n_genres)
    if ordered:  # twins equally likely: the pair's prior split in two
        pair_prior = genre_priors(n_genres // 2)
        prior = np.repeat(pair_prior / 2, 2)
    n_test = max(1, round(test_share * programmes))
    test_progs = set(rng.choice(programmes, n_test, replace=False).tolist())
    ids, progs, seqs, labels = [], [], [], []
    split: dict[str, list[int]] = {"train": [], "test": []}
    for p in range(programmes):
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        chosen: list[int] = []
        weights = prior.copy()
        while len(chosen) < k and weights.sum() > 0:
            g = int(rng.choice(n_genres, p=weights / weights.sum()))
            chosen.append(g)
            weights[g] = 0
            weights[twin(g)] = 0  # never both twins
        pool = pools.test if p in test_progs else pools.train
        for e in range(episodes_per_programme):
            seqs.append(_episode(rng, pool, [signatures[g] for g in chosen], cats, ordered,
                                 noise))
            ids.append(f"prog{p:03d}-ep{e}")
            progs.append(f"prog{p:03d}")
            labels.append(tuple(names[g] for g in sorted(chosen)))
            split["test" if p in test_progs else "train"].append(len(ids) - 1)
    data = EpisodeSequences(ids, progs, seqs, labels,
                            meta={"embedding_model": "synthetic", "ordered": ordered})
    return data, {k: np.asarray(v, np.int64) for k, v in split.items()}, names


def _run(rng: np.random.Generator, vecs: np.ndarray, length: int, noise: float) -> np.ndarray:
    out = np.empty((length, vecs.shape[1]), np.float32)
    item = int(rng.integers(len(vecs)))
    for i in range(length):
        if i and rng.random() < 0.5:
            item = int(rng.integers(len(vecs)))
        v = vecs[item] + rng.normal(0, noise / np.sqrt(vecs.shape[1]), vecs.shape[1])
        out[i] = v / max(np.linalg.norm(v), 1e-12)
    return out


def _episode(rng: np.random.Generator, pool: Mapping[str, np.ndarray],
             signatures: list[tuple[str, str]], cats: list[str], ordered: bool,
             noise: float) -> np.ndarray:
    blocks = []
    for first, second in signatures:
        blocks.append([_run(rng, pool[first], int(rng.integers(1, 7)), noise),
                       _run(rng, pool[second], int(rng.integers(1, 7)), noise)])
    shots = sum(len(r) for b in blocks for r in b)
    fillers = []
    while sum(len(f) for f in fillers) < shots / 3:
        fillers.append(_run(rng, pool[cats[int(rng.integers(len(cats)))]],
                            int(rng.integers(1, 4)), noise))
    if ordered:
        # blocks keep their inner order; blocks and fillers come in random order
        units = [np.concatenate(b) for b in blocks] + fillers
        return np.concatenate([units[i] for i in rng.permutation(len(units))])
    rows = np.concatenate([r for b in blocks for r in b] + fillers)
    return rows[rng.permutation(len(rows))]
