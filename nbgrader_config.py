"""nbgrader configuration for the course (read by every ``nbgrader`` command run in this folder,
and by ``python -m workshop release``).

Layout:
  solutions/NN_name.ipynb            instructor notebooks with ### BEGIN/END SOLUTION (the truth)
  notebooks/NN_name.ipynb            learner notebooks, written by `python -m workshop release`
  nbgrader/                          nbgrader's course root (CourseDirectory.root):
    source/NN_name/NN_name.ipynb       staged from solutions/ by `python -m workshop release`
                                       (nbgrader wants one folder per assignment; solutions/ may
                                       also be nested: solutions/<assignment>/*.ipynb)
    release/ submitted/<student>/<assignment>/ autograded/ feedback/   nbgrader's usual steps
    gradebook.db                       unless WORKSHOP_NBGRADER_DB_URL is set (for a shared
                                       server: postgresql://user@host/course)
    grades.csv                         `nbgrader export`
    grading-runs.jsonl                 each autograded notebook's hidden-case seed (owner only)
Run the nbgrader commands from the repository root, e.g.
  nbgrader generate_assignment 03_iou_nms && nbgrader autograde 03_iou_nms && nbgrader export
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (provided by nbgrader/traitlets when this file is loaded)

REPO = Path(__file__).resolve().parent
ROOT = REPO / "nbgrader"

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = os.environ.get("WORKSHOP_COURSE_ID", "cv-workshop")
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.db_url = os.environ.get(
    "WORKSHOP_NBGRADER_DB_URL", "sqlite:///" + str(ROOT / "gradebook.db"))
# data files an assignment folder may carry (kept small: the data sets are generated)
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.npz"]
c.CourseDirectory.max_file_size = 20_000  # kB

# executing notebooks (autograde / validate): generous for a CPU laptop, finite for a loop
c.Execute.timeout = int(os.environ.get("WORKSHOP_NBGRADER_TIMEOUT", "300"))
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120

# autograde: no learner code runs in a kernel; each graded test cell gets the verdict of the
# sandboxed grader (`workshop grade`'s), see workshop/grading/autograde.py
from workshop.grading.autograde import autograde_preprocessors, generate_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()

# the course's track (workshop/tracks.py: one-day, two-day, full), chosen once, before
# `nbgrader generate_assignment`: what it does not count (stretch tiers, exercises outside it)
# is released as graded cells worth 0 points, so an assignment's maximum is the track's
c.Workshop.track = os.environ.get("WORKSHOP_TRACK", "full")
c.GenerateAssignment.preprocessors = generate_preprocessors()
# `nbgrader export` writes the grades into the course root, not the current folder
c.CsvExportPlugin.to = str(ROOT / "grades.csv")

# learners cannot lose graded cells: deleted test/solution cells come back at autograde
c.OverwriteCells.add_missing_cells = True

# keep gradebooks and feedback readable when a learner prints a lot
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
c.ClearOutput.enabled = True

# the learner stub of a solution body (nbgrader's default, stated here on purpose)
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearSolutions.enforce_metadata = True

# keep the course's kernel (the venv's python3)
c.GenerateAssignment.create_assignment = True
c.Autograde.create_student = True
