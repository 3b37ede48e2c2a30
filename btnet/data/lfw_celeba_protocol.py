"""The CPU-scale real-face protocol of docs/reproduction.md, over the team's aligned data.

Training: LFW people of the View-1 development-*training* split with at least two images, plus
the aligned CelebA identity subset. Evaluation: only LFW people of the development-*test* split
(disjoint from dev-train by construction): the official ``pairsDevTest.txt`` plus further
genuine / impostor pairs drawn from the same people, deterministic by seed, so that the 10-fold
standard deviation is well under a point. The pairs are shuffled once (by seed) so every
contiguous fold holds both genuine and impostor pairs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from btnet.data.base import PairSet
from btnet.data.images import CorruptImageError, FileImageSource, is_image_file, read_image
from btnet.data.pair_sets import read_lfw_pairs

LFW_CELEBA_PREFIX = "lfw-celeba:"


def read_people(path: str | os.PathLike) -> list[str]:
    """Names of an LFW ``people*.txt`` file (``name count`` lines after a count header;
    ``people.txt`` repeats a header per fold)."""
    names = []
    for line in Path(path).read_text().splitlines():
        toks = line.split()
        if len(toks) == 2 and not toks[0].isdigit():
            names.append(toks[0])
    return names


def _images_of(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if is_image_file(p.name))


def _lfw_images(lfw_root: Path) -> Path:
    return lfw_root / "images" if (lfw_root / "images").is_dir() else lfw_root


class FileListDataset:
    """A :class:`~btnet.data.base.FaceDataset` over explicit ``(path, label)`` lists."""

    def __init__(self, paths: list[str], labels: list[int], class_names: list[str], name: str):
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.name = name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path = self.paths[int(index)]
        try:
            return read_image(path), int(self.labels[int(index)])
        except OSError as exc:
            raise CorruptImageError(f"cannot read {path}: {exc}") from exc


def lfw_celeba_training_set(root: str | os.PathLike, min_images: int = 2) -> FileListDataset:
    """LFW dev-train people with >= ``min_images`` images plus every CelebA-subset identity."""
    root = Path(root)
    lfw = root / "lfw"
    people_file = lfw / "peopleDevTrain.txt"
    if not people_file.is_file():
        raise FileNotFoundError(f"{people_file} not found: expected the data layout of ../shared/data")
    paths: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    images = _lfw_images(lfw)
    for person in read_people(people_file):
        files = _images_of(images / person)
        if len(files) >= min_images:
            labels += [len(names)] * len(files)
            paths += files
            names.append(f"lfw/{person}")
    celeba = root / "celeba" / "images"
    for entry in sorted(os.scandir(celeba), key=lambda e: e.name) if celeba.is_dir() else []:
        files = _images_of(Path(entry.path))
        if len(files) >= min_images:
            labels += [len(names)] * len(files)
            paths += files
            names.append(f"celeba/{entry.name}")
    if not paths:
        raise ValueError(f"{root}: no training identities found under lfw/ and celeba/")
    return FileListDataset(paths, labels, names, "lfw-devtrain+celeba")


def lfw_devtest_people(lfw_root: str | os.PathLike, min_images: int = 1) -> dict[str, list[str]]:
    """Dev-test people and their image files (never seen by the training set above)."""
    lfw_root = Path(lfw_root)
    images = _lfw_images(lfw_root)
    out = {}
    for person in read_people(lfw_root / "peopleDevTest.txt"):
        files = _images_of(images / person)
        if len(files) >= min_images:
            out[person] = files
    return out


def lfw_devtest_pairs(lfw_root: str | os.PathLike, total_pairs: int = 3000, seed: int = 0) -> PairSet:
    """``pairsDevTest.txt`` plus pairs drawn from dev-test people, balanced and shuffled."""
    lfw_root = Path(lfw_root)
    official = read_lfw_pairs(lfw_root / "pairsDevTest.txt", _lfw_images(lfw_root))
    files = list(official.images.paths)
    index = {p: i for i, p in enumerate(files)}
    pairs = {(int(a), int(b)) for a, b in zip(official.left, official.right)}
    left, right, same = list(official.left), list(official.right), list(official.issame)

    def idx(path: str) -> int:
        if path not in index:
            index[path] = len(files)
            files.append(path)
        return index[path]

    people = lfw_devtest_people(lfw_root)
    multi = [p for p in sorted(people) if len(people[p]) >= 2]
    everyone = sorted(people)
    rng = np.random.default_rng(seed)
    need = max(0, total_pairs - len(same))
    want_same = max(0, total_pairs // 2 - int(np.sum(same)))
    attempts = 0
    while need > 0 and attempts < 50 * total_pairs:
        attempts += 1
        genuine = want_same > 0
        if genuine:
            person = multi[int(rng.integers(len(multi)))]
            i, j = rng.choice(len(people[person]), size=2, replace=False)
            a, b = people[person][int(i)], people[person][int(j)]
        else:
            p1, p2 = rng.choice(len(everyone), size=2, replace=False)
            a = people[everyone[int(p1)]][int(rng.integers(len(people[everyone[int(p1)]])))]
            b = people[everyone[int(p2)]][int(rng.integers(len(people[everyone[int(p2)]])))]
        key = (idx(a), idx(b))
        if key in pairs or key[::-1] in pairs:
            continue
        pairs.add(key)
        left.append(key[0])
        right.append(key[1])
        same.append(genuine)
        want_same -= int(genuine)
        need -= 1
    order = np.random.default_rng(seed + 1).permutation(len(same))
    return PairSet(
        f"lfw_devtest_{len(same)}",
        FileImageSource(files),
        np.asarray(left)[order],
        np.asarray(right)[order],
        np.asarray(same)[order],
    )
