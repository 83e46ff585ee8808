"""The registry drives these tests: every tier of every exercise on every case, pinned cases,
the TF tier compiled, and every declared mistake diagnosed from its wrong implementation."""

import numpy as np
import pytest

from workshop.exercises import all_exercises
from workshop.grading.check import check_cases, judge, run_case

EXERCISES = all_exercises()
TIER_PARAMS = [pytest.param(ex, tier, id=f"{ex.name}-{tier}")
               for ex in EXERCISES for tier in ex.tiers]
KERNEL_PARAMS = [pytest.param(ex, tier, id=f"{ex.name}-kernel-{tier}")
                 for ex in EXERCISES for tier in ex.kernels]
MISTAKE_PARAMS = [pytest.param(ex, m, id=f"{ex.name}-{m.name}")
                  for ex in EXERCISES for m in ex.mistakes]
N_RANDOM = 60          # daily; the slow twin runs thousands
N_RANDOM_SLOW = 2000


def _assert_tier_passes(exercise, tier, cases, fn=None):
    fn = fn or exercise.tier(tier)
    verdict = check_cases(exercise, fn, cases, tier=tier, strict=True)
    assert verdict.passed, verdict.report(max_failures=5)


@pytest.mark.parametrize("exercise, tier", TIER_PARAMS)
def test_tier_matches_reference(exercise, tier):
    _assert_tier_passes(exercise, tier, exercise.cases(public_only=False, seed=1, n_random=N_RANDOM))


@pytest.mark.slow
@pytest.mark.parametrize("exercise, tier", TIER_PARAMS)
def test_tier_matches_reference_many(exercise, tier):
    n = N_RANDOM_SLOW if tier != "loops" else N_RANDOM_SLOW // 10
    _assert_tier_passes(exercise, tier, exercise.cases(public_only=False, seed=2, n_random=n))


@pytest.mark.parametrize("exercise, tier", KERNEL_PARAMS)
def test_kernel_matches_reference(exercise, tier):
    """A tuned kernel returns what the textbook tier returns, on every kind of case."""
    _assert_tier_passes(exercise, tier, exercise.cases(public_only=False, seed=1, n_random=N_RANDOM),
                        exercise.kernel(tier))


@pytest.mark.slow
@pytest.mark.parametrize("exercise, tier", KERNEL_PARAMS)
def test_kernel_matches_reference_many(exercise, tier):
    _assert_tier_passes(exercise, tier, exercise.cases(public_only=False, seed=2,
                                                       n_random=N_RANDOM_SLOW), exercise.kernel(tier))


@pytest.mark.parametrize("exercise, tier", [p for p in KERNEL_PARAMS if p.values[1] == "tf"])
def test_tf_kernel_compiles(exercise, tier):
    _assert_compiles(exercise, exercise.kernel("tf"))


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_pinned_cases_pin_something(exercise):
    cases = exercise.edge_cases()
    assert any(c.expected is not None for c in cases), f"{exercise.name} pins no expected value"
    assert any(c.public for c in cases), f"{exercise.name} shows learners no edge case"
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES if "tf" in e.tiers])
def test_tf_tier_compiles(exercise):
    _assert_compiles(exercise, exercise.tier("tf"))


def _assert_compiles(exercise, implementation):
    import tensorflow as tf

    fn = tf.function(implementation, jit_compile=exercise.tf_jit, reduce_retracing=True)
    for case in exercise.cases(public_only=False, seed=3, n_random=5):
        out = run_case(exercise, case, fn, tier="tf")
        flat = out if isinstance(out, (tuple, list)) else (out,)
        assert all(isinstance(o, tf.Tensor) for o in flat), "the TF tier must return tensors"
        result = judge(exercise, case, out, strict=True)
        assert result.passed, f"{case.name}: {result.problem}"


def _named_alone(verdict, mistake) -> bool:
    """The verdict names this mistake, and only it, with the case it comes from."""
    return any(d.startswith(mistake.message + " (") and "one of these" not in d
               for d in verdict.diagnoses)


@pytest.mark.parametrize("exercise, mistake", MISTAKE_PARAMS)
def test_mistake_is_diagnosed(exercise, mistake):
    """A deliberately wrong implementation fails and gets its own diagnosis."""
    cases = exercise.cases(public_only=False, seed=4, n_random=N_RANDOM)
    verdict = check_cases(exercise, mistake.wrong, cases)
    assert not verdict.passed, f"{mistake.name}: the wrong implementation passes every case"
    assert _named_alone(verdict, mistake), (
        f"{mistake.name} not diagnosed alone; got {verdict.diagnoses}\n{verdict.report()}")


@pytest.mark.parametrize("exercise, mistake", MISTAKE_PARAMS)
def test_public_cases_reveal_mistake(exercise, mistake):
    """Self-checks must show a learner every declared mistake, not only the grader."""
    verdict = check_cases(exercise, mistake.wrong, exercise.cases(public_only=True))
    assert _named_alone(verdict, mistake) or mistake.detect is not None and any(
        d.startswith(mistake.message) for d in verdict.diagnoses), verdict.report()


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_reference_not_misdiagnosed(exercise):
    """No mistake claims the reference's own output."""
    for case in exercise.cases(public_only=False, seed=5, n_random=10):
        expected = exercise.expected(case)
        for m in exercise.mistakes:
            if m.detect is not None:
                assert not m.detect(case, expected, expected), f"{m.name} fires on {case.name}"


def test_registry_is_not_empty():
    assert EXERCISES
    assert np.all([ex.tiers for ex in EXERCISES])


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in EXERCISES])
def test_every_implementation_path_resolves_to_a_function(exercise):
    """Tiers, baselines (and kernels) are "module:function" strings, which an editor cannot
    follow: each must name a function that exists, under a known tier name."""
    from workshop.exercises.spec import TIERS, resolve

    assert set(exercise.tiers) <= set(TIERS) and exercise.reference_tier in exercise.tiers
    bad = []
    for kind in ("tiers", "baselines", "kernels"):
        for key, path in getattr(exercise, kind, {}).items():
            module, sep, attr = path.partition(":")
            try:
                ok = bool(sep and module and attr) and callable(resolve(path))
            except (ImportError, AttributeError) as err:
                ok, path = False, f"{path} ({type(err).__name__}: {err})"
            if not ok:
                bad.append(f"{kind}[{key!r}] = {path}")
    assert not bad, f"{exercise.name}: not a 'module:function' that exists: {bad}"
