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


def _outputs(record) -> list:
    text = (record.verdict or {}).get("report") or ""
    if record.message:
        text = (text + "\n" if text else "") + record.message
    text = text or record.status
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
                                        parallel=tests_at_once(1))
            finally:
                if session is not None:
                    session.close()
        _record_run(course_root, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "student": student, "assignment": info.get("assignment"),
                                  "notebook": info.get("notebook"), "seed": state["seed"],
                                  "sandbox": state["sandbox"].mode,
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
