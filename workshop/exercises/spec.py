"""What an exercise is.

An :class:`Exercise` is declared once, in one of the chapter modules next to this file, and
everything else draws from that declaration:

* the test suite runs every reference tier on every case and every declared mistake;
* a notebook's self-check runs the public cases against a learner's function;
* the grader runs the hidden cases, in another process, and compares here;
* the benchmark times the tiers (and the industry baselines) on the declared problem sizes.

Expected outputs come from the exercise's reference tier (numpy, float64) unless a case pins
its expected value. A mistake is diagnosed by reproducing it: each :class:`Mistake` carries a
deliberately wrong implementation, and a learner whose outputs match the wrong
implementation's on every case (and tell it apart on one) gets that mistake's message
(:mod:`workshop.exercises.diagnosis`: right or silent).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

TIERS = ("loops", "numpy", "tf")
TIER_TITLES = {"loops": "make it work (loops)", "numpy": "make it fast (numpy)",
               "tf": "make it real (TensorFlow)"}


# Tier paths are strings resolved here on use, so that importing the registry imports neither
# TensorFlow (only a TF tier needs it) nor the answers (workshop.reference, hidden from learner
# code); tests/test_registry.py::test_every_implementation_path_resolves_to_a_function checks them.
def resolve(path: str) -> Callable:
    """Import ``"package.module:attribute"`` lazily (so TF and the answers load only when used)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Case:
    """One set of inputs for an exercise.

    ``args``/``kwargs`` hold numpy arrays and plain Python values only (they cross process
    boundaries as npz/JSON). ``expected`` pins the answer (else the reference tier computes it).
    ``public`` cases are shown to learners; hidden ones run at grading only.
    """

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    public: bool = True
    expected: Any = None
    about: str = ""

    def fresh_args(self) -> tuple[tuple, dict]:
        """Copies of the inputs, so a function that writes into its arguments harms no one."""
        copy = lambda v: v.copy() if isinstance(v, np.ndarray) else v  # noqa: E731
        return tuple(copy(a) for a in self.args), {k: copy(v) for k, v in self.kwargs.items()}

    def describe(self, limit: int = 400) -> str:
        """A short text of the inputs for a learner-facing message."""
        parts = [short_text(a, limit // 3) for a in self.args]
        parts += [f"{k}={short_text(v, limit // 3)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


@dataclass(frozen=True)
class Output:
    """How one output (or one element of a tuple output) is compared.

    kind: ``"float"`` (allclose with rtol/atol), ``"int"`` (exact integers, e.g. indices),
      ``"bool"`` (exact).
    ordered: False compares as a set (sorted before comparing), e.g. indices in any order.
    rtol/atol: the tolerance for learners and the grader: a correct float32 answer passes.
    strict_atol: the tolerance the reference tiers must meet among themselves (tests).
    tf_dtype: the TF tier's dtype for this output; default: the dtype of the case's first
      floating-point array for floats (float64 in, float64 out), int64 for ints, bool for bools.
    """

    name: str = "output"
    kind: str = "float"
    rtol: float = 1e-4
    atol: float = 1e-3
    strict_atol: float = 1e-6
    ordered: bool = True
    tf_dtype: str = ""


@dataclass(frozen=True)
class Mistake:
    """A mistake learners make, how to recognise it and what to tell them.

    wrong: a deliberately wrong implementation with the exercise's signature. It both documents
      the mistake (the tests check it is diagnosed) and recognises it (a learner whose outputs
      equal ``wrong``'s on every case gets ``message``).
    detect: optional ``(case, received, expected) -> bool`` for mistakes better recognised by a
      property of the output than by reproducing it (e.g. NaN where a number was due).
    """

    name: str
    message: str
    wrong: Callable
    detect: Callable | None = None


@dataclass(frozen=True)
class Exercise:
    """One exercise: the reference tiers, the cases, the comparison and the diagnoses.

    name: registry key, e.g. ``"iou"``; chapter: the stem of the notebook that grades it, e.g.
      ``"03_iou_nms"`` (tests/test_notebooks.py checks it).
    signature: the function signature a learner implements; its argument names are the ones
      the grader's contracts speak of (``workshop.grading.check.argument_names``).
    summary: one line of what it computes. ``python -m workshop exercises`` lists chapter,
      summary and signature.
    tiers: tier name -> ``"module:function"`` of the reference implementation.
    reference_tier: the tier that computes expected outputs (float64 numpy).
    edge_cases: ``() -> list[Case]``, named cases (pinned ones with ``expected``).
    random_case: ``(rng) -> Case``, one random, well-conditioned case.
    outputs: one :class:`Output` per output (a tuple output has several).
    mistakes: the diagnosable mistakes.
    tf_jit: the TF tier works under ``tf.function(jit_compile=True)``.
    tf_static: argument names that stay Python values (not tensors) in the TF tier.
    benchmarks: ``() -> list[Case]`` large problems for ``workshop.bench``.
    baselines: name -> ``"module:function"`` industry implementations with the same signature.
    kernels: tier -> ``"module:function"`` of a tuned kernel (:mod:`workshop.kernels`) with that
      tier's contract and results, checked on every case and timed beside the textbook tier.
    answer_calls: the libraries' finished versions of this exercise (full dotted names, e.g.
      ``"tensorflow.image.non_max_suppression"``): a tier that uses one earns nothing...
    library_tiers: ...except these tiers, whose lesson is calling the library's op correctly
      (chapter 1's TF tier: ``tf.nn.conv2d`` with the batch axis and strides it wants).
    no_loops_over: arguments the numpy tier must not loop over in Python ("make it fast").
    minutes: tier -> the learner's time for that tier in minutes (reading its explanation,
      writing it, passing the self-check), for every tier the chapter's notebook grades
      (tests/test_tracks.py checks both); :mod:`workshop.tracks` adds them up per track.
    stretch: the tiers that are stretch goals: optional in a workshop track (they count only
      where the track says so, :class:`workshop.tracks.Track`); every other tier is core.
    """

    name: str
    chapter: str
    signature: str
    summary: str
    tiers: dict[str, str]
    edge_cases: Callable[[], list[Case]]
    random_case: Callable[[np.random.Generator], Case]
    outputs: tuple[Output, ...] = (Output(),)
    mistakes: tuple[Mistake, ...] = ()
    reference_tier: str = "numpy"
    tf_jit: bool = True
    tf_static: tuple[str, ...] = ()
    benchmarks: Callable[[], list[Case]] | None = None
    baselines: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, str] = field(default_factory=dict)
    n_public_random: int = 2
    n_hidden_random: int = 20
    answer_calls: tuple[str, ...] = ()
    library_tiers: tuple[str, ...] = ()
    no_loops_over: tuple[str, ...] = ()
    minutes: dict[str, int] = field(default_factory=dict)
    stretch: tuple[str, ...] = ()

    def is_stretch(self, tier: str) -> bool:
        """True when ``tier`` is a stretch goal, not core."""
        return tier in self.stretch

    def tf_dtypes(self, case: Case) -> list[str]:
        """The dtypes the TF tier documents for ``case``'s outputs (see :class:`Output`)."""
        floats = [a.dtype.name for a in [*case.args, *case.kwargs.values()]
                  if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        default = {"float": floats[0] if floats else "float64", "int": "int64", "bool": "bool"}
        return [o.tf_dtype or default[o.kind] for o in self.outputs]

    def answer_calls_for(self, tier: str | None) -> tuple[str, ...]:
        """The library answers ``tier`` may not use."""
        return () if tier in self.library_tiers else self.answer_calls

    # -- implementations -------------------------------------------------------------------
    def tier(self, tier: str) -> Callable:
        """The reference implementation of ``tier``."""
        if tier not in self.tiers:
            raise KeyError(f"{self.name} has no {tier!r} tier; it has {sorted(self.tiers)}")
        return resolve(self.tiers[tier])

    def kernel(self, tier: str) -> Callable:
        """The tuned kernel with ``tier``'s contract (see ``kernels``)."""
        if tier not in self.kernels:
            raise KeyError(f"{self.name} has no {tier!r} kernel; it has {sorted(self.kernels)}")
        return resolve(self.kernels[tier])

    @property
    def reference(self) -> Callable:
        return self.tier(self.reference_tier)

    # -- cases -----------------------------------------------------------------------------
    def cases(self, public_only: bool = True, seed: int = 0, n_random: int | None = None) -> list[Case]:
        """Named edge cases plus random ones. Public: the public edge cases and
        ``n_public_random`` random cases from ``seed``; else everything, with ``n_random``
        (default ``n_hidden_random``) hidden random cases."""
        named = [c for c in self.edge_cases() if c.public or not public_only]
        rng = np.random.default_rng(seed)
        count = self.n_public_random if public_only else (
            self.n_hidden_random if n_random is None else n_random)
        randoms = []
        for i in range(count):
            c = self.random_case(rng)
            randoms.append(Case(name=f"random #{i + 1}" + (f" ({c.name})" if c.name else ""),
                                args=c.args, kwargs=c.kwargs, public=public_only,
                                expected=c.expected, about=c.about))
        return named + randoms

    def public_case(self, name: str) -> Case:
        """The public named case called ``name`` (see ``edge_cases``): what a notebook shows as a
        worked example, so that the notebook and the self-check use the same numbers."""
        public = [c for c in self.edge_cases() if c.public]
        for c in public:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no public case {name!r}; its public cases: "
                       f"{[c.name for c in public]}")

    def benchmark(self, name: str) -> Case:
        """The benchmark problem called ``name`` (see ``benchmarks``): what ``workshop.bench``
        times, and a notebook's timing cell may time too."""
        cases = self.benchmarks() if self.benchmarks is not None else []
        for c in cases:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no benchmark {name!r}; it has {[c.name for c in cases]}")

    def expected(self, case: Case) -> Any:
        if case.expected is not None:
            return case.expected
        args, kwargs = case.fresh_args()
        return self.reference(*args, **kwargs)

    # -- comparison ------------------------------------------------------------------------
    def compare(self, received: Any, expected: Any, strict: bool = False) -> str | None:
        """None when ``received`` matches ``expected``, else what differs (one sentence)."""
        if len(self.outputs) == 1:
            return compare_output(received, expected, self.outputs[0], strict)
        if not isinstance(received, (tuple, list)) or len(received) != len(self.outputs):
            got = f"a {type(received).__name__}" + (
                f" of length {len(received)}" if isinstance(received, (tuple, list)) else "")
            names = ", ".join(o.name for o in self.outputs)
            return f"expected a tuple of {len(self.outputs)} outputs ({names}), got {got}"
        for out, r, e in zip(self.outputs, received, expected):
            problem = compare_output(r, e, out, strict)
            if problem:
                return f"{out.name}: {problem}"
        return None

    def explain(self, cases: Sequence[Case], expected: Sequence, received: Sequence,
                wrong_output: Callable | None = None) -> list[str]:
        """The diagnoses a verdict may state, on the evidence of every case at once
        (:func:`workshop.exercises.diagnosis.explain`): ``received[i]`` is the learner's output
        on ``cases[i]``, None where it raised or did not run."""
        from .diagnosis import explain

        return explain(self, cases, expected, received, wrong_output)


# -- comparing one output --------------------------------------------------------------------
def to_array(value: Any) -> np.ndarray:
    if hasattr(value, "numpy") and callable(value.numpy):  # a tf.Tensor
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple, int, float, bool, np.number, np.bool_)):
        return np.asarray(value)
    raise TypeError(f"a {type(value).__name__}")


def compare_output(received: Any, expected: Any, spec: Output, strict: bool = False) -> str | None:
    """Compare one output with plain numpy, after converting it to an ndarray of the expected
    kind (so an object with a clever ``__eq__`` earns nothing)."""
    exp = np.asarray(to_array(expected))
    try:
        rec = to_array(received)
    except TypeError as err:
        return f"expected an array, got {err}"
    if rec.dtype == object:
        return "expected a numeric array, got an array of Python objects"
    if spec.kind == "int" and rec.size and rec.dtype.kind not in "iub":
        if rec.dtype.kind == "f" and rec.ndim == 1 and np.all(rec == np.round(rec)):
            pass  # integral floats are accepted as indices
        else:
            return (f"expected integer {spec.name} of shape {exp.shape}, got {rec.dtype} values "
                    f"of shape {rec.shape}")
    if rec.dtype.kind not in "iufb":
        return f"expected a numeric array, got dtype {rec.dtype}"
    if rec.shape != exp.shape:
        if rec.size == 0 and exp.size == 0 and rec.ndim == 1 and exp.ndim == 1:
            return None
        return f"expected shape {exp.shape}, got shape {rec.shape}"
    if exp.size == 0:
        return None
    if spec.kind == "bool" and rec.dtype.kind != "b" and not np.isin(rec, (0, 1)).all():
        return f"expected booleans (True/False), got values such as {_fmt(float(rec.flat[np.flatnonzero(~np.isin(rec, (0, 1)))[0]]))}"
    if spec.kind in ("int", "bool"):
        r, e = rec.astype(np.int64), exp.astype(np.int64)
        if not spec.ordered:
            r, e = np.sort(r, axis=None), np.sort(e, axis=None)
        if np.array_equal(r, e):
            return None
        where = np.argwhere(r != e)[0]
        idx = tuple(int(i) for i in where)
        return (f"first difference at index {list(idx)}: expected {e[idx]}, got {r[idx]} "
                f"(expected {short_text(e)}, got {short_text(r)})")
    r, e = rec.astype(np.float64), exp.astype(np.float64)
    rtol, atol = (0.0, spec.strict_atol) if strict else (spec.rtol, spec.atol)
    close = np.isclose(r, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    bad = np.argwhere(~close)
    idx = tuple(int(i) for i in bad[0])
    return (f"{len(bad)} of {e.size} values differ; first at index {list(idx)}: expected "
            f"{_fmt(e[idx])}, got {_fmt(r[idx])}")


def _fmt(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.6g}"


def short_text(value: Any, limit: int = 160) -> str:
    if isinstance(value, np.ndarray):
        with np.printoptions(precision=4, suppress=True, threshold=12, edgeitems=2):
            text = np.array2string(value, separator=", ").replace("\n", "")
        text = " ".join(text.split())
        if value.ndim > 1 or value.size > 12:
            text = f"array{value.shape} {text}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_tensors(case: Case, static: Sequence[str] = ()) -> tuple[tuple, dict]:
    """The case's array arguments as tf tensors (Python scalars and ``static`` names untouched)."""
    import tensorflow as tf

    args, kwargs = case.fresh_args()
    conv = lambda v: tf.constant(v) if isinstance(v, np.ndarray) else v  # noqa: E731
    return (tuple(conv(a) for a in args),
            {k: (v if k in static else conv(v)) for k, v in kwargs.items()})
