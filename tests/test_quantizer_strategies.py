"""quantizer.strategies: ranges from histograms on distributions with known answers, agreement with
onnxruntime's calibrators on the same tensors, and range sanitising.

Tolerances stated: entropy equals onnxruntime's ``Entropy`` calibrator exactly (same algorithm, same
histogram layout); percentile is within one histogram bin of onnxruntime's ``Percentile`` (it takes the inner
edge of the bin holding the upper quantile, we take the outer one).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from quantizer.strategies import (
    MIN_WIDTH,
    Strategy,
    TensorStats,
    entropy_range,
    minmax_range,
    mse_range,
    parse_strategy,
    percentile_range,
    ranges,
    sanitize,
)

BINS = 2048


def stats_of(x: np.ndarray, bins: int = BINS) -> TensorStats:
    """What calibration collects for a tensor: exact extremes, histogram over [-amax, amax]."""
    lo, hi = float(x.min()), float(x.max())
    a = max(abs(lo), abs(hi))
    h, _ = np.histogram(x, bins, range=(-a, a))
    return TensorStats(lo, hi, h.astype(np.int64))


def quant_mse(x: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of 8-bit asymmetric fake quantization of x on [lo, hi] (sanitised)."""
    lo, hi = sanitize(lo, hi)
    s = (hi - lo) / 255
    zp = np.round(-128 - lo / s)
    q = np.clip(np.round(x / s) + zp, -128, 127)
    return float(np.mean(((q - zp) * s - x) ** 2))


RNG = np.random.default_rng(0)
CASES = {
    "gauss": RNG.normal(0, 1, 200_000).astype(np.float32),
    "silu": (lambda x: x / (1 + np.exp(-x)))(RNG.normal(0.5, 2, 200_000)).astype(np.float32),
    "laplace_outliers": np.concatenate([RNG.laplace(0, 1, 200_000), [40.0, -30.0]]).astype(np.float32),
    "sigmoid": (1 / (1 + np.exp(-RNG.normal(-4, 2, 200_000)))).astype(np.float32),
}


# ------------------------------------------------------------------------------------------ known answers
def test_minmax_is_the_true_global_extremes():
    x = CASES["silu"]
    assert minmax_range(stats_of(x)) == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_of_a_uniform_distribution(p):
    x = np.linspace(-1.0, 3.0, 400_001, dtype=np.float32)  # uniform on [-1, 3]: quantiles are linear
    lo, hi = percentile_range(stats_of(x), p)
    cut = (100 - p) / 200
    bin_w = 2 * 3.0 / BINS
    assert lo == pytest.approx(-1 + 4 * cut, abs=bin_w)
    assert hi == pytest.approx(3 - 4 * cut, abs=bin_w)
    assert lo <= -1 + 4 * cut + 1e-6 and hi >= 3 - 4 * cut - 1e-6  # outer edges: at least p % kept


def test_percentile_of_a_normal_distribution():
    x = CASES["gauss"]
    lo, hi = percentile_range(stats_of(x), 99.0)  # 0.5 % per tail: +-2.5758 sigma
    bin_w = 2 * float(np.abs(x).max()) / BINS
    assert lo == pytest.approx(np.quantile(x, 0.005), abs=bin_w)
    assert hi == pytest.approx(np.quantile(x, 0.995), abs=bin_w)
    assert hi == pytest.approx(2.5758, abs=0.05)


@pytest.mark.parametrize("fn", [entropy_range, mse_range], ids=["entropy", "mse"])
def test_kl_and_mse_clip_an_outlier_laden_tensor(fn):
    x = CASES["laplace_outliers"]
    s = stats_of(x)
    lo, hi = fn(s)
    assert hi < 0.8 * x.max() and lo > 0.8 * x.min()  # the outliers at +40 / -30 are clipped
    bulk = x[np.abs(x) < 20]  # all but the two outliers
    assert quant_mse(bulk, lo, hi) < 0.5 * quant_mse(bulk, *minmax_range(s))


def test_mse_lowers_the_total_error_vs_minmax():
    x = CASES["laplace_outliers"]  # the two outliers included: MSE still prefers to clip them
    s = stats_of(x)
    assert quant_mse(x, *mse_range(s)) < quant_mse(x, *minmax_range(s))


def test_mse_minimises_the_squared_error_it_models():
    x = CASES["gauss"]
    s = stats_of(x)
    lo, hi = mse_range(s)
    best = quant_mse(x, lo, hi)
    for c in (0.6, 0.8, 1.2, 1.5):  # any other clip of the same family is not better (within 2 %)
        assert best <= quant_mse(x, lo * c, min(hi * c, float(x.max()))) * 1.02


# ------------------------------------------------------------------------------------------ vs onnxruntime
def _ort(method: str, x: np.ndarray, percentile: float = 99.99):
    from onnxruntime.quantization.calibrate import HistogramCollector

    c = HistogramCollector(method, False, BINS, 128, percentile, "same")
    with contextlib.redirect_stdout(io.StringIO()):
        c.collect({"t": x})
        lo, hi = c.compute_collection_result()["t"][:2]
    return float(lo), float(hi)


@pytest.mark.parametrize("case", list(CASES))
def test_entropy_equals_onnxruntime(case):
    x = CASES[case]
    assert entropy_range(stats_of(x)) == pytest.approx(_ort("entropy", x), abs=1e-6)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("p", [99.9, 99.99])
def test_percentile_within_one_bin_of_onnxruntime(case, p):
    x = CASES[case]
    s = stats_of(x)
    bin_w = 2 * s.amax / BINS
    ours, theirs = percentile_range(s, p), _ort("percentile", x, p)
    assert ours == pytest.approx(theirs, abs=bin_w * 1.001)


# ------------------------------------------------------------------------------------------ sanitising
@pytest.mark.parametrize("raw, want", [
    ((0.0, 0.0), (0.0, MIN_WIDTH)),  # a constant-zero tensor: zero scale otherwise
    ((0.3, 0.9), (0.0, 0.9)),  # must contain 0
    ((-2.0, -0.5), (-2.0, 0.0)),
    ((-1e-4, 1e-4), (-1e-4, -1e-4 + MIN_WIDTH)),  # tiny: widened to the minimum
    ((-0.5, 0.0), (-0.5, 0.0)),
    ((-1e-3, 0.0), (-MIN_WIDTH, 0.0)),  # tiny and negative: widened downwards
    ((5.0, 5.0), (0.0, 5.0)),  # a constant non-zero tensor
])
def test_sanitize(raw, want):
    lo, hi = sanitize(*raw)
    assert (lo, hi) == pytest.approx(want)
    assert lo <= 0 <= hi and hi - lo >= MIN_WIDTH - 1e-12


@pytest.mark.parametrize("bad", [(np.nan, 1.0), (0.0, np.inf), (2.0, 1.0)])
def test_sanitize_rejects_invalid(bad):
    with pytest.raises(ValueError):
        sanitize(*bad)


def test_degenerate_histograms_give_sane_ranges_for_every_strategy():
    zeros = TensorStats(0.0, 0.0, np.zeros(BINS, np.int64))
    zeros.hist[BINS // 2] = 1000
    constant = stats_of(np.full(1000, 0.25, np.float32))
    for spec in ("minmax", "percentile:99.99", "entropy", "mse"):
        got = ranges(parse_strategy(spec), {"z": zeros, "c": constant})
        assert got["z"] == pytest.approx((0.0, MIN_WIDTH))
        assert got["c"][0] == 0.0 and got["c"][1] >= 0.25 - 2 * 0.25 / BINS


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text, want", [
    ("minmax", Strategy("minmax")), ("min-max", Strategy("minmax")),
    ("percentile", Strategy("percentile", {"percentile": 99.99})),
    ("percentile:99.9", Strategy("percentile", {"percentile": 99.9})),
    ("entropy", Strategy("entropy")), ("MSE", Strategy("mse")), ("fp16", Strategy("fp16")),
])
def test_parse_strategy(text, want):
    assert parse_strategy(text) == want


def test_strategy_spec_and_label():
    s = parse_strategy("percentile:99.99")
    assert (s.spec, s.label, s.calibrated) == ("percentile:99.99", "percentile99.99", True)
    assert parse_strategy("percentile:100").spec == "percentile:100"
    assert not parse_strategy("dynamic").calibrated


@pytest.mark.parametrize("bad", ["kl", "percentile:abc", "percentile:40", "minmax:3", ""])
def test_parse_strategy_rejects(bad):
    with pytest.raises(ValueError):
        parse_strategy(bad)
