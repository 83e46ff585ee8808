"""`python -m workshop grade` on crafted submissions (one per attack or failure), the sandbox
itself, the static checks, and (slow) the real nbgrader pipeline on a small assignment.

The assignment is tests/graded_submissions/builder.py's "ps1": iou (numpy, 2 points),
nms (numpy, 3 points; it calls the learner's own iou_numpy) and iou (loops, 1 point).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import require_sandbox
from graded_submissions import builder

from workshop.exercises import get
from workshop.grading import notebook as nbk
from workshop.grading.check import grading_cases
from workshop.grading.runner import PRINT_LIMIT, Limits, run_program
from workshop.grading.static import static_violations

pytestmark = pytest.mark.xdist_group("crafted")   # the crafted class is graded once
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SEED = 20240917  # the hidden cases' seed of these tests (a grading run draws its own)
TIMEOUT = 10  # seconds per test in the crafted run (the infinite loop costs this much)
# nbgrader runs `alembic` (the gradebook migrations) from PATH: the venv's bin must be on it
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _rows(path):
    with open(path, newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every crafted submission graded once, through the CLI, two at a time."""
    tmp = tmp_path_factory.mktemp("grade")
    sol = tmp / "solutions" / builder.ASSIGNMENT / builder.NOTEBOOK
    sol.parent.mkdir(parents=True)
    nbformat.write(builder.build(), str(sol))
    builder.write_all(tmp / "subs")
    out = tmp / "results"
    proc = subprocess.run(check=False, args=[PY, "-m", "workshop", "grade", str(tmp / "subs"), "--solutions",
                           str(tmp / "solutions"), "--out", str(out), "--jobs", "2",
                           "--timeout", str(TIMEOUT)], capture_output=True, text=True, env=ENV,
                          cwd=tmp, timeout=600)
    return proc, out, _rows(out / "grades.csv")


def _record(out, student, test):
    return json.loads((out / "records" / student / "ps1" / f"{test}.json").read_text())


def _feedback(out, student):
    return (out / "feedback" / student / "ps1.md").read_text()


# == the class run ===========================================================================
@pytest.mark.parametrize("name", list(builder.CRAFTED))
def test_crafted_submission_gets_exactly_its_points(graded, name):
    _, out, rows = graded
    row = rows[name]
    want = builder.expected_points(name)
    got = {t: float(row[t]) for t in want}
    assert got == want, "\n".join(f"{t}: {_record(out, name, t)['status']} "
                                  f"{_record(out, name, t)['message']}" for t in want)
    assert float(row["total"]) == sum(want.values())
    assert float(row["max"]) == builder.TOTAL, "points must come from the solution notebook"


def test_invalid_json_is_reported_and_exit_code_is_nonzero(graded):
    proc, out, rows = graded
    assert proc.returncode == 1, proc.stderr
    assert rows["invalid_json"]["status"] == "error"
    assert "not valid JSON" in rows["invalid_json"]["error"]
    assert "invalid_json" in proc.stderr and "Traceback" not in proc.stderr
    assert "could not be graded" in _feedback(out, "invalid_json")
    assert all(rows[n]["status"] == "graded" for n in builder.CRAFTED)


@pytest.mark.parametrize("name, test, status, words", [
    ("imports_reference", "test_iou_numpy", "violation", "workshop.reference.boxes"),
    ("imports_reference", "test_nms_numpy", "violation", "in cell 'iou_numpy'"),
    ("reference_by_computed_name", "test_iou_numpy", "violation", "computed name"),
    ("reference_via_registry", "test_iou_numpy", "violation", "workshop.exercises"),
    ("monkeypatches_checker", "test_nms_numpy", "violation", "patches chk.judge"),
    ("infinite_loop", "test_nms_numpy", "timeout", f"stopped after {TIMEOUT} s"),
    ("segfault", "test_nms_numpy", "crashed", "segmentation fault"),
    ("os_exit", "test_iou_loops", "crashed", "exited"),
    ("deleted_solution_metadata", "test_iou_loops", "missing", "grade_id 'iou_loops'"),
])
def test_why_no_points_is_said(graded, name, test, status, words):
    _, out, _ = graded
    rec = _record(out, name, test)
    assert rec["status"] == status and rec["points"] == 0
    assert words in rec["message"], rec["message"]
    assert words.split("'")[0] in _feedback(out, name)


@pytest.mark.parametrize("name, test, words", [
    ("custom_eq", "test_iou_numpy", "not a numeric array"),
    ("sys_exit", "test_iou_numpy", "raised SystemExit"),
    ("memory_blowup", "test_iou_numpy", "MemoryError"),
    ("partly_solved", "test_iou_loops", "'+1' pixel convention"),
    ("partly_solved", "test_nms_numpy", "not implemented yet"),
])
def test_failed_verdict_explains(graded, name, test, words):
    _, out, _ = graded
    rec = _record(out, name, test)
    assert rec["points"] == 0 and words in rec["verdict"]["report"], rec["verdict"]["report"]
    assert words in _feedback(out, name)


def test_huge_print_is_capped_and_graded(graded):
    _, out, _ = graded
    rec = _record(out, "huge_print", "test_iou_loops")
    assert rec["status"] == "passed"
    assert len(rec["stdout"]) < PRINT_LIMIT + 200


def test_one_json_record_per_test(graded):
    _, out, _ = graded
    for name in builder.CRAFTED:
        files = sorted(p.name for p in (out / "records" / name / "ps1").glob("[!_]*.json"))
        assert files == sorted(f"{t}.json" for t in builder.POINTS)
        for f in files:
            rec = json.loads((out / "records" / name / "ps1" / f).read_text())
            assert {"student", "grade_id", "points", "max_points", "status", "verdict"} <= set(rec)


def test_feedback_reveals_no_hidden_cases(graded):
    _, out, _ = graded
    seed = json.loads((out / "run.json").read_text())["seed"]
    hidden = []
    for ex in ("iou", "nms"):
        exercise = get(ex)
        for case in grading_cases(exercise, seed):
            if not case.public:
                hidden.append(case.describe())
    texts = [p.read_text() for p in (out / "feedback").rglob("*.*")]
    assert len(texts) == 2 * (len(builder.CRAFTED) + 1)
    for text in texts:
        for h in hidden:
            assert h not in text
        assert "BEGIN SOLUTION" not in text and "grade(" not in text  # no test or solution code
    sneaky = _feedback(out, "fails_hidden_only")
    assert "(hidden)" in sneaky and "public checks passed" not in sneaky
    assert "5000" not in sneaky  # the far-from-the-origin inputs, outputs
    partly = _feedback(out, "partly_solved")
    assert "Total: 2 / 6 points" in partly and re.search(r"\d+/\d+ checks passed", partly)
    html = (out / "feedback" / "partly_solved" / "ps1.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "2 / 6" in html


# == the sandbox, below the static checks ===================================================
def _program(src, function="f", imports=()):
    return nbk.Program(imports=list(imports), cells=[("f", src)], function=function)


def _iou_cases(n=3):
    return get("iou").cases(public_only=True)[:n]


def test_runtime_blocker_stops_reference_imports():
    src = ("import importlib\n"
           "m = importlib.import_module('workshop.' + 'reference.boxes')\n"
           "def f(a, b):\n    return m.iou_numpy(a, b)\n")
    run = run_program(_program(src), _iou_cases(), "numpy", limits=Limits(wall=30))
    assert run.reached_reference == ["workshop.reference"] or run.reached_reference[0].startswith(
        "workshop.reference"), run
    assert run.status == "no_function" and "out of reach" in run.message


def test_runtime_blocker_inside_the_function():
    src = ("def f(a, b):\n    from workshop.exercises import get\n"
           "    return get('iou').reference(a, b)\n")
    run = run_program(_program(src), _iou_cases(), "numpy", limits=Limits(wall=30))
    assert run.reached_reference and all(c.status == "error" for c in run.cases)


def test_removing_the_blocker_is_detected():
    src = ("import sys\nsys.meta_path[:] = [f for f in sys.meta_path if 'Blocker' not in "
           "type(f).__name__]\nimport numpy as np\n"
           "def f(a, b):\n    return np.zeros((len(a), len(b)))\n")
    run = run_program(_program(src), _iou_cases(), "numpy", limits=Limits(wall=30))
    assert run.tampered, run


def test_patching_the_checker_in_the_child_changes_nothing():
    """Even without the static check, a patched checker lives only in the child."""
    src = ("import sys, types\nfake = types.ModuleType('workshop.grading.check')\n"
           "fake.judge = lambda *a, **k: None\nsys.modules['workshop.grading.check'] = fake\n"
           "def f(a, b):\n    return [[0.5] * len(b) for _ in a]\n")
    from workshop.grading.grader import Expected, verdict_from_run

    exercise, cases, expected = Expected(SEED).get("iou")
    run = run_program(_program(src), cases, "numpy", limits=Limits(wall=30))
    verdict = verdict_from_run(exercise, cases, expected, run, "numpy")
    assert not verdict.passed and verdict.n_passed < len(cases)


def test_float32_lists_and_tensors_cross_as_plain_arrays():
    src = ("import numpy as np\n"
           "def f(a, b):\n    return np.zeros((len(a), len(b)), dtype=np.float32).tolist()\n")
    run = run_program(_program(src), _iou_cases(), "numpy", limits=Limits(wall=30))
    assert run.status == "ok"
    for c in run.cases:
        assert type(c.output) is np.ndarray and c.output.dtype.kind == "f"


def test_wall_clock_limit_kills_grandchildren_too():
    src = ("import subprocess, sys\n"
           "def f(a, b):\n"
           "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
           "    while True:\n        pass\n")
    run = run_program(_program(src), _iou_cases(1), "numpy", limits=Limits(wall=3))
    assert run.status == "timeout" and run.seconds < 15


# == static checks ===========================================================================
@pytest.mark.parametrize("key", list(builder.SOLUTIONS))
def test_static_check_accepts_honest_solutions(key):
    cell = nbk.solution_cell(*key, builder.SOLUTIONS[key], "(boxes1, boxes2)")
    assert static_violations(cell.source + "\ncheck('iou', iou_numpy)\n") == []
    other = nbk.solution_cell(*key, builder.DIFFERENT[key], "(boxes1, boxes2)")
    assert static_violations(other.source) == []
    assert static_violations(builder.HELPER_CELL) == []
    assert static_violations(builder.IMPORT_CELL) == []


@pytest.mark.parametrize("src, words", [
    ("from workshop.reference import boxes", "workshop.reference.boxes"),
    ("from workshop import reference", "workshop.reference"),
    ("import workshop\nx = workshop.reference", "workshop.reference"),
    ("__import__('os')", "__import__"),
    ("open('workshop/reference/boxes.py').read()", "names the reference"),
    ("import sys\nsys.modules['x'] = None", "import system"),
    ("import workshop.grading as g\nsetattr(g, 'check', None)", "setattr"),
    ("from workshop.grading import check\ncheck.__defaults__ = None", "patches"),
])
def test_static_check_finds(src, words):
    found = static_violations(src)
    assert any(words in f for f in found), found


def test_calling_a_reference_imported_in_another_cell_is_caught(tmp_path):
    nb = builder.build({("iou", "numpy"): "    return ref_iou(boxes1, boxes2)"})
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        "from workshop.reference.boxes import iou_numpy as ref_iou"))
    path = tmp_path / "alice" / builder.NOTEBOOK
    path.parent.mkdir()
    nbformat.write(nb, str(path))
    from workshop.grading.grader import Expected, grade_notebook

    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests[:1], "alice", Expected(SEED), Limits(wall=30))
    assert res.tests[0].status == "violation"
    assert "ref_iou" in res.tests[0].message


def test_mangled_notebook_is_graded_where_it_can_be(tmp_path):
    """A stray non-cell, garbage nbgrader metadata and a syntax error in one solution cell."""
    from workshop.grading.grader import Expected, grade_notebook

    nb = json.loads(nbformat.writes(builder.build({("iou", "loops"): "    return [[0.0]] *"})))
    nb["cells"].insert(0, 42)
    nb["cells"].append({"cell_type": "code", "metadata": {"nbgrader": "garbage"},
                        "source": ["x = 1"], "outputs": [], "execution_count": None})
    path = tmp_path / builder.NOTEBOOK
    path.write_text(json.dumps(nb))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests, "m", Expected(SEED), Limits(wall=30))
    assert [t.points for t in res.tests] == [2.0, 3.0, 0.0]
    assert "SyntaxError" in res.tests[2].verdict["report"]


def test_submission_time_budget(tmp_path):
    from workshop.grading.grader import Expected, grade_notebook

    path = tmp_path / builder.NOTEBOOK
    nbformat.write(builder.build(), str(path))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests, "slowpoke", Expected(SEED), Limits(wall=30), budget=0.5)
    assert [t.status for t in res.tests] == ["skipped"] * 3 and res.total == 0
    assert "time budget" in res.tests[0].message


def test_shuffled_notebook_and_program_selection():
    """Cells found by grade_id wherever they are; ungraded cells contribute definitions only."""
    nb = json.loads(nbformat.writes(builder.shuffled(seed=3)))
    prog = nbk.program_for(nb, "nms_numpy", "nms_numpy")
    labels = [label for label, _ in prog.cells]
    assert labels == ["iou_numpy", "nms_numpy"]
    assert "import numpy as np" in prog.imports
    assert nbk.program_for(nb, "no_such_numpy", "no_such_numpy") is None


# == the real nbgrader pipeline ==============================================================
def _nbgrader(course, *args):
    proc = subprocess.run(check=False, args=[PY, "-m", "nbgrader", *args], cwd=course, capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _submission_from_release(released: Path, bodies: dict) -> nbformat.NotebookNode:
    """A learner's notebook: the released one with some solution cells filled in."""
    nb = nbformat.read(str(released), as_version=4)
    for cell in nb.cells:
        gid = nbk.nbgrader_meta(cell).get("grade_id")
        key = nbk.split_id(gid) if gid and nbk.is_solution_cell(cell) else None
        if key in bodies:
            sig = next(s for e, t, _, s in builder.TESTS if (e, t) == key)
            cell.source = f"def {gid}{sig}:\n{bodies[key]}"
    return nb


IN_KERNEL_PATCH = """\
import importlib
chk = importlib.import_module("workshop.grading.check")
chk.check_cases = lambda exercise, fn, cases, tier=None, strict=False: chk.Verdict(
    exercise.name, tier, [chk.CaseResult(c.name, True) for c in cases])
import sys
print("failed call to cuInit: CUDA_ERROR_NO_DEVICE", file=sys.stderr)"""


@pytest.mark.slow
def test_nbgrader_pipeline(tmp_path):
    """generate_assignment -> submitted/<student>/ps1 -> autograde -> generate_feedback ->
    export; the exported CSV must hold exactly each submission's points, the same as
    `workshop grade` gives; a checker patched in the learner's kernel earns nothing."""
    require_sandbox()
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    nbformat.write(builder.build(), str(course / "solutions" / builder.NOTEBOOK))
    # the course's own release: learner notebooks/ and nbgrader's source/ps1/ps1.ipynb
    proc = subprocess.run(check=False, args=[PY, "-m", "workshop", "release", "--root", str(course),
                          "--solutions", str(course / "solutions"), "--out",
                          str(course / "notebooks")], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    mine = (course / "notebooks" / builder.NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in mine and "raise NotImplementedError()" in mine
    nbg = course / "nbgrader"
    assert (nbg / "source" / "ps1" / builder.NOTEBOOK).exists()
    _nbgrader(course, "generate_assignment", "ps1")
    released = nbg / "release" / "ps1" / builder.NOTEBOOK
    text = released.read_text()
    assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text
    wrong_loops = builder.partly_solved().cells  # reuse its wrong iou_loops body
    wrong = next(c.source for c in wrong_loops if nbk.nbgrader_meta(c).get("grade_id") == "iou_loops")
    wrong_body = wrong.split("\n", 1)[1].replace("### BEGIN SOLUTION\n", "").replace(
        "    ### END SOLUTION", "")
    students = {
        "full": (dict(builder.SOLUTIONS), builder.TOTAL),
        "learner": ({}, 0.0),
        "partly": ({("iou", "numpy"): builder.IOU_NUMPY, ("iou", "loops"): wrong_body}, 2.0),
        "different": (dict(builder.DIFFERENT), builder.TOTAL),
        # an earlier cell patches the checker in the kernel; iou_numpy is wrong (nms uses it)
        "patches_in_kernel": ({**builder.SOLUTIONS, ("iou", "numpy"): "    return np.zeros("
                               "(len(boxes1), len(boxes2)))"}, 1.0),
    }
    for student, (bodies, _) in students.items():
        nb = _submission_from_release(released, bodies)
        if student == "different":
            nb.cells.insert(2, nbformat.v4.new_code_cell(builder.HELPER_CELL.split("\n\n")[0]))
        if student == "patches_in_kernel":
            nb.cells.insert(2, nbformat.v4.new_code_cell(IN_KERNEL_PATCH))
        dst = nbg / "submitted" / student / "ps1" / builder.NOTEBOOK
        dst.parent.mkdir(parents=True)
        nbformat.write(nb, str(dst))
        (dst.parent / "timestamp.txt").write_text("2024-09-17 10:00:00.000000 UTC")
    _nbgrader(course, "autograde", "ps1")
    _nbgrader(course, "generate_feedback", "ps1")
    _nbgrader(course, "export")
    assert not (course / "grades.csv").exists()   # the export goes to the course root
    with open(nbg / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    for student, (_, points) in students.items():
        assert float(rows[student]["raw_score"]) == points, (student, rows[student])
        assert float(rows[student]["max_score"]) == builder.TOTAL
        fb = nbg / "feedback" / student / "ps1" / "ps1.html"
        assert fb.exists()
    # the same grades through `workshop grade`
    proc = subprocess.run([PY, "-m", "workshop", "grade", str(nbg / "submitted"), "--solutions",
                           str(course / "solutions"), "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, env=ENV, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "results" / "grades.csv", newline="") as f:
        ours = {r["student"]: float(r["total"]) for r in csv.DictReader(f)}
    assert ours == {s: float(rows[s]["raw_score"]) for s in students}
    # hidden inputs stay hidden in nbgrader's feedback too (the run's seed is on record)
    runs = [json.loads(line) for line in (nbg / "grading-runs.jsonl").read_text().splitlines()]
    assert {r["student"] for r in runs} == set(students)
    assert oct((nbg / "grading-runs.jsonl").stat().st_mode & 0o777) == "0o600"
    fb = (nbg / "feedback" / "partly" / "ps1" / "ps1.html").read_text()
    assert "checks passed" in fb and str(runs[0]["seed"]) not in fb
    for case in grading_cases(get("iou"), runs[0]["seed"]):
        if not case.public:
            assert case.describe() not in fb


def test_a_helper_import_that_reaches_the_answers_costs_nothing(tmp_path):
    """A demonstration cell may import workshop.evaluation (which loads the reference); blocked
    in the sandbox, that import is simply absent: the learner's own solution still scores."""
    from workshop.grading.grader import Expected, grade_notebook

    nb = builder.build()
    nb.cells.insert(1, nbformat.v4.new_code_cell("from workshop.evaluation import coco_evaluate"))
    path = tmp_path / "bob" / builder.NOTEBOOK
    path.parent.mkdir()
    nbformat.write(nb, str(path))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests[:1], "bob", Expected(SEED), Limits(wall=60))
    assert res.tests[0].status == "passed", res.tests[0].message


# == tracks: what a track does not count is graded, reported, and worth 0 of 0 ===============
# ps1 plus a tier the one-day track leaves out (confusion_matrix, chapter 8) and a stretch tier
# of one it holds (nms_tf): worth 6 points in the one-day track, 10 in the full course
CM_NUMPY = """\
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)"""
TRACK_EXTRA = [("confusion_matrix", "numpy", 2.0, "(y_true, y_pred, num_classes)"),
               ("nms", "tf", 2.0, builder.TESTS[1][3])]
TRACK_MAX = {"one-day": builder.TOTAL, "full": builder.TOTAL + 4.0}
CM_WRONG = "    return np.zeros((num_classes, num_classes), dtype=np.int64)"
# student -> (bodies of the extra tiers, ps1's bodies) and points per track
TRACK_STUDENTS = {
    "core": ({}, builder.SOLUTIONS, {"one-day": 6.0, "full": 6.0}),
    "core_and_more": ({("confusion_matrix", "numpy"): CM_NUMPY}, builder.SOLUTIONS,
                      {"one-day": 6.0, "full": 8.0}),
    "wrong_extra": ({("confusion_matrix", "numpy"): CM_WRONG}, builder.SOLUTIONS,
                    {"one-day": 6.0, "full": 6.0}),
    "partly": ({("confusion_matrix", "numpy"): CM_NUMPY}, {("iou", "numpy"): builder.IOU_NUMPY},
               {"one-day": 2.0, "full": 4.0}),
}


def _track_notebook(extra: dict, ps1: dict, solution: bool = False) -> nbformat.NotebookNode:
    """ps1 with the extra tiers; ``solution``: the instructor's version (markers, full bodies)."""
    nb = builder.build({k: ps1.get(k, builder.STUB) for k in builder.SOLUTIONS})
    for ex, tier, points, sig in TRACK_EXTRA:
        body = extra.get((ex, tier), builder.STUB)
        cell = nbk.solution_cell(ex, tier, body if solution or (ex, tier) in extra else builder.STUB, sig)
        if not solution:
            cell.source = f"def {ex}_{tier}{sig}:\n{body}"
        nb.cells += [cell, nbk.test_cell(ex, tier, points)]
    return nb


def _grade_cli(subs: Path, solutions: Path, out: Path, *options: str) -> dict:
    proc = subprocess.run([PY, "-m", "workshop", "grade", str(subs), "--solutions", str(solutions),
                           "--out", str(out), "--jobs", "2", *options], capture_output=True,
                          text=True, env=ENV, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _rows(out / "grades.csv")


@pytest.fixture(scope="module")
def track_class(tmp_path_factory):
    """The track class graded for the one-day track and for the full course."""
    require_sandbox()
    tmp = tmp_path_factory.mktemp("tracks")
    solutions = tmp / "solutions" / builder.NOTEBOOK
    solutions.parent.mkdir()
    nbformat.write(_track_notebook({("confusion_matrix", "numpy"): CM_NUMPY}, builder.SOLUTIONS,
                                   solution=True), str(solutions))
    for student, (extra, ps1, _) in TRACK_STUDENTS.items():
        path = tmp / "subs" / student / builder.NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(_track_notebook(extra, ps1), str(path))
    graded = {track: (_grade_cli(tmp / "subs", solutions.parent, tmp / track, "--track", track),
                      tmp / track) for track in ("one-day", "full")}
    return tmp, graded


@pytest.mark.parametrize("track", ["one-day", "full"])
@pytest.mark.parametrize("student", list(TRACK_STUDENTS))
def test_a_track_counts_what_it_holds(track_class, track, student):
    _, graded = track_class
    rows, _ = graded[track]
    assert float(rows[student]["total"]) == TRACK_STUDENTS[student][2][track]
    assert float(rows[student]["max"]) == TRACK_MAX[track]


def test_what_a_track_does_not_count_is_graded_and_said(track_class):
    _, graded = track_class
    _, out = graded["one-day"]
    cm = _record(out, "core_and_more", "test_confusion_matrix_numpy")
    assert (cm["status"], cm["points"], cm["max_points"]) == ("passed", 0, 0)
    assert cm["optional"] == "not in the one-day track"
    stretch = _record(out, "core", "test_nms_tf")
    assert (stretch["status"], stretch["max_points"]) == ("not_implemented", 0)
    assert stretch["optional"] == "stretch goal"
    fb = _feedback(out, "core_and_more")
    assert "Track: one-day" in fb and "**Total: 6 / 6 points**" in fb
    assert "not in the one-day track, not counted: passed" in fb
    assert "stretch goal, not counted: not implemented yet" in fb
    assert "failed" in _feedback(out, "wrong_extra")
    assert json.loads((out / "run.json").read_text())["track"] == "one-day"
    # the full course: every test counts, as without --track
    full = _record(graded["full"][1], "core_and_more", "test_confusion_matrix_numpy")
    assert (full["points"], full["max_points"], full["optional"]) == (2, 2, "")


def test_resume_regrades_for_another_track(track_class):
    tmp, graded = track_class
    out = tmp / "resumed"
    shutil.copytree(graded["full"][1], out)
    seed = str(json.loads((out / "run.json").read_text())["seed"])
    rows = _grade_cli(tmp / "subs", tmp / "solutions", out, "--track", "one-day", "--resume",
                      "--seed", seed)
    assert {s: float(r["max"]) for s, r in rows.items()} == {s: 6.0 for s in TRACK_STUDENTS}


def test_an_unknown_track_is_refused():
    proc = subprocess.run([PY, "-m", "workshop", "grade", "x.ipynb", "--track", "half-day"],
                          capture_output=True, text=True, env=ENV, check=False)
    assert proc.returncode == 2 and "one-day, two-day, full" in proc.stderr


@pytest.mark.slow
def test_nbgrader_pipeline_with_a_track(tmp_path):
    """The instructor picks the one-day track in nbgrader's configuration: the released
    assignment is worth the track's 6 points, and nbgrader's autograde gives each submission
    the total `workshop grade --track one-day` gives."""
    require_sandbox()
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    nbformat.write(_track_notebook({("confusion_matrix", "numpy"): CM_NUMPY}, builder.SOLUTIONS,
                                   solution=True), str(course / "solutions" / builder.NOTEBOOK))
    env = {**ENV, "WORKSHOP_TRACK": "one-day"}
    proc = subprocess.run([PY, "-m", "workshop", "release", "--root", str(course), "--solutions",
                           str(course / "solutions"), "--out", str(course / "notebooks")],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr

    def nbgrader(*args):
        done = subprocess.run([PY, "-m", "nbgrader", *args], cwd=course, capture_output=True,
                              text=True, env=env, timeout=900, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    nbgrader("generate_assignment", "ps1")
    nbg = course / "nbgrader"
    released = nbformat.read(str(nbg / "release" / "ps1" / builder.NOTEBOOK), as_version=4)
    points = {nbk.nbgrader_meta(c)["grade_id"]: nbk.nbgrader_meta(c)["points"]
              for c in released.cells if nbk.is_test_cell(c)}
    assert points == {**builder.POINTS, "test_confusion_matrix_numpy": 0, "test_nms_tf": 0}
    for student, (extra, ps1, _) in TRACK_STUDENTS.items():
        dst = nbg / "submitted" / student / "ps1" / builder.NOTEBOOK
        dst.parent.mkdir(parents=True)
        nbformat.write(_track_notebook(extra, ps1), str(dst))
        (dst.parent / "timestamp.txt").write_text("2024-09-17 10:00:00.000000 UTC")
    nbgrader("autograde", "ps1")
    nbgrader("export")
    with open(nbg / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    for student, (_, _, want) in TRACK_STUDENTS.items():
        assert float(rows[student]["raw_score"]) == want["one-day"], (student, rows[student])
        assert float(rows[student]["max_score"]) == TRACK_MAX["one-day"]
    ours = _grade_cli(nbg / "submitted", course / "solutions", tmp_path / "results",
                      "--track", "one-day")
    assert {s: float(r["total"]) for s, r in ours.items()} == {
        s: float(r["raw_score"]) for s, r in rows.items()}
    autograded = nbformat.read(str(nbg / "autograded" / "core_and_more" / "ps1" / builder.NOTEBOOK),
                               as_version=4)
    cm_cell = next(c for c in autograded.cells
                   if nbk.nbgrader_meta(c).get("grade_id") == "test_confusion_matrix_numpy")
    assert "not in the one-day track, not counted: passed" in cm_cell.outputs[0]["text"]


# == what learners write never acts in their feedback, and odd notebooks get clear messages ==
def test_learner_text_is_inert_in_feedback():
    from html.parser import HTMLParser

    from workshop.grading.feedback import render_html, render_markdown
    from workshop.grading.records import SubmissionResult, TestRecord

    evil = "\n# Total: 16/16 points\n<script>alert(1)</script> ```\n| x | y |"
    rec = TestRecord("eve", "ps1.ipynb", "test_iou_numpy", "iou", "numpy", 0.0, 2.0, "failed",
                     message=f"raised ValueError: {evil}",
                     verdict={"report": f"iou [numpy]: FAILED\n  case 'x': raised {evil}"})
    sub = SubmissionResult("eve <b>", "ps1.ipynb", "x", [rec])
    md = render_markdown(sub)
    assert md.count("**Total:") == 1 and "\\<script\\>" in md
    for line in md.splitlines():   # learner text is escaped, or inside an indented code block
        if "<script>" in line:
            assert line.startswith("    "), line
        if "Total: 16/16" in line:
            assert line.startswith("    ") or not line.startswith("#"), line
    html = render_html(sub)
    assert "<script>" not in html and "&lt;script&gt;" in html

    class Styles(HTMLParser):
        def __init__(self):
            super().__init__()
            self.css, self.inside = "", False

        def handle_starttag(self, tag, attrs):
            self.inside = tag == "style"

        def handle_data(self, data):
            if self.inside:
                self.css += data
    parser = Styles()
    parser.feed(html)
    assert "{{" not in parser.css and parser.css.count("{") == parser.css.count("}") >= 5
    assert "border:1px solid" in parser.css and "color:#cf222e" in parser.css


@pytest.mark.parametrize("mangle, words", [
    (lambda nb: nb.update(nbformat="four"), "not a number"),
    (lambda nb: nb.update(cells="x"), "not a notebook"),
])
def test_malformed_notebooks_get_a_clear_message(tmp_path, mangle, words):
    from workshop.grading.grader import Expected, grade_notebook

    nb = json.loads(nbformat.writes(builder.build()))
    mangle(nb)
    path = tmp_path / builder.NOTEBOOK
    path.write_text(json.dumps(nb))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests, "m", Expected(SEED), Limits(wall=30))
    assert words in res.error and "internal" not in res.error


def test_nbformat_as_a_string_is_read(tmp_path):
    from workshop.grading.grader import Expected, grade_notebook

    nb = json.loads(nbformat.writes(builder.build()))
    nb["nbformat"] = "4"
    path = tmp_path / builder.NOTEBOOK
    path.write_text(json.dumps(nb))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests, "m", Expected(SEED), Limits(wall=30))
    assert not res.error and res.total == builder.TOTAL


def test_a_deeply_nested_cell_costs_only_its_test(tmp_path):
    from workshop.grading.grader import Expected, grade_notebook

    deep = "    return " + "-(" * 5000 + "1" + ")" * 5000
    nb = builder.build({("iou", "loops"): deep})
    nb.cells.insert(1, nbformat.v4.new_code_cell("x = " + "[" * 100000 + "]" * 100000))
    path = tmp_path / builder.NOTEBOOK
    nbformat.write(nb, str(path))
    tests, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(path, tests, "m", Expected(SEED), Limits(wall=30))
    assert not res.error
    assert [t.points for t in res.tests] == [2.0, 3.0, 0.0]
    assert res.tests[2].status in ("failed", "error")
