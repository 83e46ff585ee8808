"""The course's tracks: which exercises a workshop of one day, two days, or the full self-paced
course counts, and whether its stretch tiers count.

A :class:`Track` is a list of blocks (a morning, an afternoon, a chapter), each naming exercises
or whole chapters. A tier counts toward a track's points when its exercise is in the track and
it is core, or the track counts stretch tiers too (the registry says which tiers are stretch
goals and how many minutes each takes: ``Exercise.minutes``, ``Exercise.stretch``). What a
learner does outside their track is graded and reported, but it neither adds to nor costs their
total.

Importing this module loads no answers: the minutes come from the registry, imported on first
use (by the listing, the grader and the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

TIERS = ("loops", "numpy", "tf")
DEFAULT = "full"


@dataclass(frozen=True)
class Block:
    """One part of a track's plan: a label ("day 1, morning") and what it covers, exercises by
    registry name or whole chapters by notebook stem."""

    label: str
    exercises: tuple[str, ...] = ()
    chapters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Track:
    """A path through the course. ``budget_minutes``: the learner time the exercises it counts
    must fit in (tests/test_tracks.py adds up the registry's minutes); ``stretch_counts``: its
    stretch tiers count toward the points (else they are optional)."""

    name: str
    title: str
    budget_minutes: int
    stretch_counts: bool
    blocks: tuple[Block, ...]

    def exercise_names(self) -> list[str]:
        """The registry names of its exercises, in the order of its blocks."""
        from .exercises import all_exercises

        names: list[str] = []
        for block in self.blocks:
            names += [e.name for e in all_exercises() if e.chapter in block.chapters]
            names += block.exercises
        return list(dict.fromkeys(names))

    def chapters(self) -> list[str]:
        """The chapters it visits, whole or in part, in course order."""
        from .exercises import get as exercise

        found = [c for b in self.blocks for c in b.chapters]
        found += [exercise(n).chapter for n in self.exercise_names()]
        return sorted(set(found))

    def block_of(self, exercise: str) -> Block | None:
        for block in self.blocks:
            if exercise in block.exercises or _chapter_of(exercise) in block.chapters:
                return block
        return None

    def includes(self, exercise: str) -> bool:
        return self.block_of(exercise) is not None

    def counts(self, exercise: str, tier: str) -> bool:
        """True when ``exercise``'s ``tier`` counts toward this track's points."""
        return self.includes(exercise) and (self.stretch_counts or not _is_stretch(exercise, tier))

    def optional_reason(self, exercise: str, tier: str) -> str:
        """Why a tier does not count here ("stretch goal", "not in the one-day track"), or ""."""
        if not self.includes(exercise):
            return f"not in the {self.name} track"
        if not self.counts(exercise, tier):
            return "stretch goal"
        return ""


def _chapter_of(exercise: str) -> str:
    from .exercises import get

    try:
        return get(exercise).chapter
    except KeyError:
        return ""


def _is_stretch(exercise: str, tier: str) -> bool:
    from .exercises import get

    try:
        return get(exercise).is_stretch(tier)
    except KeyError:
        return False


ONE_DAY = Track(
    "one-day", "One day: the detection core", budget_minutes=6 * 60, stretch_counts=False,
    blocks=(Block("morning", exercises=("iou", "nms", "grid_anchors", "decode")),
            Block("afternoon", exercises=("roi_align", "average_precision", "match_detections"))))

TWO_DAY = Track(
    "two-day", "Two days: a two-stage detector, from IoU to mAP", budget_minutes=12 * 60,
    stretch_counts=False,
    blocks=(Block("day 1, morning", chapters=("03_iou_nms",)),
            Block("day 1, afternoon", chapters=("04_anchors",),
                  exercises=("label_anchors", "subsample_labels", "rpn_targets")),
            Block("day 2, morning", exercises=("rpn_proposals", "rpn_loss", "roi_pool", "roi_align")),
            Block("day 2, afternoon",
                  exercises=("average_precision", "match_detections", "detection_map"))))

FULL = Track(
    "full", "The full course, self-paced", budget_minutes=29 * 60 + 25, stretch_counts=True,
    blocks=tuple(Block(f"chapter {stem[:2].lstrip('0')}", chapters=(stem,)) for stem in (
        "01_cnn_basics", "02_transfer_learning", "03_iou_nms", "04_anchors", "05_rpn",
        "06_roi_pooling", "07_transposed_convolution", "08_unet", "09_map",
        "10_single_shot", "11_detector_as_a_product")))

# The learner time of a chapter outside its exercises: reading the text, running the
# demonstrations and the training cells, looking at the figures.
READING_MINUTES = {
    "01_cnn_basics": 50, "02_transfer_learning": 40, "03_iou_nms": 25, "04_anchors": 20,
    "05_rpn": 35, "06_roi_pooling": 40, "07_transposed_convolution": 35, "08_unet": 35,
    "09_map": 35, "10_single_shot": 30, "11_detector_as_a_product": 45,
}

TRACKS = {t.name: t for t in (ONE_DAY, TWO_DAY, FULL)}


def get(name: str | None) -> Track:
    """The track called ``name`` (None: the full course)."""
    try:
        return TRACKS[name or DEFAULT]
    except KeyError:
        raise KeyError(f"no track {name!r}; tracks: {', '.join(TRACKS)}") from None


# -- time ------------------------------------------------------------------------------------
def minutes(track: Track) -> dict[str, tuple[int, int, int]]:
    """Per chapter of ``track``: (core, stretch, reading) minutes: its exercises' tiers from the
    registry's estimates, and the chapter's reading and running (``READING_MINUTES``)."""
    from .exercises import get as exercise

    out = {chapter: [0, 0, READING_MINUTES.get(chapter, 0)] for chapter in track.chapters()}
    for name in track.exercise_names():
        ex = exercise(name)
        for tier, m in ex.minutes.items():
            out[ex.chapter][1 if ex.is_stretch(tier) else 0] += m
    return {chapter: (core, stretch, reading) for chapter, (core, stretch, reading) in out.items()}


def counted_minutes(track: Track) -> int:
    """The learner time of every tier ``track`` counts: its core tiers, and its stretch tiers
    when they count."""
    per_chapter = minutes(track).values()
    return sum(c + (s if track.stretch_counts else 0) for c, s, _ in per_chapter)


def hours(m: int) -> str:
    """``330`` -> ``"5 h 30"``."""
    return f"{m // 60} h {m % 60:02d}" if m % 60 else f"{m // 60} h"


def tier_note(exercise: str, tier: str) -> str:
    """The line a notebook shows above a tier's solution cell: its time, core or stretch, and
    the tracks it counts in (generated here; tests/test_notebooks.py checks each notebook)."""
    from .exercises import get as get_exercise

    ex = get_exercise(exercise)
    kind = "**stretch goal**" if ex.is_stretch(tier) else "**core**"
    counted = [t.name for t in TRACKS.values() if t.counts(exercise, tier)]
    where = (", ".join(counted[:-1]) + " and " + counted[-1]) if len(counted) > 1 else counted[0]
    plural = "tracks" if len(counted) > 1 else "track"
    extra = "; optional in a workshop" if ex.is_stretch(tier) else ""
    return (f"⏱ `{exercise}_{tier}`: about {ex.minutes[tier]} minutes, {kind} "
            f"(counts in the {where} {plural}{extra})")


def stretch_note(exercise: str, tier: str) -> str:
    """What a stretch tier's self-check adds: where it counts and where it is optional."""
    counted = [t.name for t in TRACKS.values() if t.counts(exercise, tier)]
    optional = [t.name for t in TRACKS.values() if t.includes(exercise) and t.name not in counted]
    text = f"{exercise} [{tier}] is a stretch goal"
    if optional:
        text += f": optional in the {' and '.join(optional)} track{'s' if len(optional) > 1 else ''}"
    return text + f", counted in the {' and '.join(counted)} track{'s' if len(counted) > 1 else ''}."


# -- the listing -------------------------------------------------------------------------------
def plan(track: Track) -> str:
    """The track as Markdown: its blocks with their exercises and minutes, then the time per
    chapter (what ``python -m workshop exercises --track NAME`` prints; README.md quotes it)."""
    from .exercises import get as exercise

    stretch = "count" if track.stretch_counts else "are optional"
    per_chapter = minutes(track)
    reading = sum(r for _, _, r in per_chapter.values())
    lines = [f"**{track.title}** (`--track {track.name}`): {hours(counted_minutes(track))} of "
             f"exercises that count (budget {hours(track.budget_minutes)}), plus "
             f"{hours(reading)} of reading and running its chapters; stretch tiers {stretch}.", "", "| block | exercises (tiers that count) | minutes |",
             "|---|---|---:|"]
    for block in track.blocks:
        names = [n for n in track.exercise_names() if track.block_of(n) is block]
        cells, total = [], 0
        for n in names:
            ex = exercise(n)
            tiers = [t for t in TIERS if t in ex.minutes and track.counts(n, t)]
            total += sum(ex.minutes[t] for t in tiers)
            cells.append(f"`{n}` ({', '.join(tiers)})")
        lines.append(f"| {block.label} | {', '.join(cells) or 'reading only'} | {total} |")
    lines += ["", "| chapter | core (min) | stretch (min) | reading and running (min) |",
              "|---|---:|---:|---:|"]
    for chapter, (core, stretch_m, reading_m) in per_chapter.items():
        lines.append(f"| {chapter} | {core} | {stretch_m} | {reading_m} |")
    totals = [hours(sum(row[i] for row in per_chapter.values())) for i in range(3)]
    lines.append(f"| **total** | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** |")
    return "\n".join(lines)
