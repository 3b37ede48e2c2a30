"""Quality-aware routing: the effective-resolution estimator and its selector.

The estimator is calibrated on built-in *training* identities and tested on disjoint test
identities; expected values come from how the faces were made (their true r), not from the
estimator.
"""

from __future__ import annotations

import numpy as np
import pytest

from btnet.data.effective_resolution import effective_resolution_face
from btnet.data.resolution import sample_rng
from btnet.data.synthetic import BUILTIN_TEST_OFFSET, SyntheticFaces
from btnet.models.quality import (
    QualitySelector,
    ResolutionEstimator,
    estimator_macs,
    spectral_features,
)
from btnet.models.selection import BranchSelector
from btnet.training.quality_calibration import CalibrationSpec, calibrate_quality_selector

S = 56
PATHS = (7, 14, 28, 56)


class _Images:
    def __init__(self, faces):
        self.faces = faces

    def __len__(self):
        return len(self.faces)

    def __getitem__(self, i):
        return self.faces[i][0]


@pytest.fixture(scope="module")
def selector() -> QualitySelector:
    train = SyntheticFaces(40, 4, size=S, seed=0)
    rule = BranchSelector.from_rule(PATHS, "min", "near")
    return calibrate_quality_selector(_Images(train), rule, S,
                                      CalibrationSpec(samples=500, seed=0), source="builtin")


@pytest.fixture(scope="module")
def test_faces() -> list[np.ndarray]:
    faces = SyntheticFaces(12, 2, size=S, seed=3, identity_offset=BUILTIN_TEST_OFFSET)
    return [faces[i][0] for i in range(len(faces))]


def _held(face: np.ndarray, r: int, k: int, pixel_size: int | None = 48) -> np.ndarray:
    """A clean face holding r pixels, stored at ``pixel_size`` (>= r) pixels."""
    return effective_resolution_face(face, r, S, sample_rng(9, r, k), None,
                                     pixel_size=max(r, pixel_size) if pixel_size else None)


def test_estimator_orders_faces_by_effective_resolution(selector, test_faces):
    # every face at 48 pixels (or its own r when larger): only the content differs
    medians = []
    for r in PATHS:
        est = [selector.estimator.estimate(_held(f, r, k)) for k, f in enumerate(test_faces)]
        medians.append(float(np.median(est)))
    assert medians == sorted(medians), f"medians not increasing with r: {medians}"
    assert all(b > 1.4 * a for a, b in zip(medians, medians[1:])), medians
    # and per face: a face holding less is estimated lower than the same face holding more
    lo = np.array([selector.estimator.estimate(_held(f, 7, k)) for k, f in enumerate(test_faces)])
    hi = np.array([selector.estimator.estimate(_held(f, 28, k)) for k, f in enumerate(test_faces)])
    assert np.all(lo < hi)


def test_quality_routing_picks_the_branch_of_what_the_face_holds(selector, test_faces):
    for r in (7, 14, 28):
        faces = [_held(f, r, k, pixel_size=S) for k, f in enumerate(test_faces)]
        chosen = selector.select_images(faces)
        # size routing sees S x S pixels and sends every one of them to the trunk
        assert {selector.select(*f.shape[:2]) for f in faces} == {S}
        share = np.mean(np.equal(chosen, r))
        assert share >= 0.75, f"r={r}: only {share:.0%} routed to branch {r}: {chosen}"


def test_estimate_never_exceeds_the_pixels(selector, test_faces):
    for k, f in enumerate(test_faces[:6]):
        small = _held(f, 14, k, pixel_size=14)  # 14 x 14 pixels: holds at most 14
        assert selector.estimate(small) <= 14.0
        assert selector.select_image(small) <= selector.select(14, 14)
    tall = np.ascontiguousarray(test_faces[0][:, 10:30])  # 56 x 20
    assert selector.estimate(tall) <= 20.0


def test_selector_is_deterministic_and_survives_json(selector, test_faces):
    import json

    faces = [_held(f, r, k, pixel_size=None) for k, f in enumerate(test_faces) for r in (7, 28)]
    first = selector.select_images(faces)
    again = selector.select_images(faces)
    restored = QualitySelector.from_dict(json.loads(json.dumps(selector.to_dict())))
    assert first == again == restored.select_images(faces)
    assert [selector.estimate(f) for f in faces] == [restored.estimate(f) for f in faces]
    assert restored.calibration["holdout_same_path"] > 0.6
    assert restored.paths == PATHS and "quality" in restored.allocation


def test_features_see_a_cutoff_and_cost_is_small(test_faces):
    sharp = spectral_features(test_faces[0], S)
    soft = spectral_features(_held(test_faces[0], 7, 0, pixel_size=S), S)
    assert sharp.shape == (S // 2,)
    # a 7-pixel face up-sampled holds almost nothing above 3.5 cycles per face
    assert soft[8:].max() < sharp[8:].max() - 2.0
    # a fraction of a percent of even the smallest demo path (measured: btnet cost)
    assert estimator_macs(56) < 300_000 and estimator_macs(112) < 1_200_000


def test_estimator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="needs 28 features"):
        ResolutionEstimator(56, (7, 56), (0.0,) * 3, (1.0,) * 3, ((0.0,) * 6,) * 2, (0.0, 0.0))
    with pytest.raises(ValueError, match="2 x 56 weights"):
        ResolutionEstimator(56, (7, 56), (0.0,) * 28, (1.0,) * 28, ((0.0,) * 56,), (0.0, 0.0))
    with pytest.raises(ValueError, match="HxWx3"):
        spectral_features(np.zeros((8, 8), np.uint8), 56)
