"""Box coding: the worked example's pinned deltas, exact round trip, the clamp, TF under XLA, validation."""

import math

import numpy as np
import pytest

from workshop.reference import coding as C

TIERS = ["loops", "numpy", "tf"]
W10 = (10.0, 10.0, 5.0, 5.0)


def _fn(name, tier):
    fn = getattr(C, f"{name}_{tier}")
    if tier != "tf":
        return fn
    return lambda *a, **k: fn(*a, **k).numpy()


def _pairs(rng, n):
    centre = rng.uniform(0, 500, (n, 2))
    size = rng.uniform(4, 200, (n, 2))
    anchors = np.concatenate([centre - size / 2, centre + size / 2], 1)
    gsize = size * np.exp(rng.normal(0, 0.5, (n, 2)))
    gc = centre + rng.normal(0, 0.3, (n, 2)) * size
    return np.concatenate([gc - gsize / 2, gc + gsize / 2], 1), anchors


@pytest.mark.parametrize("tier", TIERS)
def test_worked_example_deltas_pinned(tier):
    d = _fn("encode", tier)(np.array([[2.0, 3, 21, 26]]), np.array([[0.0, 0, 16, 16]]), weights=W10)
    np.testing.assert_allclose(d[0], [2.1875, 4.0625, 0.85925, 1.81453], atol=1e-5)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), W10, (0.5, 3.0, 7.0, 2.0)])
def test_round_trip(tier, weights):
    boxes, anchors = _pairs(np.random.default_rng(1), 50)
    deltas = _fn("encode", tier)(boxes, anchors, weights=weights)
    back = _fn("decode", tier)(deltas, anchors, weights=weights)
    np.testing.assert_allclose(back, boxes, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tier", TIERS)
def test_clamp_keeps_huge_deltas_finite(tier):
    anchors = np.array([[0.0, 0, 16, 16], [0.0, 0, 16, 16]])
    deltas = np.array([[0.0, 0, 1000, 1000], [0.0, 0, 4.0, -1000]])
    out = _fn("decode", tier)(deltas, anchors)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], [8 - 500, 8 - 500, 8 + 500, 8 + 500], rtol=1e-12)
    np.testing.assert_allclose(out[1, 2] - out[1, 0], 16 * math.exp(4.0), rtol=1e-12)  # below the clamp
    # weights divide before the clamp: dw = 5 * 4.2 is 4.2 > log(62.5) once divided
    out = _fn("decode", tier)(np.array([[0.0, 0, 21.0, 0]]), anchors[:1], weights=W10)
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 1000.0, rtol=1e-12)


@pytest.mark.parametrize("name", ["encode", "decode"])
def test_tf_under_xla(name):
    import tensorflow as tf

    boxes, anchors = _pairs(np.random.default_rng(2), 30)
    first = boxes if name == "encode" else C.encode_numpy(boxes, anchors, W10)
    f = tf.function(lambda x, a: getattr(C, f"{name}_tf")(x, a, weights=W10), jit_compile=True)
    out = f(tf.constant(first), tf.constant(anchors))
    np.testing.assert_allclose(out.numpy(), getattr(C, f"{name}_numpy")(first, anchors, W10), atol=1e-9)
    out32 = f(tf.constant(first, tf.float32), tf.constant(anchors, tf.float32))
    assert out32.dtype == tf.float32


@pytest.mark.parametrize("tier", TIERS)
def test_empty(tier):
    assert _fn("encode", tier)(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert _fn("decode", tier)(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("tier", ["loops", "numpy", "tf"])
def test_validation(tier):
    import tensorflow as tf

    conv = (lambda x: tf.constant(x)) if tier == "tf" else (lambda x: x)
    enc, dec = getattr(C, f"encode_{tier}"), getattr(C, f"decode_{tier}")
    anchors = np.array([[0.0, 0, 16, 16], [0.0, 0, 16, 16]])
    with pytest.raises(ValueError, match="boxes: row 1"):
        enc(conv(np.array([[1.0, 1, 5, 5], [3.0, 3, 3, 9]])), conv(anchors))
    with pytest.raises(ValueError, match="paired"):
        enc(conv(anchors[:1]), conv(anchors))
    with pytest.raises(ValueError, match="deltas: row 0"):
        dec(conv(np.array([[np.nan, 0, 0, 0], [0.0, 0, 0, 0]])), conv(anchors))
    with pytest.raises(ValueError, match="ww"):
        dec(conv(np.zeros((2, 4))), conv(anchors), weights=(1.0, 1.0, 0.0, 1.0))
