"""Diagnoses that are right or silent.

A declared :class:`~workshop.exercises.spec.Mistake` is named only on evidence:

* its wrong implementation differs from the right answer on at least one case (the case can
  tell it apart), and on *every* case where the learner's function returned something, the
  learner's output matches the wrong implementation's (it behaves like that mistake, not merely
  shares one output with it);
* the evidence is not degenerate: the learner's outputs are not all empty, constant or zero
  (outputs that many different mistakes share);
* when several mistakes explain the evidence equally, all of them are named ("one of: ...", at
  most three), never one picked at random;
* the message says which case it comes from: a public case by name, else the kind of hidden
  case (never its values).

Mistakes with a ``detect`` rule (a property of the output, e.g. NaN) are facts about the output
and are reported with the case they were seen on. When no declared mistake explains the
evidence, :func:`describe_difference` gives a generic but true description of how the first
failed output differs (transposed, reordered, off by a factor or a shift, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_ALTERNATIVES = 3
_FAILED = object()   # a wrong implementation that raised on a case: no evidence either way


def case_kind(case) -> str:
    """What may be said of a hidden case: its name without the running number."""
    return re.sub(r"\s*#\d+", "", case.name).strip() or "random"


def _where(cases, indices: Sequence[int]) -> str:
    public = [cases[i].name for i in indices if cases[i].public]
    if public:
        more = len(indices) - 1
        return f"public case {public[0]!r}" + (f" and {more} more" if more else "")
    kinds = list(dict.fromkeys(case_kind(cases[i]) for i in indices))
    return "hidden cases (" + ", ".join(kinds[:3]) + ")"


def _arrays(value: Any, n_outputs: int) -> list[np.ndarray]:
    from .spec import to_array

    parts = value if n_outputs > 1 and isinstance(value, (tuple, list)) else [value]
    out = []
    for p in parts:
        try:
            out.append(np.asarray(to_array(p)))
        except (TypeError, ValueError):
            continue
    return out


def degenerate(value: Any, n_outputs: int = 1) -> bool:
    """Empty, constant, zero or non-finite: outputs that many different mistakes share."""
    for a in _arrays(value, n_outputs):
        if a.dtype.kind not in "iufb" or a.size == 0:
            continue
        flat = a.astype(np.float64).ravel()
        finite = flat[np.isfinite(flat)]
        if finite.size == 1 and finite[0] != 0 or finite.size > 1 and np.ptp(finite) > 0:
            return False
    return True


def explain(exercise, cases: Sequence, expected: Sequence, received: Sequence,
            wrong_output: Callable[[Any, int], Any] | None = None) -> list[str]:
    """The diagnoses of a verdict: ``received[i]`` is the learner's output on ``cases[i]`` (None
    when it raised or did not run); ``wrong_output(mistake, i)`` the mistake's output on case
    ``i`` (default: computed here)."""
    n = len(cases)
    ran = [i for i in range(n) if received[i] is not None]
    failed = [i for i in ran if exercise.compare(received[i], expected[i]) is not None]
    if not failed:
        return []

    def wrong_of(mistake, i):
        if wrong_output is not None:
            return wrong_output(mistake, i)
        return run_wrong(mistake, cases[i])

    facts, explained = [], []
    for mistake in exercise.mistakes:
        if mistake.detect is not None:
            hits = [i for i in failed if _safe_detect(mistake, cases[i], received[i], expected[i])]
            if hits:
                facts.append(f"{mistake.message} (seen on {_where(cases, hits)})")
            continue
        telling, behaves = [], True
        for i in ran:
            wrong = wrong_of(mistake, i)
            if wrong is _FAILED:
                continue
            if exercise.compare(received[i], wrong) is not None:
                behaves = False
                break
            if exercise.compare(wrong, expected[i], strict=True) is not None:
                telling.append(i)
        if behaves and telling and not all(degenerate(received[i], len(exercise.outputs)) for i in ran):
            explained.append((mistake, telling))
    if len(explained) == 1:
        mistake, telling = explained[0]
        facts.insert(0, f"{mistake.message} (your output matches this mistake on "
                        f"{_where(cases, telling)})")
    elif 1 < len(explained) <= MAX_ALTERNATIVES:
        telling = sorted(set().union(*(t for _, t in explained)))
        facts.insert(0, "one of these explains your outputs on " + _where(cases, telling) + ": "
                     + " / ".join(m.message for m, _ in explained))
    if not explained:
        first = min(failed, key=lambda i: (not cases[i].public, i))
        generic = describe_difference(received[first], expected[first], exercise)
        if generic:
            facts.append(f"on {_where(cases, [first])}: {generic}")
    return list(dict.fromkeys(facts))


def run_wrong(mistake, case) -> Any:
    """The mistake's wrong implementation on ``case`` (or a marker when it raises)."""
    try:
        args, kwargs = case.fresh_args()
        return mistake.wrong(*args, **kwargs)
    except Exception:  # noqa: BLE001  (a wrong implementation may not run on every case)
        return _FAILED


def _safe_detect(mistake, case, received, expected) -> bool:
    try:
        return bool(mistake.detect(case, received, expected))
    except Exception:  # noqa: BLE001
        return False


# == generic descriptions ==========================================================================
def describe_difference(received: Any, expected: Any, exercise) -> str:
    """A true, generic sentence on how ``received`` differs from ``expected`` (or "")."""
    outputs = exercise.outputs
    if len(outputs) > 1:
        if not isinstance(received, (tuple, list)) or len(received) != len(outputs):
            return ""
        for spec, r, e in zip(outputs, received, expected):
            from .spec import compare_output

            if compare_output(r, e, spec) is not None:
                text = _describe_one(r, e, spec)
                return f"{spec.name}: {text}" if text else ""
        return ""
    return _describe_one(received, expected, outputs[0])


def _describe_one(received: Any, expected: Any, spec) -> str:
    from .spec import to_array

    try:
        rec, exp = np.asarray(to_array(received)), np.asarray(to_array(expected))
    except TypeError:
        return ""
    if rec.dtype.kind not in "iufb" or exp.dtype.kind not in "iufb":
        return ""
    r, e = rec.astype(np.float64), exp.astype(np.float64)
    close = lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=spec.rtol,  # noqa: E731
                                                            atol=spec.atol, equal_nan=True)
    if rec.shape != exp.shape:
        if rec.ndim == 2 and rec.shape == exp.shape[::-1] and close(r.T, e):
            return "your output is the expected one transposed (rows and columns swapped)"
        if rec.size == exp.size and close(r.reshape(exp.shape), e):
            return f"the right values in the wrong shape {rec.shape} (expected {exp.shape})"
        if rec.ndim == exp.ndim:
            off = [k for k in range(rec.ndim) if rec.shape[k] != exp.shape[k]]
            if len(off) == 1 and abs(rec.shape[off[0]] - exp.shape[off[0]]) == 1:
                return (f"one element too {'many' if rec.shape[off[0]] > exp.shape[off[0]] else 'few'}"
                        f" along axis {off[0]} (an off-by-one in a size or a range?)")
        return ""
    if e.size == 0:
        return ""
    if np.isnan(r).any() and not np.isnan(e).any() or np.isinf(r).any() and not np.isinf(e).any():
        return ("NaN or inf where numbers were expected (a division by zero? numpy: "
                "np.divide(..., where=...); TensorFlow: tf.math.divide_no_nan)")
    if spec.kind == "float" and rec.dtype.kind in "iub" and not np.allclose(e, np.round(e)):
        return "whole numbers where fractions were expected (integer arithmetic or an int array?)"
    if r.ndim >= 1 and close(np.sort(r, axis=None), np.sort(e, axis=None)):
        return "the right values in another order"
    differing = ~np.isclose(r, e, rtol=spec.rtol, atol=spec.atol, equal_nan=True)
    if spec.kind != "float" or differing.sum() < 2:
        return ""   # a factor or a shift always "explains" a single number
    mask = np.abs(e) > spec.atol
    if mask.any():
        ratio = r[mask] / e[mask]
        k = float(np.median(ratio))
        if np.isfinite(k) and abs(k - 1) > 1e-3 and abs(k) > 1e-9 and close(r, k * e):
            return f"every value off by the same factor ({k:.4g} times the expected)"
    shift = float(np.median(r - e))
    if abs(shift) > spec.atol and close(r, e + shift):
        return f"every value off by the same amount ({shift:+.4g})"
    wrong = ~np.isclose(r, e, rtol=spec.rtol, atol=spec.atol, equal_nan=True)
    if wrong.ndim >= 2 and wrong.shape[0] > 1:
        rows = np.flatnonzero(wrong.reshape(wrong.shape[0], -1).any(axis=1))
        if 0 < len(rows) <= max(1, wrong.shape[0] // 4):
            return f"right except in {len(rows)} of {wrong.shape[0]} rows"
    return ""
