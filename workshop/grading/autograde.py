"""nbgrader's ``autograde`` with the sandboxed grader's verdicts instead of the learner's kernel.

nbgrader normally executes a submission in a Jupyter kernel and scores each graded test cell by
its output: an error is 0 points, anything else full points. The learner's own code runs in that
kernel before the test cells, so it can patch the checker (a test cell then passes a wrong
answer), and whatever TensorFlow logs to stderr costs points. The course's
``nbgrader_config.py`` therefore replaces nbgrader's ``Execute`` step with
:class:`SandboxedVerdicts`: nothing of the submission runs in a kernel; every graded test cell
that follows the course's convention gets, as its output, the verdict of
:func:`workshop.grading.grader.grade_notebook` (the same sandbox, cases and comparison as
``workshop grade``), and an error output when it failed, so nbgrader's gradebook, formgrader,
``generate_feedback`` and ``export`` carry exactly those verdicts.

The course's track (:mod:`workshop.tracks`) is chosen once, in ``nbgrader_config.py``
(``c.Workshop.track``): :class:`TrackPoints`, the first step of ``generate_assignment``, makes
the test cells the track does not count (stretch tiers, exercises outside it) graded cells
worth 0 points. nbgrader keeps each cell's maximum in its gradebook from then on (and
``OverwriteCells`` puts it back at autograde), so the assignment's maximum is the track's and
its totals are those of ``workshop grade --track``.

Hidden cases use a secret seed per ``nbgrader autograde`` run (or ``WORKSHOP_GRADING_SEED`` to
reproduce one), recorded with the student and notebook in ``<course root>/grading-runs.jsonl``
(readable by its owner only).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from . import notebook as nbk

_STATE: dict = {}
_LOCK = threading.Lock()


def _run_state(course_root: str):
    """The sandbox, expected outputs and seed shared by every notebook of one nbgrader run."""
    from .grader import Expected, new_seed
    from .sandbox import Sandbox

    with _LOCK:
        if not _STATE:
            seed = os.environ.get("WORKSHOP_GRADING_SEED")
            seed = int(seed) if seed else new_seed()
            hide = [Path(course_root)] if course_root else []
            _STATE.update(seed=seed, expected=Expected(seed),
                          sandbox=Sandbox.detect(hide=hide))
        return _STATE


def _record_run(course_root: str, entry: dict) -> None:
    if not course_root:
        return
    path = Path(course_root) / "grading-runs.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(entry) + "\n")


def configured_track(config):
    """The track ``nbgrader_config.py`` chose (``c.Workshop.track``; default the full course)."""
    from .. import tracks

    return tracks.get(config.Workshop.get("track") or None)


class TrackPoints(NbGraderPreprocessor):
    """Before nbgrader saves an assignment's cells: a test cell the configured track does not
    count is worth 0 points (it stays a graded cell, so its verdict reaches the feedback)."""

    def preprocess(self, nb, resources):
        track = configured_track(self.config)
        for cell in nbk.code_cells(nb):
            if not nbk.is_test_cell(cell):
                continue
            parsed = nbk.split_id(str(nbk.nbgrader_meta(cell).get("grade_id", ""))[
                len(nbk.TEST_PREFIX):])
            if parsed and track.optional_reason(*parsed):
                cell.metadata["nbgrader"]["points"] = 0
        return nb, resources


def generate_preprocessors() -> list:
    """nbgrader's own ``generate_assignment`` steps, :class:`TrackPoints` first."""
    from nbgrader.converters import GenerateAssignment

    return [TrackPoints, *GenerateAssignment.class_traits()["preprocessors"].default()]


def _outputs(record) -> list:
    text = (record.verdict or {}).get("report") or ""
    if record.message:
        text = (text + "\n" if text else "") + record.message
    text = text or record.status
    if record.optional:
        from .feedback import status_text

        text = f"{status_text(record)} (0 points in this track)\n{text}"
    outs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    if record.status != "passed":
        outs.append(nbformat.v4.new_output(
            "error", ename="AssertionError", evalue=f"{record.exercise} ({record.tier}): "
            f"{record.status.replace('_', ' ')}", traceback=[]))
    return outs


class SandboxedVerdicts(NbGraderPreprocessor):
    """Fill every graded test cell with the sandboxed grader's verdict (replaces Execute)."""

    def preprocess(self, nb, resources):
        from .runner import Limits
        from .zygote import session_for

        course_root = str(self.config.CourseDirectory.get("root") or "")
        info = resources.get("nbgrader", {})
        student = str(info.get("student", "student"))
        state = _run_state(course_root)
        tests, _ = nbk.graded_tests(nb)
        with tempfile.TemporaryDirectory(prefix="workshop-autograde-") as tmp:
            path = Path(tmp) / (str(info.get("notebook", "submission")) + ".ipynb")
            path.write_text(nbformat.writes(nb))
            session = session_for(state["sandbox"],
                                  tensorflow=any(t.tier == "tf" for t in tests))
            try:
                from .grader import grade_notebook, tests_at_once

                result = grade_notebook(path, tests, student, state["expected"], Limits(),
                                        sandbox=state["sandbox"], session=session,
                                        parallel=tests_at_once(1),
                                        track=configured_track(self.config))
            finally:
                if session is not None:
                    session.close()
        _record_run(course_root, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "student": student, "assignment": info.get("assignment"),
                                  "notebook": info.get("notebook"), "seed": state["seed"],
                                  "sandbox": state["sandbox"].mode, "track": result.track,
                                  "points": result.total, "max": result.max_total})
        records = {t.grade_id: t for t in result.tests}
        for cell in nbk.code_cells(nb):
            if not nbk.is_test_cell(cell):
                continue
            gid = nbk.nbgrader_meta(cell).get("grade_id")
            record = records.get(gid)
            if record is None:
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="NotGraded", traceback=[],
                    evalue="this test cell follows no <exercise>_<tier> convention")]
            else:
                cell.outputs = _outputs(record)
            cell.execution_count = None
        if result.error:
            self.log.error("could not grade %s: %s", info.get("notebook"), result.error)
        return nb, resources


def autograde_preprocessors() -> list:
    """nbgrader's own autograde steps, with :class:`SandboxedVerdicts` in place of ``Execute``."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    return [SandboxedVerdicts if step is Execute else step for step in steps]
