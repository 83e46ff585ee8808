"""Helpers for the notebooks' non-graded cells: run the learner's function where it exists and
the reference where it does not (so a learner notebook runs top to bottom before any exercise is
done), and time a learner's tiers against each other and against the reference.

These helpers reach the reference implementations; they are for demonstration cells only,
never for solution cells (the grader gives no points to a solution that uses them).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

NOT_IMPLEMENTED = "not implemented yet"   # the self-check's words (workshop.grading.check)


def is_implemented(fn: Callable, *args, **kwargs) -> bool:
    """False when calling ``fn(*args, **kwargs)`` raises ``NotImplementedError``."""
    try:
        fn(*args, **kwargs)
    except NotImplementedError:
        return False
    except Exception:  # implemented, if wrongly: the self-check says what is wrong
        return True
    return True


def mine_or_reference(fn: Callable, exercise: str, tier: str = "numpy", probe: tuple = ()) -> Callable:
    """``fn`` if the learner has implemented it, else the registry's reference for ``exercise``.

    ``probe`` is an argument tuple to try ``fn`` on (default: the exercise's first public case).
    Prints which one the following cells use.
    """
    from .exercises import get

    ex = get(exercise)
    if not probe:
        case = ex.cases(public_only=True)[0]
        args, kwargs = case.fresh_args()
        ok = is_implemented(fn, *args, **kwargs)
    else:
        ok = is_implemented(fn, *probe)
    if ok:
        print(f"using your {getattr(fn, '__name__', exercise)}")
        return fn
    print(f"{getattr(fn, '__name__', exercise)}: {NOT_IMPLEMENTED}; the cells below use the reference "
          f"{exercise} ({tier} tier) instead")
    return ex.tier(tier)


def _median_seconds(fn: Callable, args: tuple, kwargs: dict, repeat: int, budget: float) -> float:
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return float(np.median(times))


def speed_table(exercise: str, functions: dict[str, Callable], args: tuple, kwargs: dict | None = None,
                repeat: int = 5, budget: float = 5.0, reference_tiers=("numpy",), as_tensors=()) -> list[dict]:
    """Time each of ``functions`` (e.g. ``{"your loops": iou_loops, "your numpy": iou_numpy}``)
    and the reference tiers on the same inputs; print the median times and the speedups over
    the first function and over the reference. Unimplemented functions are skipped.

    ``as_tensors`` names entries of ``functions`` that take TF tensors (they get the array
    arguments as ``tf.constant``). Returns the table as a list of dicts.
    """
    from .exercises import get

    kwargs = kwargs or {}
    ex = get(exercise)
    entries = dict(functions)
    for tier in reference_tiers:
        entries[f"reference {tier}"] = ex.tier(tier)
    rows = []
    for label, fn in entries.items():
        call_args, call_kwargs = args, kwargs
        if label in as_tensors or label == "reference tf":
            import tensorflow as tf

            conv = lambda v: tf.constant(v) if isinstance(v, np.ndarray) else v  # noqa: E731
            call_args = tuple(conv(a) for a in args)
            call_kwargs = {k: conv(v) for k, v in kwargs.items()}
        try:
            fn(*call_args, **call_kwargs)  # warm-up (and tracing for tf.function)
        except NotImplementedError:
            rows.append({"implementation": label, "seconds": None, "note": NOT_IMPLEMENTED})
            continue
        except Exception as err:  # a half-finished answer must not stop the timing cell
            rows.append({"implementation": label, "seconds": None,
                         "note": f"error: {type(err).__name__}"})
            continue
        rows.append({"implementation": label,
                     "seconds": _median_seconds(fn, call_args, call_kwargs, repeat, budget)})
    timed = [r for r in rows if r["seconds"] is not None]
    base = timed[0]["seconds"] if timed else None
    ref = next((r["seconds"] for r in rows if r["implementation"].startswith("reference")
                and r["seconds"] is not None), None)
    first = timed[0]["implementation"] if timed else ""
    print(f"{'implementation':<22}{'median time':>14}  {'vs ' + first:>20}{'vs reference':>16}")
    for r in rows:
        if r["seconds"] is None:
            print(f"{r['implementation']:<22}{r['note']:>14}")
            continue
        r["speedup"] = base / r["seconds"]
        r["vs_reference"] = ref / r["seconds"] if ref else None
        vs_ref = f"{r['vs_reference']:.2f}x" if r["vs_reference"] else "-"
        print(f"{r['implementation']:<22}{r['seconds'] * 1e3:>11.2f} ms  {r['speedup']:>19.1f}x{vs_ref:>16}")
    return rows
