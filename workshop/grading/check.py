"""Running an exercise's cases against a function and reporting a verdict.

Used by the notebooks' self-check cells (public cases), the tests (every case, every tier) and
the grader (hidden cases, with the learner's outputs computed in another process).

* :func:`check` -- self-check on the public cases; prints a verdict, never raises.
* :func:`grade` -- what a notebook's graded test cell calls (see ``workshop.grading.notebook``):
  the public self-check; under ``nbgrader validate`` (``NBGRADER_EXECUTION`` set) it raises
  ``AssertionError`` on a failure. Grades never come from a learner's kernel: ``workshop grade``
  and nbgrader's autograde (:mod:`workshop.grading.autograde`) run the sandboxed grader.
* :func:`grading_cases` -- the cases a grade is given on, for a grading run's secret seed (the
  same for nbgrader and ``workshop grade``).
"""

from __future__ import annotations

import html
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exercises import get
from ..exercises.spec import Case, Exercise, as_tensors

NOT_IMPLEMENTED = "not implemented yet"
GRADING_ENV = "NBGRADER_EXECUTION"


@dataclass
class CaseResult:
    case: str
    passed: bool
    problem: str = ""            # what differs, or the exception raised
    inputs: str = ""             # a short text of the inputs (public cases only)
    expected: str = ""
    received: str = ""
    public: bool = True


@dataclass
class Verdict:
    exercise: str
    tier: str | None
    results: list[CaseResult]
    status: str = "checked"      # "checked" | NOT_IMPLEMENTED | "error"
    note: str = ""
    diagnoses: list[str] = field(default_factory=list)   # on the evidence of all cases
    contract: list[str] = field(default_factory=list)    # the tier's contract, broken

    @property
    def passed(self) -> bool:
        return (self.status == "checked" and bool(self.results) and not self.contract
                and all(r.passed for r in self.results))

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.results)

    def headline(self) -> str:
        title = self.exercise + (f" [{self.tier}]" if self.tier else "")
        if self.status == NOT_IMPLEMENTED:
            return f"{title}: {NOT_IMPLEMENTED}"
        if self.status == "error":
            return f"{title}: could not be checked: {self.note}"
        n = len(self.results)
        scope = "public" if all(r.public for r in self.results) else ""
        checks = f"{scope} checks".strip()
        if self.passed:
            more = "; more checks run at grading" if scope == "public" else ""
            return f"{title}: passed, {n}/{n} {checks} passed{more}"
        if self.contract and self.n_passed == n:
            return f"{title}: FAILED, the tier's contract is broken ({n}/{n} {checks} passed)"
        return f"{title}: FAILED, {self.n_passed}/{n} {checks} passed"

    def report(self, max_failures: int = 3) -> str:
        """The verdict for a learner: public cases in full, hidden cases by name and kind of
        problem only (never their inputs or expected values)."""
        lines = [self.headline()]
        lines += [f"  contract: {c}" for c in self.contract]
        failures = [r for r in self.results if not r.passed]
        for r in failures[:max_failures]:
            problem = r.problem if r.public else hidden_problem(r.problem)
            lines.append(f"  case {r.case!r}{'' if r.public else ' (hidden)'}: {problem}")
            if r.public and r.inputs:
                lines.append(f"    inputs:   {r.inputs}")
            if r.public and r.expected:
                lines.append(f"    expected: {r.expected}")
                lines.append(f"    received: {r.received}")
        if len(failures) > max_failures:
            lines.append(f"  ... and {len(failures) - max_failures} more failed cases")
        for d in self.diagnoses:
            lines.append(f"  diagnosis: {d}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def to_dict(self, hidden_details: bool = False) -> dict:
        """A JSON-able record; hidden cases' inputs/values only with ``hidden_details``."""
        cases = []
        for r in self.results:
            d = {"case": r.case, "public": r.public, "passed": r.passed}
            if not r.passed:
                d["problem"] = r.problem if (r.public or hidden_details) else hidden_problem(r.problem)
                if r.public or hidden_details:
                    d.update(inputs=r.inputs, expected=r.expected, received=r.received)
            cases.append(d)
        return {"exercise": self.exercise, "tier": self.tier, "status": self.status,
                "note": self.note, "passed": self.passed, "n_passed": self.n_passed,
                "n_cases": len(self.results), "headline": self.headline(),
                "diagnoses": self.diagnoses, "contract": self.contract, "cases": cases}

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else ("#9a6700" if self.status == NOT_IMPLEMENTED else "#cf222e")
        body = html.escape(self.report())
        return f'<pre style="border-left: 4px solid {colour}; padding-left: 8px">{body}</pre>'


def hidden_problem(problem: str) -> str:
    """What may be said about a failed hidden case: the kind of problem, not the values."""
    if problem.startswith("raised "):
        return problem.split(":", 1)[0]          # "raised ValueError"
    if "expected shape" in problem:
        return "wrong output shape"  # the shapes would tell the hidden input's sizes
    for keep in ("expected an array", "expected a numeric", "expected a tuple"):
        if keep in problem:
            return problem.split(" (expected", 1)[0]
    if "expected integer" in problem:
        return "expected integer values"
    return "wrong values"


def _short(value: Any) -> str:
    from ..exercises.spec import short_text as short
    from ..exercises.spec import to_array

    if isinstance(value, tuple):  # several outputs, possibly of different shapes
        return "(" + ", ".join(_short(v) for v in value) + ")"
    try:
        return short(to_array(value))
    except (TypeError, ValueError):
        return short(value)


def run_case(exercise: Exercise, case: Case, fn: Callable, tier: str | None = None) -> Any:
    """Call ``fn`` on ``case`` (as tensors for the TF tier) and return its output as numpy."""
    if tier == "tf":
        args, kwargs = as_tensors(case, exercise.tf_static)
    else:
        args, kwargs = case.fresh_args()
    return fn(*args, **kwargs)


def _empty_like(value: Any, expected: Any) -> Any:
    """An empty list/array stands for an empty array of any shape (``[]`` for a (0, M) IoU)."""
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(expected, (list, tuple)):
        try:
            rec, exp = np.asarray(value), np.asarray(expected)
        except Exception:  # noqa: BLE001
            return value
        if rec.size == 0 and exp.size == 0 and rec.dtype != object and rec.ndim <= exp.ndim:
            return np.zeros(exp.shape, dtype=rec.dtype if rec.dtype.kind in "iufb" else exp.dtype)
    return value


def _lenient(exercise: Exercise, received: Any, expected: Any) -> Any:
    if len(exercise.outputs) == 1:
        return _empty_like(received, expected)
    if isinstance(received, (tuple, list)) and isinstance(expected, (tuple, list)) and len(
            received) == len(expected):
        return tuple(_empty_like(r, e) for r, e in zip(received, expected))
    return received


def judge(exercise: Exercise, case: Case, received: Any, strict: bool = False,
          expected: Any = None) -> CaseResult:
    """Compare a received output with the expected one and diagnose a mismatch."""
    if expected is None:
        expected = exercise.expected(case)
    if not strict:  # learners: `[]` for an empty (0, M) result; the reference tiers: exact
        received = _lenient(exercise, received, expected)
    problem = exercise.compare(received, expected, strict=strict)
    if problem is None:
        return CaseResult(case.name, True, public=case.public)
    return CaseResult(case.name, False, problem, inputs=case.describe() if case.public else "",
                      expected=_short(expected) if case.public else "",
                      received=_short(received) if case.public else "",
                      public=case.public)


def diagnosed(exercise: Exercise, tier: str | None, cases: list[Case], expected: list,
              received: list, results: list[CaseResult], wrong_output=None) -> Verdict:
    """The verdict of ``results``, with the diagnoses the evidence of all cases supports."""
    verdict = Verdict(exercise.name, tier, results)
    if not verdict.passed:
        lenient = [None if r is None else _lenient(exercise, r, e)
                   for r, e in zip(received, expected)]
        try:
            verdict.diagnoses = exercise.explain(cases, expected, lenient, wrong_output)
        except Exception:  # noqa: BLE001  (a diagnosis must never stop a verdict)
            verdict.diagnoses = []
    return verdict


def contract_case(cases: list[Case]) -> int | None:
    """The case a TF tier runs under ``tf.function(jit_compile=...)``: the first public one."""
    return next((i for i, c in enumerate(cases) if c.public), None)


def static_contract(exercise: Exercise, tier: str | None, sources: list[str], imports: list[str],
                    function: str, known: dict[str, str] | None = None) -> list[str]:
    """The contract problems visible in the code itself (:mod:`workshop.grading.contracts`)."""
    from .contracts import answer_message, answer_references, loops_over

    problems = []
    found = answer_references(sources, imports, exercise.answer_calls_for(tier), known)
    if found:
        problems.append(answer_message(found))
    if tier == "numpy" and exercise.no_loops_over and sources:
        loops = loops_over(sources[-1], function, exercise.no_loops_over)
        if loops:
            problems.append(f"your numpy tier has {loops[0]}: this is the vectorized tier (make "
                            "it fast): broadcast over the arrays instead of looping in Python")
    return problems


def _source_of(fn: Callable) -> tuple[str, dict[str, str]] | None:
    import inspect
    import textwrap
    import types

    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    known = {k: v.__name__ for k, v in getattr(fn, "__globals__", {}).items()
             if isinstance(v, types.ModuleType)}
    return src, known


def check_cases(exercise: Exercise, fn: Callable, cases: list[Case], tier: str | None = None,
                strict: bool = False) -> Verdict:
    """Run ``fn`` on ``cases`` in this process and judge it; with a ``tier``, the tier's
    contract too (:mod:`workshop.grading.contracts`; library answers found in the code here,
    and also at run time by the sandboxed grader, whose process is its own to patch)."""
    from . import contracts

    results, expected, received, contract = [], [], [], []
    if tier is not None:
        found = _source_of(fn)
        if found is not None:
            contract += static_contract(exercise, tier, [found[0]], [],
                                        getattr(fn, "__name__", ""), found[1])
    jit_case = contract_case(cases) if tier == "tf" else None
    kinds = [o.kind for o in exercise.outputs]
    names = argument_names(exercise)
    for i, case in enumerate(cases):
        exp = exercise.expected(case)
        expected.append(exp)
        call = fn
        if tier == "tf":
            args, kwargs = as_tensors(case, exercise.tf_static)
            if i == jit_case:
                import tensorflow as tf

                call = tf.function(fn, jit_compile=exercise.tf_jit)
        else:
            args, kwargs = case.fresh_args()
        try:
            out = call(*args, **kwargs)
        except NotImplementedError:
            return Verdict(exercise.name, tier, [], status=NOT_IMPLEMENTED)
        except (Exception, SystemExit) as err:  # the learner's code raised: report it, never crash the notebook  # noqa: BLE001
            if call is not fn:
                problem = contracts.tf_failure(err)
            else:
                tb = traceback.extract_tb(err.__traceback__)
                where = f" (line {tb[-1].lineno} of {tb[-1].name})" if tb else ""
                problem = f"raised {type(err).__name__}: {err}{where}"
            results.append(CaseResult(case.name, False, problem,
                                      inputs=case.describe() if case.public else "",
                                      public=case.public))
            received.append(None)
            continue
        problem = ""
        if tier is not None:
            changed = contracts.changed_arguments(list(case.args), list(args), names) \
                if tier != "tf" else []
            tf_dtypes = exercise.tf_dtypes(case) if i == jit_case else None
            problem = contracts.case_problem(tier, contracts.describe_output(out), changed,
                                             kinds, tf_dtypes)
        if problem:
            results.append(CaseResult(case.name, False, problem,
                                      inputs=case.describe() if case.public else "",
                                      public=case.public))
            received.append(None)
            continue
        results.append(judge(exercise, case, out, strict=strict, expected=exp))
        received.append(out)
    verdict = diagnosed(exercise, tier, cases, expected, received, results)
    verdict.contract = list(dict.fromkeys(contract))
    return verdict


def argument_names(exercise: Exercise) -> list[str]:
    """The exercise's positional argument names, from its signature text."""
    inside = exercise.signature.partition("(")[2].partition(")")[0]
    return [p.split("=")[0].strip() for p in inside.split(",") if p.strip()]


def check(name: str, fn: Callable, tier: str | None = None, show: bool = True) -> Verdict:
    """Self-check: run exercise ``name``'s public cases on a learner's ``fn`` and print a verdict.

    Never raises on a wrong or unfinished answer: an unimplemented exercise (one that raises
    ``NotImplementedError``) reports "not implemented yet" and the notebook goes on.
    """
    exercise = get(name)
    try:
        verdict = check_cases(exercise, fn, exercise.cases(public_only=True), tier=tier)
    except Exception as err:  # a bug in the checker must not stop a learner's notebook  # noqa: BLE001
        verdict = Verdict(name, tier, [], status="error", note=f"{type(err).__name__}: {err}")
    if show:
        print(verdict.report())
    return verdict


def grading_cases(exercise: Exercise, seed: int) -> list[Case]:
    """Every case a grade is given on: the public and hidden named cases and
    ``n_hidden_random`` hidden random cases drawn with ``seed`` (secret, one per grading run;
    the public cases do not depend on it)."""
    return exercise.cases(public_only=False, seed=seed)


def grading_mode() -> bool:
    """True under nbgrader autograde/validate (it sets ``NBGRADER_EXECUTION``)."""
    return bool(os.environ.get(GRADING_ENV))


def _show(verdict: Verdict) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(verdict._repr_html_()))
            return
    except Exception:  # no IPython: plain text  # noqa: BLE001, S110
        pass
    print(verdict.report())


def grade(name: str, fn: Callable, tier: str | None = None) -> None:
    """A notebook's graded test cell: ``grade("iou", iou_numpy, tier="numpy")``.

    The public self-check (prints "4/4 public checks passed; more checks run at grading"; for
    a stretch tier, that it is a stretch goal and where it counts).
    In a learner's kernel it never raises; under ``nbgrader validate`` (``NBGRADER_EXECUTION``
    set) it raises ``AssertionError`` with the verdict unless every public case passes. The
    hidden cases run only in the sandboxed grader.
    """
    verdict = check(name, fn, tier=tier, show=False)
    _show(verdict)
    if tier is not None and get(name).is_stretch(tier):
        from ..tracks import stretch_note

        print(stretch_note(name, tier))
    if grading_mode() and not verdict.passed:
        raise AssertionError(verdict.report())
