"""Diagnoses are right or silent, on learner code written independently of the registry's wrong
implementations (tests/plausible_mistakes/): every plausible mistake is caught, named when it is
a declared mistake, and never given another mistake's message."""

import pytest
from plausible_mistakes import ALL

from workshop.exercises import get
from workshop.grading.check import check_cases

N_RANDOM = 12


def _named(exercise, verdict) -> set[str]:
    """The declared mistakes a verdict names (alone or among "one of these")."""
    return {m.name for m in exercise.mistakes for d in verdict.diagnoses if m.message in d}


def _verdict(p, public_only=False):
    exercise = get(p.exercise)
    cases = exercise.cases(public_only=True) if public_only else exercise.cases(
        public_only=False, seed=4, n_random=N_RANDOM)
    return exercise, check_cases(exercise, p.fn, cases)


@pytest.mark.parametrize("p", ALL, ids=[f"{p.exercise}-{p.about}" for p in ALL])
def test_plausible_mistake_is_caught_and_diagnosed_right_or_not_at_all(p):
    exercise, verdict = _verdict(p)
    assert not verdict.passed, f"{p.about}: passes every case"
    named = _named(exercise, verdict)
    if p.label is None:
        assert not named, f"{p.about}: misleading diagnosis {named}\n{verdict.report()}"
    else:
        assert named == {p.label}, f"{p.about}: expected {p.label!r}, got {named}\n{verdict.report()}"


@pytest.mark.parametrize("p", [p for p in ALL if p.label], ids=lambda p: f"{p.exercise}-{p.about}")
def test_public_cases_name_the_labelled_mistake(p):
    """The learner sees the diagnosis in the self-check, before grading."""
    exercise, verdict = _verdict(p, public_only=True)
    assert not verdict.passed
    named = _named(exercise, verdict)
    assert named <= {p.label}, f"{p.about}: misleading diagnosis {named}\n{verdict.report()}"


def test_counts():
    """The set's summary: at least 80 % of caught mistakes get the right diagnosis, none a
    misleading one (the counts are printed with -s)."""
    caught = right = misleading = 0
    for p in ALL:
        exercise, verdict = _verdict(p)
        if verdict.passed:
            continue
        caught += 1
        named = _named(exercise, verdict)
        if p.label is None:
            right += not named
            misleading += bool(named)
        else:
            right += named == {p.label}
            misleading += bool(named - {p.label})
    print(f"plausible mistakes: {len(ALL)}, caught {caught}, right {right}, "
          f"misleading {misleading}")
    assert caught == len(ALL) and misleading == 0 and right >= 0.8 * caught
