"""The tracks (workshop.tracks) and the registry's time estimates: every graded tier has an
estimate, every track fits its day, the full course holds every exercise, and the README
quotes the plans the package prints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workshop import tracks
from workshop.exercises import all_exercises, get
from workshop.grading import notebook as nbk

ROOT = Path(__file__).resolve().parents[1]
DAY = 6 * 60      # a workshop day's exercise time, in minutes


def _graded_tiers() -> dict[str, set[str]]:
    graded: dict[str, set[str]] = {}
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for t in nbk.graded_tests(json.loads(path.read_text()))[0]:
            graded.setdefault(t.exercise, set()).add(t.tier)
    return graded


@pytest.mark.parametrize("exercise", [pytest.param(e, id=e.name) for e in all_exercises()])
def test_every_graded_tier_has_an_estimate(exercise):
    """``minutes`` covers exactly the tiers the chapter's notebook grades; stretch tiers are
    among them."""
    assert set(exercise.minutes) == _graded_tiers().get(exercise.name, set())
    assert all(isinstance(m, int) and 5 <= m <= 90 for m in exercise.minutes.values()), exercise.minutes
    assert set(exercise.stretch) <= set(exercise.minutes), exercise.stretch


def test_the_hardest_tf_tiers_are_stretch_goals():
    for name in ("nms", "roi_align", "roi_pool", "rpn_targets", "rpn_proposals", "match_detections"):
        assert get(name).is_stretch("tf"), name
    assert not any(get(n).is_stretch(t) for n in ("iou", "decode") for t in get(n).minutes)


@pytest.mark.parametrize("track", list(tracks.TRACKS.values()), ids=list(tracks.TRACKS))
def test_every_track_fits_its_budget(track):
    counted = tracks.counted_minutes(track)
    assert 0 < counted <= track.budget_minutes, (track.name, counted, track.budget_minutes)


def test_the_budgets_are_the_workshop_days():
    assert tracks.get("one-day").budget_minutes == DAY
    assert tracks.get("two-day").budget_minutes == 2 * DAY
    assert tracks.counted_minutes(tracks.get("one-day")) >= DAY - 60, "a day, not half of one"


def test_the_full_course_holds_every_exercise_and_counts_every_tier():
    full = tracks.get("full")
    assert set(full.exercise_names()) == {e.name for e in all_exercises()}
    assert all(full.counts(e.name, t) for e in all_exercises() for t in e.minutes)
    assert tracks.get(None) is full


def test_the_full_course_is_a_week_of_self_paced_work():
    """An instructor put the nine chapters' geometry at 27 to 30 hours with reading and running;
    the losses, the second stage, the backward pass and the FCN written as exercises make the
    full course longer, but it stays a week's work (at most 36 hours), and every chapter has its
    reading time."""
    per_chapter = tracks.minutes(tracks.get("full")).values()
    total = sum(c + s + r for c, s, r in per_chapter)
    assert 27 * 60 <= total <= 36 * 60, tracks.hours(total)
    assert set(tracks.READING_MINUTES) == {p.stem for p in (ROOT / "solutions").glob("*.ipynb")}


def test_tracks_name_real_exercises_and_chapters_and_nest():
    chapters = {e.chapter for e in all_exercises()} | set(tracks.READING_MINUTES)
    for track in tracks.TRACKS.values():
        for block in track.blocks:
            for name in block.exercises:
                get(name)
            assert set(block.chapters) <= chapters, block
        names = track.exercise_names()
        assert len(names) == len(set(names)), f"{track.name}: an exercise in two blocks"
    one, two = (set(tracks.get(n).exercise_names()) for n in ("one-day", "two-day"))
    assert one < two, "a two-day learner keeps the one-day path"


def test_what_counts_and_why_not():
    one = tracks.get("one-day")
    assert one.counts("iou", "tf") and one.counts("nms", "numpy")
    assert not one.counts("nms", "tf") and one.optional_reason("nms", "tf") == "stretch goal"
    assert not one.counts("encode", "numpy")
    assert one.optional_reason("encode", "numpy") == "not in the one-day track"
    assert one.optional_reason("iou", "loops") == ""
    assert tracks.get("full").counts("nms", "tf")
    with pytest.raises(KeyError, match="one-day, two-day, full"):
        tracks.get("half-day")


def test_tier_note_says_time_kind_and_tracks():
    assert tracks.tier_note("nms", "tf") == (
        "⏱ `nms_tf`: about 45 minutes, **stretch goal** (counts in the full track; optional "
        "in a workshop)")
    assert tracks.tier_note("encode", "loops") == (
        "⏱ `encode_loops`: about 10 minutes, **core** (counts in the two-day and full tracks)")


def test_importing_the_tracks_loads_no_answers():
    code = ("import sys, workshop.tracks\nprint([m for m in sys.modules if m.startswith(("
            "'workshop.reference', 'workshop.kernels', 'workshop.exercises'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("name", list(tracks.TRACKS))
def test_the_readme_quotes_each_plan_as_the_package_prints_it(name):
    printed = subprocess.run([sys.executable, "-m", "workshop", "exercises", "--track", name],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert printed == tracks.plan(tracks.get(name))
    readme = (ROOT / "README.md").read_text()
    assert printed in readme, (f"README.md's plan of the {name} track is out of date: paste "
                               f"`python -m workshop exercises --track {name}`")
