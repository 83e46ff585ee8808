"""Nearest neighbours by cosine similarity (visual search), in three tiers.

* ``queries``: float ``(Q, D)`` embeddings; ``database``: float ``(N, D)`` embeddings.
* ``k``: how many neighbours per query, ``0 <= k <= N`` (``k <= N - 1`` when ``exclude`` is given).
* ``exclude``: optional int ``(Q,)``: for query ``q`` the database row ``exclude[q]`` is never
  returned (the query's own row when the queries come from the database); ``-1`` excludes nothing.
* result: int64 ``(Q, k)`` (int32 in the TF tier) database indices, most similar first.

Rules at the edges:

* cosine similarity ``u . v / (|u| |v|)``; a zero vector has similarity 0 with everything
  (each vector is divided by ``max(|v|, 1e-12)``);
* equal similarities: the lower database index comes first (a stable sort of ``-similarity``,
  as ``tf.math.top_k``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nearest_neighbours_loops", "nearest_neighbours_numpy", "nearest_neighbours_tf",
           "cosine_similarity_numpy"]

EPS = 1e-12


def _validate(q_shape, d_shape, k, exclude_shape=None) -> None:
    if len(q_shape) != 2:
        raise ValueError(f"queries: expected shape (Q, D), got {tuple(q_shape)}")
    if len(d_shape) != 2:
        raise ValueError(f"database: expected shape (N, D), got {tuple(d_shape)}")
    if q_shape[1] != d_shape[1]:
        raise ValueError(f"queries have D = {q_shape[1]} but the database has D = {d_shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected an int >= 0, got {k!r}")
    limit = d_shape[0] - (1 if exclude_shape is not None else 0)
    if k > limit:
        raise ValueError(f"k = {k} but only {limit} database rows can be returned")
    if exclude_shape is not None and tuple(exclude_shape) != (q_shape[0],):
        raise ValueError(f"exclude: expected shape ({q_shape[0]},), got {tuple(exclude_shape)}")


def _arrays(queries, database, exclude):
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(database, dtype=np.float64)
    e = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    return q, d, e


def cosine_similarity_numpy(queries, database) -> np.ndarray:
    """float64 ``(Q, N)`` cosine similarities (0 for a zero vector)."""
    q = np.asarray(queries, np.float64)
    d = np.asarray(database, np.float64)
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), EPS)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), EPS)
    return qn @ dn.T


# -- tier 1: loops ---------------------------------------------------------------------------
def nearest_neighbours_loops(queries, database, k, exclude=None) -> np.ndarray:
    """The ``k`` most cosine-similar database rows of each query, one pair at a time.

    Args:
      queries: float ``(Q, D)``.
      database: float ``(N, D)``.
      k: int, ``0 <= k <= N`` (``<= N - 1`` with ``exclude``).
      exclude: optional int ``(Q,)``, a database index per query never to return (-1: none).

    Returns:
      int64 ``(Q, k)``: database indices, most similar first, ties by lower index.
    """
    q, d, e = _arrays(queries, database, exclude)
    _validate(q.shape, d.shape, k, None if e is None else e.shape)
    n_q, dim = q.shape
    out = np.zeros((n_q, k), dtype=np.int64)
    for i in range(n_q):
        qn = max(sum(q[i, t] * q[i, t] for t in range(dim)) ** 0.5, EPS)
        sims = []
        for j in range(d.shape[0]):
            if e is not None and e[i] == j:
                continue
            dn = max(sum(d[j, t] * d[j, t] for t in range(dim)) ** 0.5, EPS)
            dot = sum((q[i, t] / qn) * (d[j, t] / dn) for t in range(dim))
            sims.append((-dot, j))          # sort by -similarity, then by index
        sims.sort()
        out[i] = [j for _, j in sims[:k]]
    return out


# -- tier 2: numpy ---------------------------------------------------------------------------
def nearest_neighbours_numpy(queries, database, k, exclude=None) -> np.ndarray:
    """Normalise both sets, one matrix product for every similarity, excluded rows set to -inf,
    a stable ``argsort`` of ``-similarity`` per row. Same arguments and result as
    :func:`nearest_neighbours_loops`."""
    q, d, e = _arrays(queries, database, exclude)
    _validate(q.shape, d.shape, k, None if e is None else e.shape)
    sims = cosine_similarity_numpy(q, d)
    if e is not None:
        rows = np.nonzero(e >= 0)[0]
        sims[rows, e[rows]] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)


# -- tier 3: TensorFlow ----------------------------------------------------------------------
def nearest_neighbours_tf(queries, database, k, exclude=None):
    """``tf.math.l2_normalize``-style normalisation, ``tf.matmul``, excluded rows masked with a
    one-hot, and ``tf.math.top_k`` (which puts the lower index first on ties). Tensors in, int32
    tensor out; ``k`` stays a Python int. Works under ``tf.function(jit_compile=True)``."""
    import tensorflow as tf

    q = tf.convert_to_tensor(queries)
    if not q.dtype.is_floating:
        q = tf.cast(q, tf.float32)
    d = tf.cast(tf.convert_to_tensor(database), q.dtype)
    if exclude is not None:
        exclude = tf.convert_to_tensor(exclude)
    if None not in q.shape and None not in d.shape:
        _validate(tuple(q.shape), tuple(d.shape), k, None if exclude is None else tuple(exclude.shape))
    eps = tf.constant(EPS, q.dtype)
    qn = q / tf.maximum(tf.norm(q, axis=1, keepdims=True), eps)
    dn = d / tf.maximum(tf.norm(d, axis=1, keepdims=True), eps)
    sims = tf.matmul(qn, dn, transpose_b=True)
    if exclude is not None:
        mask = tf.one_hot(tf.cast(exclude, tf.int32), tf.shape(d)[0], on_value=True, off_value=False)
        sims = tf.where(mask, tf.constant(-np.inf, q.dtype), sims)
    return tf.math.top_k(sims, k=int(k), sorted=True).indices
