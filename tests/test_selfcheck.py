"""The learner's side: check()/grade() in a notebook (public checks, honest messages, never a
crash) and under `nbgrader validate` (AssertionError; the hidden cases never run in a learner's
kernel, nothing hidden revealed); the release
of learner notebooks; the `python -m workshop` dispatcher."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from graded_submissions import builder

from workshop.exercises import get
from workshop.grading import check, grade
from workshop.grading import notebook as nbk
from workshop.grading.check import GRADING_ENV, NOT_IMPLEMENTED, check_cases, grading_cases

ROOT = Path(__file__).resolve().parents[1]

SEED = 20240917  # the hidden cases' seed of these tests (a grading run draws its own)


def _define(key, body=None):
    """The builder's function for (exercise, tier) with ``body`` (default: the solution)."""
    ns = {"np": np}
    ex, tier = key
    sig = next(s for e, t, _, s in builder.TESTS if (e, t) == key)
    exec(f"def {ex}_{tier}{sig}:\n{body or builder.SOLUTIONS[key]}", ns)  # noqa: S102
    if key != ("iou", "numpy"):
        exec(f"def iou_numpy(boxes1, boxes2):\n{builder.IOU_NUMPY}", ns)  # noqa: S102
    return ns[f"{ex}_{tier}"]


IOU = _define(("iou", "numpy"))
NMS = _define(("nms", "numpy"))
PLUS_ONE = _define(("iou", "numpy"), builder.IOU_NUMPY.replace(
    "(a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])", "(a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)"
).replace("(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])", "(b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)"
          ).replace("np.clip(rb - lt, 0, None)", "np.clip(rb - lt + 1, 0, None)"))


def _hidden_texts(name):
    exercise = get(name)
    out = []
    for case in grading_cases(exercise, SEED):
        if not case.public:
            out.append(case.describe())
    return out


# == in a learner's kernel ===================================================================
@pytest.fixture
def learner_mode(monkeypatch):
    monkeypatch.delenv(GRADING_ENV, raising=False)


@pytest.fixture
def nbgrader_mode(monkeypatch):
    monkeypatch.setenv(GRADING_ENV, "autograde")


def test_check_says_what_it_checked(learner_mode, capsys):
    verdict = check("iou", IOU, tier="numpy")
    n = len(get("iou").cases(public_only=True))
    assert verdict.passed
    assert f"{n}/{n} public checks passed; more checks run at grading" in capsys.readouterr().out


def test_grade_in_a_notebook_runs_public_checks_only(learner_mode, capsys):
    assert grade("nms", NMS, tier="numpy") is None
    out = capsys.readouterr().out
    n = len(get("nms").cases(public_only=True))
    assert f"{n}/{n} public checks passed; more checks run at grading" in out


@pytest.mark.parametrize("body, words", [
    ("    raise NotImplementedError()", NOT_IMPLEMENTED),
    ("    raise ValueError('oops')", "raised ValueError: oops"),
    ("    import sys\n    sys.exit(1)", "raised SystemExit"),
    ("    return 'a string'", "FAILED"),
    (None, "'+1' pixel convention"),
])
def test_grade_in_a_notebook_never_raises(learner_mode, capsys, body, words):
    fn = PLUS_ONE if body is None else _define(("iou", "numpy"), body)
    grade("iou", fn, tier="numpy")
    out = capsys.readouterr().out
    assert words in out
    assert "public checks" in out or NOT_IMPLEMENTED in out


def test_grade_under_nbgrader_passes_a_correct_answer(nbgrader_mode, capsys):
    grade("iou", IOU, tier="numpy")
    n = len(get("iou").cases(public_only=True))
    out = capsys.readouterr().out
    assert f"{n}/{n} public checks passed" in out


def test_grade_under_nbgrader_raises_on_a_public_failure(nbgrader_mode):
    with pytest.raises(AssertionError) as info:
        grade("iou", PLUS_ONE, tier="numpy")
    assert "FAILED" in str(info.value)


def test_hidden_cases_never_run_in_the_learners_kernel(nbgrader_mode):
    """Right on every public case, wrong on hidden ones: the kernel cannot tell (the hidden
    cases exist only in the sandboxed grader, with a seed the kernel never sees)."""
    body = builder.IOU_NUMPY.replace("    return", "    if len(b) == 0 or a.min(initial=np.inf) > 1000:\n"
                                     "        return np.full((len(a), max(len(b), 1)), 0.5)\n    return")
    fn = _define(("iou", "numpy"), body)
    grade("iou", fn, tier="numpy")   # passes here ...
    exercise = get("iou")
    verdict = check_cases(exercise, fn, grading_cases(exercise, SEED), tier="numpy")
    assert not verdict.passed        # ... and fails where grades are given
    text = verdict.report()
    assert "(hidden)" in text
    for hidden in _hidden_texts("iou"):
        assert hidden not in text
    assert "5000" not in text  # the far-from-the-origin inputs or outputs


def test_grade_under_nbgrader_not_implemented_fails(nbgrader_mode):
    with pytest.raises(AssertionError, match=NOT_IMPLEMENTED):
        grade("iou", _define(("iou", "numpy"), "    raise NotImplementedError()"), tier="numpy")


def test_grade_export_survives_importing_the_grader(learner_mode, capsys):
    from workshop import grading  # noqa: I001
    import workshop.grading.grader  # noqa: F401
    from workshop.grading import grade as g

    assert g is grading.grade and callable(g) and not isinstance(g, type(grading))
    g("iou", IOU, tier="numpy")
    assert "public checks passed" in capsys.readouterr().out


def test_hidden_case_problems_are_redacted():
    from workshop.grading.check import hidden_problem

    assert hidden_problem("raised ValueError: row 3 is [1, 2, 3, 4]") == "raised ValueError"
    assert hidden_problem("2 of 6 values differ; first at index [0, 1]: expected 0.5, got 0.3") \
        == "wrong values"
    assert hidden_problem("expected shape (2, 3), got shape (3, 2)") == "wrong output shape"
    assert hidden_problem("expected an array, got a str") == "expected an array, got a str"


def test_lists_float32_and_empty_lists_are_fair(learner_mode):
    different = {k: _define(k, builder.DIFFERENT[k]) for k in [("iou", "numpy"), ("nms", "numpy")]}
    for (ex, tier), fn in different.items():
        exercise = get(ex)
        verdict = check_cases(exercise, fn, grading_cases(exercise, SEED), tier=tier)
        assert verdict.passed, verdict.report()


# == notebooks executed as nbgrader would (the faster twin of the pipeline test) =============
def _execute(nb, env_grading: bool, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "import os\n" + (f"os.environ['{GRADING_ENV}'] = 'autograde'" if env_grading
                         else f"os.environ.pop('{GRADING_ENV}', None)")))
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = {}
    for cell in nb.cells:
        if nbk.is_test_cell(cell):
            gid = nbk.nbgrader_meta(cell)["grade_id"]
            errors[gid] = [o.get("ename") for o in cell.outputs if o.output_type == "error"]
    return errors, nb


def test_notebook_test_cells_give_all_or_nothing(tmp_path):
    """Executed with NBGRADER_EXECUTION set, exactly the failing tests' cells raise; in a
    learner's kernel no test cell raises at all."""
    errors, _ = _execute(builder.partly_solved(), True, tmp_path)
    assert errors == {"test_iou_numpy": [], "test_nms_numpy": ["AssertionError"],
                      "test_iou_loops": ["AssertionError"]}
    errors, nb = _execute(builder.learner(), False, tmp_path)
    assert all(e == [] for e in errors.values()), errors
    text = nbformat.writes(nb)
    assert NOT_IMPLEMENTED in text


# == release =================================================================================
def test_release_makes_learner_notebooks(tmp_path):
    from workshop.grading.nbgrader_glue import release

    sol = tmp_path / "solutions"
    sol.mkdir()
    nbformat.write(builder.build(), str(sol / "03_demo.ipynb"))
    written = release(sol, tmp_path / "notebooks", root=ROOT, log=None, nbgrader=False)
    assert written == [tmp_path / "notebooks" / "03_demo.ipynb"]
    nb = nbformat.read(str(written[0]), as_version=4)
    text = nbformat.writes(nb)
    assert "BEGIN SOLUTION" not in text and "np.divide(inter" not in text
    sols = [c for c in nb.cells if nbk.is_solution_cell(c)]
    tests = [c for c in nb.cells if nbk.is_test_cell(c)]
    assert len(sols) == 3 and all("raise NotImplementedError()" in c.source for c in sols)
    assert all(c.metadata["nbgrader"].get("locked") and "checksum" in c.metadata["nbgrader"]
               for c in tests)
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    # and the released notebook, as submitted, is worth nothing
    from workshop.grading.grader import Expected, grade_notebook
    from workshop.grading.runner import Limits

    graded, _ = nbk.graded_tests(builder.build())
    res = grade_notebook(written[0], graded, "nobody", Expected(SEED), Limits(wall=30))
    assert res.total == 0 and all(t.status == "not_implemented" for t in res.tests)


def test_release_refuses_a_notebook_breaking_the_convention(tmp_path):
    from workshop.grading.nbgrader_glue import lint, release

    nb = builder.build()
    for c in nb.cells:
        if nbk.nbgrader_meta(c).get("grade_id") == "nms_numpy":
            c.source = c.source.replace("def nms_numpy", "def nms")
    problems = lint(json.loads(nbformat.writes(nb)))
    assert any("does not define nms_numpy()" in p for p in problems), problems
    (tmp_path / "solutions").mkdir()
    nbformat.write(nb, str(tmp_path / "solutions" / "bad.ipynb"))
    with pytest.raises(ValueError, match="nms_numpy"):
        release(tmp_path / "solutions", tmp_path / "notebooks", root=ROOT, log=None,
                nbgrader=False)
    assert lint(json.loads(nbformat.writes(builder.build()))) == []


def test_nbgrader_config_is_rooted_at_its_folder(tmp_path, monkeypatch):
    from workshop.grading.nbgrader_glue import load_config

    (tmp_path / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    monkeypatch.delenv("WORKSHOP_NBGRADER_DB_URL", raising=False)
    cfg = load_config(tmp_path)
    assert cfg.CourseDirectory.root == str(tmp_path / "nbgrader")
    assert cfg.CourseDirectory.db_url == f"sqlite:///{tmp_path / 'nbgrader' / 'gradebook.db'}"
    assert cfg.OverwriteCells.add_missing_cells is True
    assert 0 < cfg.Execute.timeout <= 900 and cfg.LimitOutput.max_lines > 0
    monkeypatch.setenv("WORKSHOP_NBGRADER_DB_URL", "postgresql://grader@db/course")
    assert load_config(tmp_path).CourseDirectory.db_url == "postgresql://grader@db/course"


# == the dispatcher ==========================================================================
def test_cli_dispatch_and_missing_modules(monkeypatch, capsys):
    from workshop import __main__ as cli

    assert cli.main(["--help"]) == 0 and "grade" in capsys.readouterr().out
    assert cli.main(["no-such-command"]) == 2
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("workshop.no_such_module:main", "nothing"))
    assert cli.main(["ghost"]) == 3
    assert "workshop.no_such_module is missing" in capsys.readouterr().err


def test_cli_lists_the_exercises_by_chapter(capsys):
    from workshop import __main__ as cli
    from workshop.exercises import get

    assert cli.main(["exercises", "03_iou_nms"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "03_iou_nms"
    for name in ("iou", "nms", "batched_nms"):
        assert get(name).summary in out and get(name).signature in out
    assert "anchors" not in out
    assert cli.main(["exercises", "99_nothing"]) == 2 and "03_iou_nms" in capsys.readouterr().err


def test_cli_grade_and_check_end_to_end(tmp_path):
    sol = tmp_path / "solutions"
    sol.mkdir()
    nbformat.write(builder.build(), str(sol / builder.NOTEBOOK))
    builder.write_all(tmp_path / "subs", ["full", "partly_solved"])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(check=False, args=[sys.executable, "-m", "workshop", "grade", str(tmp_path / "subs"),
                           "--solutions", str(sol), "--out", str(tmp_path / "out"), "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grades = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert grades[0].startswith("student,notebook,total,max,status,test_iou_numpy")
    assert {g.split(",")[0]: g.split(",")[2] for g in grades[1:]} == {"full": "6",
                                                                      "partly_solved": "2"}
    proc = subprocess.run(check=False, args=[sys.executable, "-m", "workshop", "check",
                           str(tmp_path / "subs" / "partly_solved" / builder.NOTEBOOK)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "public checks passed; more checks run at grading" in proc.stdout
    assert "nms [numpy]: not implemented yet" in proc.stdout
