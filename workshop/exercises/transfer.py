"""Chapter 02: visual search by nearest neighbours in an embedding space (``nearest_neighbours``).

Embeddings are float ``(Q, D)`` / ``(N, D)``; the result is int ``(Q, k)`` database indices by
decreasing cosine similarity, ties by lower index, an optional ``exclude`` index per query.
The wrong implementations below are self-contained numpy (the grader hides
``workshop.reference``).
"""

from __future__ import annotations

import numpy as np

from . import register
from .spec import Case, Exercise, Mistake, Output

REF = "workshop.reference.search"
CHAPTER = "02_transfer_learning"


# ============================================================================================
# wrong implementations (self-contained)
# ============================================================================================
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _scores(queries, database, exclude, *, how="cosine", keep_excluded=False):
    """Higher is better: cosine, dot product, or minus the squared Euclidean distance."""
    q, d = np.asarray(queries, np.float64), np.asarray(database, np.float64)
    if how == "cosine":
        s = _unit(q) @ _unit(d).T
    elif how == "dot":
        s = _unit(q) @ d.T
    else:
        s = -((q[:, None, :] - d[None, :, :]) ** 2).sum(-1)
    if exclude is not None and not keep_excluded:
        e = np.asarray(exclude, np.int64)
        rows = np.nonzero(e >= 0)[0]
        s[rows, e[rows]] = -np.inf
    return s


def _nn_euclidean(queries, database, k, exclude=None):
    s = _scores(queries, database, exclude, how="euclidean")
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _nn_dot(queries, database, k, exclude=None):
    s = _scores(queries, database, exclude, how="dot")
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _nn_self_included(queries, database, k, exclude=None):
    s = _scores(queries, database, exclude, keep_excluded=True)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _nn_ascending(queries, database, k, exclude=None):
    s = _scores(queries, database, exclude)
    order = np.argsort(s, axis=1, kind="stable")
    return order[:, order.shape[1] - k:]


def _nn_ties_high(queries, database, k, exclude=None):
    s = _scores(queries, database, exclude)
    return np.argsort(s, axis=1, kind="stable")[:, ::-1][:, :k]


# ============================================================================================
# cases
# ============================================================================================
def _f(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def _i(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def _edge_cases() -> list[Case]:
    rng = np.random.default_rng(21)
    db4 = _f([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]])
    emb = rng.normal(size=(12, 6)).round(3)
    return [
        Case("pinned: direction, not distance", (_f([[1, 0]]), _f([[10, 1], [0.9, 0.9], [1, 0.05]]), 3),
             expected=_i([[2, 0, 1]]),
             about="cosines 0.995, 0.707, 0.999: the long vector [10, 1] points almost the same way"),
        Case("pinned: equal similarities, lower index first", (_f([[1, 0]]), _f([[0, 1], [2, 0], [0, -3], [1, 0]]), 3),
             expected=_i([[1, 3, 0]]), about="similarities [0, 1, 0, 1]"),
        Case("pinned: a query never finds itself", (db4[[0, 2]], db4, 2), {"exclude": _i([0, 2])},
             expected=_i([[1, 2], [1, 0]]), about="the queries are database rows 0 and 2"),
        Case("pinned: a zero vector is similar to nothing", (_f([[1, 1], [0, 0]]), _f([[0, 0], [-1, -1], [1, 0]]), 3),
             expected=_i([[2, 0, 1], [0, 1, 2]]), about="similarity 0 with a zero vector, not NaN"),
        Case("scaling a query changes nothing", (emb[:3] * _f([[100.0], [0.01], [1.0]]), emb, 4)),
        Case("search the database with its own rows", (emb[[5, 0, 11]], emb, 3), {"exclude": _i([5, 0, 11])}),
        Case("k = 0", (emb[:2], emb, 0), public=False),
        Case("no queries", (np.zeros((0, 6)), emb, 2), public=False),
        Case("k = N - 1 with exclude, one query excludes nothing", (emb[[1, 2]], emb[:5], 4),
             {"exclude": _i([1, -1])}, public=False),
        Case("k = N: the full ranking", (emb[:2] + 0.1, emb[:7], 7), public=False),
        Case("duplicated database rows", (emb[:2], np.concatenate([emb[:4], emb[:4]]), 6), public=False),
    ]


def _random_case(rng) -> Case:
    n = int(rng.integers(2, 21))
    dim = int(rng.integers(2, 13))
    database = rng.normal(size=(n, dim))
    kwargs = {}
    if rng.random() < 0.3:
        ids = rng.choice(n, size=int(rng.integers(1, min(n, 5) + 1)), replace=False)
        queries = database[ids] * rng.uniform(0.5, 2.0)
        kwargs["exclude"] = ids.astype(np.int64)
        k = int(rng.integers(0, min(n - 1, 6) + 1))
    else:
        queries = rng.normal(size=(int(rng.integers(1, 6)), dim))
        k = int(rng.integers(0, min(n, 6) + 1))
    return Case("", (queries, database, k), kwargs)


def _benchmarks() -> list[Case]:
    rng = np.random.default_rng(0)
    return [Case("100 queries, 5000 x 96 database, k = 10",
                 (rng.normal(size=(100, 96)), rng.normal(size=(5000, 96)), 10))]


# ============================================================================================
# declaration
# ============================================================================================
register(Exercise(
    name="nearest_neighbours",
    chapter=CHAPTER,
    minutes={"loops": 15, "numpy": 10, "tf": 15},
    signature="nearest_neighbours(queries, database, k, exclude=None) -> (Q, k) int indices",
    summary="The k most cosine-similar database embeddings of each query, most similar first.",
    tiers={"loops": f"{REF}:nearest_neighbours_loops", "numpy": f"{REF}:nearest_neighbours_numpy",
           "tf": f"{REF}:nearest_neighbours_tf"},
    edge_cases=_edge_cases,
    random_case=_random_case,
    outputs=(Output("indices", "int", tf_dtype="int32"),),   # as tf.math.top_k
    mistakes=(
        Mistake("Euclidean distance instead of cosine similarity",
                "Your neighbours are the closest points (Euclidean distance): rank by cosine "
                "similarity, u . v / (|u| |v|), which compares directions and ignores lengths.",
                _nn_euclidean),
        Mistake("database not normalised (dot product)",
                "Your ranking is by the dot product with the raw database vectors, so long vectors "
                "win: divide every database row by its norm too (normalising only the queries does "
                "not change a query's ranking).", _nn_dot),
        Mistake("a query finds itself",
                "Database row exclude[q] appears in query q's results: that is the query itself; set "
                "its similarity to -inf (skip it) before ranking. -1 excludes nothing.",
                _nn_self_included),
        Mistake("ascending order",
                "Your indices come least similar first: return the k most similar rows, the most "
                "similar first (sort by -similarity, or reverse the order).", _nn_ascending),
        Mistake("ties broken by the higher index",
                "With equal similarities your order puts the higher index first (reversing an "
                "ascending sort does that): use a stable sort of -similarity so the lower index "
                "comes first.", _nn_ties_high),
    ),
    tf_static=("k",),
    benchmarks=_benchmarks,
))
