# Copyright (c) rat-monai contributors
# Licensed under the Apache License, Version 2.0
"""Evaluation metrics against references computed by hand: PSNR of a known MSE, region PSNR, SUV bias, CT window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rat_monai.evaluation import (
    ClassicalMethod,
    hot_mask,
    noise_sigma,
    paired_bootstrap,
    psnr,
    region_psnr,
    slice_metrics,
    ssim,
    suv_bias,
    tune,
)


def test_psnr_of_known_mse():
    ref = np.random.default_rng(0).random((16, 16))
    pred = ref + 0.05  # MSE = 0.0025 exactly
    assert psnr(pred, ref, 2.0) == pytest.approx(10 * math.log10(4.0 / 0.0025))
    assert psnr(ref, ref, 1.0) == 100.0  # capped, not +inf


def test_region_psnr_mean_over_body_regions():
    ref = np.zeros((4, 4))
    ref[:, 2:] = 1.0  # body = right half
    regions = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    pred = ref.copy()
    pred[:2, 2:] += 0.1  # region 1: MSE 0.01
    pred[2:, 2:] += 0.2  # region 2: MSE 0.04
    pred[:, :2] += 0.5  # air region 0: excluded (not in the body)
    expected = (10 * math.log10(1 / 0.01) + 10 * math.log10(1 / 0.04)) / 2
    assert region_psnr(pred, ref, regions, 1.0, body=ref > 0.5) == pytest.approx(expected)
    # without a body mask every region counts
    all_three = (expected * 2 + 10 * math.log10(1 / 0.25)) / 3
    assert region_psnr(pred, ref, regions, 1.0) == pytest.approx(all_three)
    assert math.isnan(region_psnr(pred, ref, regions, 1.0, body=np.zeros((4, 4), bool)))


def test_hot_mask_and_suv_bias():
    ref = np.full((20, 20), 1.0)
    ref[:2, :2] = [[10.0, 8.0], [6.0, 4.0]]  # the 4 hottest of 400 body voxels = top 1 %
    body = ref > 0.1
    hot = hot_mask(ref, body)
    assert hot.sum() == 4 and hot[:2, :2].all()
    pred = ref.copy()
    pred[:2, :2] *= 0.9  # 10 % under-estimation in the hot structure
    bmax, bmean = suv_bias(pred, ref, hot)
    assert bmax == pytest.approx(-10.0) and bmean == pytest.approx(-10.0)
    pred[0, 1] = 12.0  # a new maximum inside the VOI: SUVmax from 10 to 12 = +20 %
    assert suv_bias(pred, ref, hot)[0] == pytest.approx(20.0)
    assert all(math.isnan(v) for v in suv_bias(pred, ref, np.zeros_like(hot)))


def test_slice_metrics_ct_window_and_pet_keys():
    ref = np.full((32, 32), 40.0)
    pred = ref.copy()
    pred[0, 0] = 3000.0  # outside the window on the same side as nothing: clipped to 1000
    regions = np.zeros((32, 32), int)
    m = slice_metrics(pred, ref, regions, "ct", 2000.0)
    assert set(m) == {"psnr", "ssim", "region_psnr"}
    assert m["psnr"] == pytest.approx(10 * math.log10(2000.0**2 / ((1000.0 - 40.0) ** 2 / 1024)))
    pet = slice_metrics(ref / 40, ref / 40, regions, "pet", 1.0)
    assert set(pet) == {"psnr", "ssim", "region_psnr", "suvmax_bias_pct", "suvmean_bias_pct"}
    assert pet["ssim"] == pytest.approx(1.0) and pet["suvmax_bias_pct"] == 0.0


def test_ssim_orders_degradations():
    rng = np.random.default_rng(1)
    ref = np.kron(rng.random((8, 8)), np.ones((4, 4)))
    mild, strong = ref + rng.normal(0, 0.02, ref.shape), ref + rng.normal(0, 0.2, ref.shape)
    assert 1.0 > ssim(mild, ref, 1.0) > ssim(strong, ref, 1.0)


def test_noise_sigma_and_tuned_gaussian():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.1, (128, 128))
    assert noise_sigma(0.5 + noise) == pytest.approx(0.1, rel=0.05)
    # on a smooth image with white noise the tuned Gaussian beats the noisy input
    yy, xx = np.mgrid[:64, :64] / 64.0
    full = np.stack([np.sin(3 * xx + k) * np.cos(2 * yy) + 2 for k in range(3)])
    low = full + rng.normal(0, 0.2, full.shape)

    def score(restored, ref):
        return float(np.mean([psnr(restored[k], ref[k], 4.0) for k in range(len(ref))]))

    best, scores = tune("gaussian", low, full, score)
    assert scores[best] == max(scores.values()) and best >= 1.0
    assert scores[best] > score(low, full) + 5.0
    restored = ClassicalMethod("G", "gaussian", best)(low)
    assert restored.shape == low.shape and restored.dtype == np.float32


def test_sqrt_stabilised_nlm_on_count_like_noise():
    """PET's NLM runs on sqrt(SUV): the result is the square of NLM on the square root, and it beats NLM on the raw
    image when the noise grows with the activity (Poisson counts)."""
    from rat_monai.evaluation.methods import stabilizer_for

    assert stabilizer_for("nlm", "PET") == stabilizer_for("bm3d", "pt") == "sqrt"
    assert stabilizer_for("gaussian", "pet") is None and stabilizer_for("nlm", "ct") is None
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64] / 64.0
    full = np.stack([40 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.3 - 0.2 * k) ** 2) / 0.02) + 2 for k in range(2)])
    low = rng.poisson(full).astype(np.float64)
    sqrt_nlm = ClassicalMethod("N", "nlm", 1.0, stabilize="sqrt")
    plain = ClassicalMethod("N", "nlm", 1.0)(np.sqrt(low))
    np.testing.assert_allclose(sqrt_nlm(low), np.square(plain), rtol=1e-5)
    assert sqrt_nlm.describe()["stabilize"] == "sqrt"

    def score(restored, ref):
        return float(np.mean([psnr(restored[k], ref[k], 42.0) for k in range(len(ref))]))

    best_sqrt, s_sqrt = tune("nlm", low, full, score, stabilize="sqrt")
    best_raw, s_raw = tune("nlm", low, full, score)
    assert s_sqrt[best_sqrt] > score(low, full) + 3.0 and s_sqrt[best_sqrt] > s_raw[best_raw]
    with pytest.raises(ValueError, match="stabilize"):
        ClassicalMethod("N", "nlm", 1.0, stabilize="log")


def test_bootstrap_contains_true_difference_and_is_seeded():
    rng = np.random.default_rng(3)
    ref = rng.normal(30, 2, 200)
    method = ref + 0.3 + rng.normal(0, 0.5, 200)  # true mean difference 0.3
    b = paired_bootstrap(method, ref, n_boot=2000, seed=5)
    assert b["ci_low"] < 0.3 < b["ci_high"] and b["excludes_zero"] and b["n"] == 200
    assert b == paired_bootstrap(method, ref, n_boot=2000, seed=5)
    assert b["ci_low"] != paired_bootstrap(method, ref, n_boot=2000, seed=6)["ci_low"]
    # coverage over repeated experiments is close to the nominal 95 %
    hits = 0
    for k in range(60):
        r = np.random.default_rng(100 + k)
        d = r.normal(0.3, 0.5, 40)
        bb = paired_bootstrap(d, np.zeros(40), n_boot=500, seed=k)
        hits += bb["ci_low"] <= 0.3 <= bb["ci_high"]
    assert hits >= 51  # >= 85 %
    # no difference: the interval holds 0; NaN pairs are dropped; one pair gives no interval
    same = paired_bootstrap(ref + rng.normal(0, 0.5, 200), ref, seed=0)
    assert same["ci_low"] < 0 < same["ci_high"] and not same["excludes_zero"]
    assert paired_bootstrap([1.0, np.nan, 3.0], [0.0, 0.0, 1.0])["n"] == 2
    one = paired_bootstrap([1.0], [0.0])
    assert one["mean_diff"] == 1.0 and math.isnan(one["ci_low"]) and not one["excludes_zero"]
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
