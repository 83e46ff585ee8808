"""A learner's own detector stages, taken from the solution cells of their notebooks.

The detector's geometric steps (the fields of :class:`workshop.models.detector.Stages`:
``reference_anchors``, ``grid_anchors``, ``rpn_proposals``, ``roi_align``, ``decode``,
``batched_nms``) are exercises of chapters 3 to 6; a learner writes them as ``<stage>_<tier>``
in solution cells (nbgrader ``grade_id`` = that name, see :mod:`workshop.grading.notebook`).
For each stage this module looks for the **numpy** tier, then the **loops** tier (both take and
return numpy arrays, as the detector's stages do; the TF tier takes tensors and is not used):

1. :func:`workshop.grading.notebook.program_for` gives the code the grader would run to obtain
   the function: the notebook's import statements (each alone, failures ignored), the cells
   defining names it uses, then its solution cell;
2. that code runs in a **fresh namespace** (one per function;
   :meth:`~workshop.grading.notebook.Program.run_here`), in this process and *without* the
   grader's sandbox: use it on notebooks you trust (your own);
3. the function is called once on the exercise's first public case (a tiny probe):
   ``NotImplementedError`` means "not written yet" and the reference runs; any other exception
   means it is broken, which is said, and the reference runs; otherwise it replaces the
   reference in the detector.

:func:`learner_stages` returns the replacements and, for every stage, whose function runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from workshop.course import NOT_IMPLEMENTED
from workshop.grading import notebook as nb_reader
from workshop.models.detector import Stages

TIER_ORDER = ("numpy", "loops")
STAGE_NAMES = tuple(f.name for f in dataclasses.fields(Stages))


class StagesError(ValueError):
    """A notebook that cannot be read; the message says which and why."""


@dataclass
class StageChoice:
    """Whose function runs for one stage: ``source`` is e.g. ``"batched_nms_numpy in
    03_iou_nms.ipynb"`` for the learner's, None for the reference; ``notes`` say why a learner's
    function found in a notebook is not used (not implemented yet, broken)."""

    stage: str
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def yours(self) -> bool:
        return self.source is not None

    def describe(self) -> str:
        if self.yours:
            return f"yours ({self.source})"
        return "the reference" + (f" ({'; '.join(self.notes)})" if self.notes else "")


@dataclass
class LearnerStages:
    """What :func:`learner_stages` found: ``replacements`` (stage -> the learner's function),
    for :meth:`TwoStageDetector.with_stages <workshop.models.detector.TwoStageDetector.with_stages>`,
    and one :class:`StageChoice` per stage, in the detector's order."""

    replacements: dict[str, Callable]
    choices: list[StageChoice]

    def summary(self) -> dict[str, str]:
        """stage -> ``"yours (batched_nms_numpy in nb.ipynb)"`` or ``"the reference ..."``."""
        return {c.stage: c.describe() for c in self.choices}

    def lines(self) -> list[str]:
        """One line per stage, for the console."""
        width = max(len(s) for s in STAGE_NAMES)
        return [f"  {c.stage:<{width}}  {c.describe()}" for c in self.choices]


def reference_only() -> LearnerStages:
    """Every stage the reference's (no notebook given)."""
    return LearnerStages({}, [StageChoice(s) for s in STAGE_NAMES])


@contextlib.contextmanager
def _quiet():
    """The learner's prints and what libraries their imports start write to file descriptor 2
    (TensorFlow's start-up lines) kept off the console."""
    from workshop.course import stderr_silenced

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            stderr_silenced():
        yield


def probe(stage: str, fn: Callable) -> str | None:
    """Call ``fn`` on the first public case of the exercise ``stage``: None when it returns,
    ``"not implemented yet"`` on ``NotImplementedError``, else ``"raised Error: message"``."""
    from workshop.exercises import get

    args, kwargs = get(stage).cases(public_only=True)[0].fresh_args()
    try:
        with _quiet():
            fn(*args, **kwargs)
    except NotImplementedError:
        return NOT_IMPLEMENTED
    except Exception as err:  # a learner's bug: say it, run the reference
        return f"raised {type(err).__name__}: {str(err)[:200]}"
    return None


def find_stage(nb: dict, notebook_name: str, stage: str) -> tuple[Callable | None, str | None, list[str]]:
    """The learner's working function for ``stage`` in one notebook (numpy tier first, then
    loops): ``(function, "name in notebook", notes)``, or ``(None, None, notes)`` when there is
    none that works (``notes`` say what was found and why it is not used)."""
    notes = []
    for tier in TIER_ORDER:
        name = nb_reader.solution_id(stage, tier)
        program = nb_reader.program_for(nb, name, name)
        if program is None:
            continue
        try:
            with _quiet():
                fn = program.run_here(notebook_name).get(name)
        except Exception as err:  # the learner's cell does not run
            notes.append(f"{name} in {notebook_name}: its cell raised {type(err).__name__}: {str(err)[:200]}")
            continue
        if not callable(fn):
            notes.append(f"{name} in {notebook_name}: the cell defines no function {name}")
            continue
        problem = probe(stage, fn)
        if problem is None:
            return fn, f"{name} in {notebook_name}", notes
        notes.append(f"{name} in {notebook_name}: {problem}")
    return None, None, notes


def learner_stages(notebooks: Sequence[str | Path]) -> LearnerStages:
    """The learner's stages from ``notebooks`` (a stage found in several: the first notebook
    that has a working one wins); the reference for every other stage.

    Raises :class:`StagesError` when a notebook cannot be read.
    """
    loaded = []
    for path in map(Path, notebooks):
        try:
            loaded.append((path.name, nb_reader.load(path)))
        except nb_reader.NotebookError as err:
            raise StagesError(f"--stages {path}: {err}") from None
    replacements: dict[str, Callable] = {}
    choices = []
    for stage in STAGE_NAMES:
        choice = StageChoice(stage)
        for name, nb in loaded:
            fn, source, notes = find_stage(nb, name, stage)
            choice.notes += notes
            if fn is not None:
                replacements[stage], choice.source = fn, source
                break
        choices.append(choice)
    return LearnerStages(replacements, choices)
