"""Resolution pipeline: anti-aliased resizing, phi_mr samplers, seeded transforms, degradation."""

from __future__ import annotations

import numpy as np
import pytest

from btnet.data.degradation import SurveillanceDegradation, parse_degradation
from btnet.data.resolution import (
    FixedSampler,
    MultiResolutionTransform,
    ResolutionSampler,
    degrade,
    downsample,
    halving_sizes,
    make_sampler,
    sample_rng,
    upsample,
)


def _noise_image(size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _checkerboard(size: int = 112) -> np.ndarray:
    board = ((np.add.outer(np.arange(size), np.arange(size)) % 2) * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def test_area_downsample_is_the_block_mean():
    img = _noise_image()
    small = downsample(img, 7)
    expected = img.reshape(7, 16, 7, 16, 3).astype(np.float64).mean(axis=(1, 3))
    assert small.shape == (7, 7, 3) and small.dtype == np.uint8
    assert np.abs(small - expected).max() <= 1.0


@pytest.mark.parametrize("method", ["area", "bilinear", "bicubic"])
def test_downsample_is_anti_aliased(method):
    # A one-pixel checkerboard has no content a half-size grid can represent: an anti-aliased
    # resize gives flat grey, plain point sampling would give black or white.
    small = downsample(_checkerboard(112), 28, method)
    assert abs(float(small.mean()) - 127.5) < 3
    assert float(small.std()) < 8


def test_nearest_shows_what_aliasing_looks_like():
    small = downsample(_checkerboard(112), 28, "nearest")
    assert abs(float(small.mean()) - 127.5) > 100  # all black or all white: aliased


def test_rectangular_sizes_and_errors():
    img = _noise_image()
    assert downsample(img, (20, 10)).shape == (20, 10, 3)
    assert upsample(downsample(img, 14), (112, 96)).shape == (112, 96, 3)
    with pytest.raises(ValueError):
        downsample(img, 200)
    with pytest.raises(ValueError):
        upsample(img, 50)
    with pytest.raises(ValueError):
        downsample(img, 14, method="magic")
    with pytest.raises(ValueError):
        downsample(img[..., 0], 14)


def test_degrade_down_then_up():
    img = _noise_image()
    small = degrade(img, 14)
    assert small.shape == (14, 14, 3)
    restored = degrade(img, 14, restore_to=112)
    assert restored.shape == (112, 112, 3)
    np.testing.assert_array_equal(restored, upsample(small, 112))
    # detail is gone: restored image is much closer to a blur than to the original noise
    assert float(np.abs(restored.astype(int) - img.astype(int)).mean()) > 40


def test_halving_sizes_round_half_up():
    assert halving_sizes(112) == [112, 56, 28, 14, 7]
    assert halving_sizes(56) == [56, 28, 14, 7, 4]
    assert halving_sizes(64) == [64, 32, 16, 8, 4]


def _draws(sampler: ResolutionSampler, n: int = 20000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([sampler.sample(rng) for _ in range(n)])


def test_mr_v1_and_v2_frequencies():
    for name, probs in (("mr_v1", [0.2] * 5), ("mr_v2", [0.3, 0.25, 0.2, 0.15, 0.1])):
        draws = _draws(make_sampler(name, 112))
        for size, p in zip([112, 56, 28, 14, 7], probs):
            assert abs(float((draws == size).mean()) - p) < 0.015, (name, size)
        assert set(np.unique(draws)) == {112, 56, 28, 14, 7}


def test_mr_v3_covers_every_size_uniformly():
    draws = _draws(make_sampler("mr_v3", 56))
    assert draws.min() == 4 and draws.max() == 56
    counts = np.bincount(draws, minlength=57)[4:]
    assert counts.min() > 0.6 * counts.mean()


def test_hr_and_fixed_samplers_and_bad_names():
    assert set(_draws(make_sampler("hr", 56), 50)) == {56}
    assert make_sampler("fixed:14", 112) == FixedSampler(14)
    for bad in ("mr_v4", "fixed:0", "fixed:300", "fixed:x"):
        with pytest.raises(ValueError):
            make_sampler(bad, 112)
    assert isinstance(make_sampler("mr_v2", 112), ResolutionSampler)


def test_transform_restore_and_branch_modes():
    img = _noise_image()
    tf = MultiResolutionTransform(make_sampler("fixed:14", 112), 112, restore=True)
    out, r = tf.apply(img, sample_rng(0, 0, 0))
    assert r == 14 and out.shape == (112, 112, 3)
    np.testing.assert_array_equal(out, degrade(img, 14, restore_to=112))
    tf_small = MultiResolutionTransform(make_sampler("fixed:14", 112), 112, restore=False)
    assert tf_small(img, sample_rng(0, 0, 0)).shape == (14, 14, 3)
    # a full-size draw leaves the image untouched
    hr = MultiResolutionTransform(make_sampler("hr", 112), 112)
    np.testing.assert_array_equal(hr(img, sample_rng(0, 0, 0)), img)


def test_transform_brings_other_sizes_to_canonical():
    tf = MultiResolutionTransform(make_sampler("hr", 56), 56)
    assert tf(_noise_image(112), sample_rng(0, 0, 0)).shape == (56, 56, 3)
    assert tf(_noise_image(40), sample_rng(0, 0, 0)).shape == (56, 56, 3)


def test_seeded_transform_is_order_independent_and_epoch_dependent():
    """What the training loop relies on: sample i of epoch e is transformed with
    ``sample_rng(seed, e, i)``, whatever order (or worker) asks for it."""
    deg = SurveillanceDegradation(p_blur=1, p_noise=1, p_jpeg=1)
    tf = MultiResolutionTransform(make_sampler("mr_v3", 56), 56, degradation=deg)
    images = [_noise_image(56, i) for i in range(12)]

    def epoch(e: int, order) -> dict[int, tuple[np.ndarray, int]]:
        return {i: tf.apply(images[i], sample_rng(7, e, i)) for i in order}

    forward = epoch(0, range(12))
    backward = epoch(0, reversed(range(12)))
    for i in range(12):
        np.testing.assert_array_equal(forward[i][0], backward[i][0])
        assert forward[i][1] == backward[i][1]
    later = epoch(1, range(12))
    changed = [not np.array_equal(later[i][0], forward[i][0]) for i in range(12)]
    assert sum(changed) >= 11
    assert len({r for _, r in forward.values()}) > 3


def test_sample_rng_depends_on_all_three_parts():
    base = sample_rng(1, 2, 3).random()
    assert base == sample_rng(1, 2, 3).random()
    assert len({base, sample_rng(0, 2, 3).random(), sample_rng(1, 0, 3).random(),
                sample_rng(1, 2, 0).random()}) == 4


# --------------------------------------------------------------------------- degradation


def test_degradation_is_seeded_and_changes_the_image():
    img = degrade(_noise_image(112, 3), 28)
    deg = SurveillanceDegradation(p_blur=1, p_noise=1, p_jpeg=1)
    a = deg(img, np.random.default_rng(5))
    b = deg(img, np.random.default_rng(5))
    c = deg(img, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert not np.array_equal(a, img) and not np.array_equal(a, c)


def test_each_effect_alone():
    img = degrade(_noise_image(112, 4), 28)
    rng = np.random.default_rng
    off = SurveillanceDegradation(p_blur=0, p_noise=0, p_jpeg=0)
    np.testing.assert_array_equal(off(img, rng(0)), img)
    blur = SurveillanceDegradation(blur_sigma=(1.0, 1.0), p_blur=1, p_noise=0, p_jpeg=0)
    assert blur(img, rng(0)).astype(float).std() < img.astype(float).std() * 0.8
    noise = SurveillanceDegradation(noise_std=(8.0, 8.0), p_blur=0, p_noise=1, p_jpeg=0)
    diff = noise(img, rng(0)).astype(float) - img
    assert 5 < diff.std() < 11
    jpeg = SurveillanceDegradation(jpeg_quality=(10, 10), p_blur=0, p_noise=0, p_jpeg=1)
    assert np.abs(jpeg(img, rng(0)).astype(int) - img).mean() > 3


def test_parse_degradation_specs():
    assert parse_degradation(None) is None and parse_degradation("none") is None
    assert parse_degradation("surveillance") == SurveillanceDegradation()
    d = parse_degradation("blur=0.5:1.5,noise=4,jpeg=20:60,p=1")
    assert d.blur_sigma == (0.5, 1.5) and d.noise_std == (4.0, 4.0)
    assert d.jpeg_quality == (20, 60) and d.p_blur == d.p_noise == d.p_jpeg == 1.0
    assert parse_degradation("noise=none").p_noise == 0.0
    for bad in ("blur", "fog=1", "jpeg=0:200", "blur=2:1", "p=3", "noise=a:b"):
        with pytest.raises(ValueError):
            parse_degradation(bad)


def test_degradation_in_the_transform_acts_on_the_small_image():
    img = _noise_image(56, 9)
    deg = SurveillanceDegradation(p_blur=0, p_noise=1, p_jpeg=0, noise_std=(20.0, 20.0))
    tf = MultiResolutionTransform(make_sampler("fixed:7", 56), 56, restore=False, degradation=deg)
    out = tf(img, sample_rng(0, 0, 0))
    clean = degrade(img, 7)
    assert out.shape == (7, 7, 3) and not np.array_equal(out, clean)
