"""nearest_neighbours: every tier against a brute-force ranking written differently (Python's
sorted over (-cosine, index)), the edge rules (ties, zero vectors, exclude), errors, and the TF
tier compiled."""

import numpy as np
import pytest
import tensorflow as tf

from workshop.reference import search as S

TIERS = {"loops": S.nearest_neighbours_loops, "numpy": S.nearest_neighbours_numpy,
         "tf": lambda q, d, k, exclude=None: S.nearest_neighbours_tf(
             tf.constant(q), tf.constant(d), k, None if exclude is None else tf.constant(exclude)).numpy()}


def _brute(q, d, k, exclude=None):
    out = []
    for i, u in enumerate(q):
        nu = np.linalg.norm(u)
        rows = []
        for j, v in enumerate(d):
            if exclude is not None and exclude[i] == j:
                continue
            nv = np.linalg.norm(v)
            cos = 0.0 if nu == 0 or nv == 0 else float(np.dot(u, v) / (nu * nv))
            rows.append((-cos, j))
        out.append([j for _, j in sorted(rows)[:k]])
    return np.array(out, dtype=np.int64).reshape(len(q), k)


@pytest.mark.parametrize("tier", list(TIERS))
def test_matches_brute_force(tier):
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, dim = int(rng.integers(1, 30)), int(rng.integers(1, 20))
        d = rng.normal(size=(n, dim))
        q = rng.normal(size=(int(rng.integers(0, 6)), dim))
        k = int(rng.integers(0, n + 1))
        got = np.asarray(TIERS[tier](q, d, k))
        np.testing.assert_array_equal(got, _brute(q, d, k))


@pytest.mark.parametrize("tier", list(TIERS))
def test_exclude_and_self_search(tier):
    rng = np.random.default_rng(1)
    d = rng.normal(size=(15, 8))
    ids = np.array([3, 0, 14, -1], dtype=np.int64)
    q = d[np.maximum(ids, 0)]
    got = np.asarray(TIERS[tier](q, d, 5, ids))
    np.testing.assert_array_equal(got, _brute(q, d, 5, ids))
    for row, i in zip(got, ids):
        if i >= 0:
            assert i not in row
    assert got[3, 0] == 0        # -1 excludes nothing: row 0 finds itself


@pytest.mark.parametrize("tier", list(TIERS))
def test_ties_lower_index_first_and_zero_vectors(tier):
    d = np.array([[0.0, 1.0], [3.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, -2.0]])
    q = np.array([[2.0, 0.0], [0.0, 0.0]])
    got = np.asarray(TIERS[tier](q, d, 5))
    np.testing.assert_array_equal(got, [[1, 3, 0, 2, 4], [0, 1, 2, 3, 4]])


@pytest.mark.parametrize("tier", list(TIERS))
def test_scale_invariance(tier):
    rng = np.random.default_rng(2)
    d, q = rng.normal(size=(20, 5)), rng.normal(size=(3, 5))
    a = np.asarray(TIERS[tier](q, d, 6))
    b = np.asarray(TIERS[tier](q * 1e3, d * rng.uniform(0.1, 10, (20, 1)), 6))
    np.testing.assert_array_equal(a, b)


def test_cosine_differs_from_euclidean():
    q = np.array([[1.0, 0.0]])
    d = np.array([[10.0, 1.0], [0.9, 0.9], [1.0, 0.05]])
    assert S.nearest_neighbours_numpy(q, d, 3).tolist() == [[2, 0, 1]]
    assert np.argsort(((q - d) ** 2).sum(1)).tolist() == [2, 1, 0]


@pytest.mark.parametrize("fn", [S.nearest_neighbours_loops, S.nearest_neighbours_numpy,
                                S.nearest_neighbours_tf], ids=["loops", "numpy", "tf"])
@pytest.mark.parametrize("args, match", [
    ((np.zeros((2, 3)), np.zeros((4, 2)), 1), "D = 3"),
    ((np.zeros(3), np.zeros((4, 3)), 1), "queries: expected shape"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), 5), "only 4"),
    ((np.zeros((2, 3)), np.zeros((4, 3)), -1), "k: expected"),
])
def test_errors(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_k_equal_n_with_exclude_is_refused():
    with pytest.raises(ValueError, match="only 3"):
        S.nearest_neighbours_numpy(np.ones((1, 2)), np.ones((4, 2)), 4, exclude=np.array([0]))


def test_tf_tier_float32_and_xla():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(4, 16)).astype(np.float32)
    d = rng.normal(size=(50, 16)).astype(np.float32)
    f = tf.function(S.nearest_neighbours_tf, jit_compile=True)
    got = f(tf.constant(q), tf.constant(d), 7, tf.constant([1, -1, 2, 3]))
    assert got.dtype in (tf.int32, tf.int64) and got.shape == (4, 7)
    np.testing.assert_array_equal(got.numpy(), S.nearest_neighbours_numpy(q, d, 7, np.array([1, -1, 2, 3])))
