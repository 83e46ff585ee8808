"""Helpers for the notebooks' non-graded cells: run the learner's function where it exists and
the reference where it does not (so a learner notebook runs top to bottom before any exercise is
done), say truthfully which one ran, time a learner's tiers against each other and against the
reference, take worked examples and timing problems from the exercise registry (never copies of
them), bring a learner's functions over from another chapter's notebook (:func:`functions_from`),
and import TensorFlow without its start-up log lines.

These helpers reach the reference implementations; they are for demonstration cells only,
never for solution cells (the grader gives no points to a solution that uses them).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
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


class Reference:
    """The registry's reference for an exercise, standing in for a learner's function that is not
    written yet: what :func:`mine_or_reference` returns then. It calls the reference, and
    :func:`whose` reads it as "the reference" so that the cells never call it "yours"."""

    def __init__(self, fn: Callable, exercise: str, tier: str):
        functools.update_wrapper(self, fn, updated=())   # __name__, __doc__, __wrapped__ (signature)
        self.reference = fn
        self.exercise = exercise
        self.tier = tier

    def __call__(self, *args, **kwargs):
        return self.reference(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<the reference {self.exercise} ({self.tier} tier)>"


def is_reference(fn) -> bool:
    """True for the stand-in :func:`mine_or_reference` returns (also inside ``tf.function`` or
    ``functools.wraps`` wrappers)."""
    for _ in range(8):
        if isinstance(fn, Reference):
            return True
        inner = getattr(fn, "python_function", None) or getattr(fn, "__wrapped__", None)
        if inner is None or inner is fn:
            return False
        fn = inner
    return False


def whose(fn, standalone: bool = False) -> str:
    """Who wrote ``fn``, for the words a demonstration prints: ``"your"`` for the learner's
    function, ``"the reference"`` for the stand-in :func:`mine_or_reference` returned.

    ``standalone=True`` gives the word that stands alone (a table's column): ``"yours"`` or
    ``"reference"``.
    """
    if standalone:
        return "reference" if is_reference(fn) else "yours"
    return "the reference" if is_reference(fn) else "your"


def mine_or_reference(fn: Callable, exercise: str, tier: str = "numpy", probe: tuple = ()) -> Callable:
    """``fn`` if the learner has implemented it, else the registry's reference for ``exercise``
    as a :class:`Reference` (use :func:`whose` to print who wrote what runs).

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
    return Reference(ex.tier(tier), exercise, tier)


def _first_line(err: BaseException, limit: int = 120) -> str:
    return (str(err).splitlines() or [""])[0][:limit]


def functions_from(notebook, *names: str) -> dict[str, Callable]:
    """Your functions ``names`` (e.g. ``"rpn_proposals_numpy"``) from another chapter's notebook,
    for a demonstration in this one; the reference for those that are missing or not written.

    ``notebook`` is the path of your saved notebook (relative paths: from the working folder,
    which is the folder of the running notebook, so ``"05_rpn.ipynb"`` is chapter 5 next to this
    one). It is read with nbformat as saved on disk (save it first if you changed it). For each
    name ``<exercise>_<tier>`` it runs, in a fresh namespace of its own, what the grader runs for
    that exercise: the notebook's import statements (each alone; failures ignored), the solution
    cell whose nbgrader ``grade_id`` is that name, and the cells defining the names it uses
    (e.g. your ``iou_numpy`` if your function calls it); nothing else of that notebook runs.

    Returns ``{name: function}`` with an entry for every name: your function when it is defined
    and does not raise ``NotImplementedError`` on the exercise's first public case, otherwise the
    registry's reference for that exercise and tier, as a :class:`Reference` (so
    :func:`whose` says whose it is). Prints one line per name saying which one it is and why.

    Raises:
      ValueError: a name that is not ``<exercise>_<tier>`` of a registered exercise.
    """
    import contextlib
    import io
    from pathlib import Path

    from .exercises import get
    from .grading.notebook import program_for, split_id

    wanted = {}
    for name in names:
        parsed = split_id(name)
        if parsed is None:
            raise ValueError(f"names: expected <exercise>_<tier> (e.g. 'rpn_proposals_numpy'), got {name!r}")
        try:
            ex = get(parsed[0])
        except KeyError:
            raise ValueError(f"names: {name!r} names no exercise of the course") from None
        if parsed[1] not in ex.tiers:
            raise ValueError(f"names: {ex.name} has no {parsed[1]} tier (it has {', '.join(ex.tiers)})")
        wanted[name] = (ex, parsed[1])

    path = Path(notebook)
    nb, problem = None, None
    try:
        import nbformat

        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        problem = f"there is no {path} next to this notebook"
    except Exception as err:  # not JSON, not a notebook, unreadable: say so, keep the reference
        problem = f"{path.name} could not be read ({type(err).__name__}: {_first_line(err)})"

    found: dict[str, Callable] = {}
    for name, (ex, tier) in wanted.items():
        why = problem
        fn = None
        if nb is not None:
            program = program_for(nb, name, name)
            if program is None:
                why = f"{path.name} has no solution cell {name!r}"
            else:
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        with stderr_silenced():   # e.g. TensorFlow's start-up lines, if it is new here
                            namespace = program.run_here(path.name, f"functions_from:{path.stem}")
                except Exception as err:  # a cell that does not run: the reference stays
                    why = f"running its cells of {path.name} raised {type(err).__name__}: {_first_line(err)}"
                else:
                    fn = namespace.get(name)
                    if not callable(fn):
                        why, fn = f"{path.name} does not define a function {name}", None
        if fn is not None:
            args, kwargs = ex.cases(public_only=True)[0].fresh_args()
            if is_implemented(fn, *args, **kwargs):
                print(f"{name}: yours, from {path.name}")
                found[name] = fn
                continue
            why = f"{NOT_IMPLEMENTED} in {path.name}"
        print(f"{name}: {why}; the reference {ex.name} ({tier} tier) stays in place")
        found[name] = Reference(ex.tier(tier), ex.name, tier)
    return found


# -- TensorFlow, quietly -----------------------------------------------------------------------

@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 to /dev/null for a while: C++ libraries write their log lines there
    directly, past ``sys.stderr``. Restored however the block ends."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:                          # no file descriptor 2 at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """``import tensorflow``, without the log lines TensorFlow writes while it starts.

    Importing TensorFlow 2.21 writes a block of informational lines to file descriptor 2 (oneDNN,
    CUDA drivers, CPU instructions), and its first look at the devices one more ("failed call to
    cuInit", on a machine without a GPU). None of them is an error, but a notebook shows them
    in red. They come from C++ before its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL``
    alone does not stop them; this imports TensorFlow and lists its devices with file
    descriptor 2 sent to /dev/null, then puts it back. It also sets ``TF_CPP_MIN_LOG_LEVEL=3``
    and ``TF_ENABLE_ONEDNN_OPTS=0`` (the same kernels on every CPU) unless they are set already.

    Returns the ``tensorflow`` module; a later ``import tensorflow as tf`` gets the same module.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()     # the CUDA probe, and its log line, happen here
    return tf


# -- speed tables ------------------------------------------------------------------------------

def significant(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits: 0.00412, 12.3, 1.23e+03."""
    return f"{float(x):.{digits}g}"


def duration(seconds: float, digits: int = 3) -> str:
    """A time with ``digits`` significant digits in a readable unit: 41.2 µs, 3.5 ms, 1.23 s."""
    s = float(f"{float(seconds):.{digits}g}")       # round first: 0.99996 s is "1 s", not "1e+03 ms"
    if s == 0 or not math.isfinite(s):
        return f"{s:g} s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(s) >= scale:
            return f"{significant(s / scale, digits)} {unit}"
    return f"{significant(s / 1e-9, digits)} ns"


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


def public_case(exercise: str, name: str):
    """The public case called ``name`` of ``exercise`` in the registry, a ``Case`` with ``.args``,
    ``.kwargs``, ``.expected`` (a pinned case's answer, else None) and ``.about``: a notebook's
    worked example is the case the self-check runs, not a copy that could drift from it."""
    from .exercises import get

    return get(exercise).public_case(name)


def benchmark_case(exercise: str, name: str):
    """The benchmark problem called ``name`` of ``exercise`` (what ``make bench`` times), a
    ``Case`` with ``.args`` and ``.kwargs`` for :func:`speed_table`."""
    from .exercises import get

    return get(exercise).benchmark(name)


def reference_stages(**replacements: Callable):
    """The detector's stages (:class:`workshop.models.detector.Stages`) from the exercise
    registry's numpy references; ``replacements`` (e.g. ``roi_align=roi_align_numpy``) put your
    own functions in their place."""
    import dataclasses

    from .exercises import get
    from .models.detector import Stages

    stages = Stages(**{f.name: get(f.name).tier("numpy") for f in dataclasses.fields(Stages)})
    return dataclasses.replace(stages, **replacements)


def reference_training_stages():
    """What a detector's training step computes outside the networks, from the exercise
    registry's references (:class:`workshop.models.detector_training.TrainingStages`)."""
    from .exercises import get
    from .models.detector_training import TrainingStages

    return TrainingStages(rpn_targets=get("rpn_targets").tier("numpy"),
                          roi_targets=get("roi_targets").tier("numpy"),
                          roi_align_tf=get("roi_align").tier("tf"),
                          rpn_loss=get("rpn_loss").tier("tf"), head_loss=get("head_loss").tier("tf"))


def load_detector(directory=None, **replacements: Callable):
    """The course's trained detector (the checkpoint of ``./download_checkpoint.sh``, or the
    checkpoint folder ``directory``) running the reference stages, or your own functions for
    the stages you name (``load_detector(roi_align=roi_align_numpy)``)."""
    from .models.detector import load_detector as load

    if directory is None:
        from .checkpoint import ready_dir

        directory = ready_dir()
    return load(directory, reference_stages(**replacements))


def speed_table(exercise: str, functions: dict[str, Callable], args: tuple, kwargs: dict | None = None,
                repeat: int = 5, budget: float = 5.0, reference_tiers=("numpy",), as_tensors=(),
                industry: bool = True) -> list[dict]:
    """Time each of ``functions`` (e.g. ``{"your loops": iou_loops, "your numpy": iou_numpy}``),
    the reference tiers (the textbook versions), their tuned kernels (how fast the same
    algorithm can get) and (``industry``) the libraries' own ops, on the same inputs; print
    the median times and the speedups over the first function and over the reference, each with
    3 significant digits (a speedup below 1 is a slowdown: 0.0025x is 400 times slower).
    Unimplemented functions are skipped.

    ``as_tensors`` names entries of ``functions`` that take TF tensors (they get the array
    arguments as ``tf.constant``). Returns the table as a list of dicts.
    """
    from .exercises import get
    from .exercises.spec import resolve

    kwargs = kwargs or {}
    ex = get(exercise)
    entries = dict(functions)
    for tier in reference_tiers:
        entries[f"reference {tier}"] = ex.tier(tier)
    for tier in reference_tiers:
        if tier in ex.kernels:
            entries[f"tuned kernel {tier}"] = ex.kernel(tier)
    if industry:
        for name in ex.baselines:
            try:
                entries[f"industry: {name}"] = resolve(ex.baselines[name])
            except ImportError:   # an optional library (see requirements-bench.txt)
                continue
    rows = []
    for label, fn in entries.items():
        call_args, call_kwargs = args, kwargs
        if label in as_tensors or label in ("reference tf", "tuned kernel tf"):
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
            if label.startswith("industry: "):   # a library op that does not take this case
                continue
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
    name_width = max([22] + [len(r["implementation"]) + 2 for r in rows])
    ratio_width = max(12, len(first) + 5)
    print(f"{'implementation':<{name_width}}{'median time':>12}  {'vs ' + first:>{ratio_width}}"
          f"{'vs reference':>16}")
    for r in rows:
        if r["seconds"] is None:
            print(f"{r['implementation']:<{name_width}}{r['note']:>12}")
            continue
        r["speedup"] = base / r["seconds"] if r["seconds"] > 0 else math.inf
        r["vs_reference"] = (ref / r["seconds"] if r["seconds"] > 0 else math.inf) if ref else None
        vs_ref = f"{significant(r['vs_reference'])}x" if r["vs_reference"] else "-"
        print(f"{r['implementation']:<{name_width}}{duration(r['seconds']):>12}  "
              f"{significant(r['speedup']) + 'x':>{ratio_width}}{vs_ref:>16}")
    return rows
