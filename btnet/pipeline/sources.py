"""Where a study's faces come from: the built-in generator or the team's real-face protocol.

A source gives a training-set spec (as ``data.train`` of a training config), the verification
pair set, and the identities an open-set protocol may be drawn from, all disjoint from training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from btnet.data.base import OpenSetProtocol, PairSet
from btnet.data.synthetic import BUILTIN_TEST_OFFSET, GENERATOR_VERSION
from btnet.pipeline.options import StudyOptions


@dataclass
class DataSource:
    name: str
    train_spec: str
    description: str
    # Verification pairs when the study does not say (``StudyOptions.eval_pairs is None``).
    default_pairs = 3000

    def num_pairs(self, opts: StudyOptions) -> int:
        return int(opts.eval_pairs or self.default_pairs)

    def pair_set(self, opts: StudyOptions) -> PairSet:
        raise NotImplementedError

    def train_params(self) -> dict:
        """What training depends on (the evaluation set does not change a trained model)."""
        return {"source": self.name, "train": self.train_spec}

    def test_params(self, opts: StudyOptions) -> dict:
        """What the test identities depend on (verification pairs and open-set protocol)."""
        return self.train_params()

    def cache_params(self, opts: StudyOptions) -> dict:
        """What a verification evaluation depends on: the test identities and the pair count."""
        return {**self.test_params(opts), "pairs": self.num_pairs(opts)}

    def openset(self, opts: StudyOptions, workdir: Path) -> OpenSetProtocol:
        """A SurvFace-like open-set protocol over test identities (high-res gallery, probes
        degraded to surveillance sizes), deterministic by seed."""
        raise NotImplementedError


class BuiltinSource(DataSource):
    def train_params(self) -> dict:
        """The generator is part of the data: a new generator version retrains (moving its
        code does not: the version is declared, not hashed from the source)."""
        return {**super().train_params(), "generator": GENERATOR_VERSION}

    def pair_set(self, opts: StudyOptions) -> PairSet:
        from btnet.data.synthetic import builtin_pairs

        return builtin_pairs(
            num_identities=opts.builtin_test_ids,
            images_per_identity=opts.builtin_test_per_id,
            num_pairs=self.num_pairs(opts),
            size=opts.canonical,
            seed=opts.seed + 1,
            identity_offset=BUILTIN_TEST_OFFSET,
        )

    def openset(self, opts: StudyOptions, workdir: Path) -> OpenSetProtocol:
        from btnet.data.export import export_folder
        from btnet.data.synthetic import SyntheticFaces
        from btnet.evaluation.openset_protocol import build_openset_protocol

        faces = SyntheticFaces(opts.builtin_test_ids, opts.builtin_test_per_id, size=112,
                               seed=opts.seed + 2, identity_offset=BUILTIN_TEST_OFFSET + 50_000)
        folder = export_folder(faces, workdir / "faces")
        return build_openset_protocol(folder, seed=opts.seed, name="builtin-openset")

    def test_params(self, opts: StudyOptions) -> dict:
        return {**super().test_params(opts), "test_ids": opts.builtin_test_ids,
                "test_per_id": opts.builtin_test_per_id}


class RealFacesSource(DataSource):
    """docs/reproduction.md: train on LFW dev-train people (>= 2 images) + the CelebA subset,
    evaluate on LFW dev-test people only (pairsDevTest.txt plus pairs drawn by seed).

    20,000 pairs by default: with 3,000 the std over the 10 folds was 1.1-2.8 points, with
    20,000 it is 0.5-1.1 (docs/reproduction.md); embeddings are per image, so it costs little.
    """

    default_pairs = 20000

    def __init__(self, root: Path):
        # Absolute, so that "../shared/data" and "/work/shared/data" share cached stages.
        self.root = Path(root).resolve()
        super().__init__("lfw-celeba", f"lfw-celeba:{self.root}", f"real faces under {self.root}")

    def pair_set(self, opts: StudyOptions) -> PairSet:
        from btnet.data.lfw_celeba_protocol import lfw_devtest_pairs

        return lfw_devtest_pairs(self.root / "lfw", total_pairs=self.num_pairs(opts),
                                 seed=opts.seed)

    def openset(self, opts: StudyOptions, workdir: Path) -> OpenSetProtocol:
        from btnet.data.lfw_celeba_protocol import lfw_devtest_people
        from btnet.evaluation.openset_protocol import build_openset_protocol

        people = lfw_devtest_people(self.root / "lfw")
        return build_openset_protocol(self.root / "lfw", seed=opts.seed, identities=people,
                                      name="lfw-devtest-openset")


def resolve_source(opts: StudyOptions) -> DataSource:
    if opts.data == "builtin":
        spec = (f"builtin:ids={opts.builtin_train_ids},per_id={opts.builtin_per_id},"
                f"seed={opts.seed}")
        return BuiltinSource("builtin", spec, "built-in procedural faces")
    root = Path(opts.data)
    if not (root / "lfw").is_dir() or not (root / "celeba").is_dir():
        raise FileNotFoundError(
            f"--data {root}: expected a folder with lfw/ and celeba/ (like ../shared/data), "
            "or 'builtin'"
        )
    return RealFacesSource(root)
