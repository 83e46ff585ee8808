"""The course runs headless: every solution notebook top to bottom without an error, every
learner notebook with each exercise reporting "not implemented yet"; notebooks/ is exactly what
`make release` makes of solutions/, without outputs."""

import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from private_tmp import private_tempdir

from workshop.grading import notebook as nbk
from workshop.tools.course_report import (
    BUDGET_MB,
    NOTEBOOKS,
    SOLUTIONS,
    course_notebooks,
    run_notebook,
)

SOLUTION_PATHS = course_notebooks(SOLUTIONS)
IDS = [p.stem for p in SOLUTION_PATHS]
# "going further" chapters: run, released and tested like the others, but nothing to implement
# and no graded cell (docs/NOTEBOOKS.md)
UNGRADED = ("11_detector_as_a_product",)


def test_the_eleven_notebooks_are_there():
    expected = ["01_cnn_basics", "02_transfer_learning", "03_iou_nms", "04_anchors", "05_rpn",
                "06_roi_pooling", "07_transposed_convolution", "08_unet", "09_map",
                "10_single_shot", "11_detector_as_a_product"]
    assert [p.stem for p in SOLUTION_PATHS] == expected
    assert [p.stem for p in course_notebooks(NOTEBOOKS)] == expected


def test_learner_notebooks_are_the_release_of_the_solutions(tmp_path):
    from workshop.grading.nbgrader_glue import release

    release(SOLUTIONS, tmp_path, log=lambda *_: None)
    for sol in SOLUTION_PATHS:
        fresh = json.loads((tmp_path / sol.name).read_text())
        committed_path = NOTEBOOKS / sol.name
        assert committed_path.exists(), f"{sol.name} was never released: run `make release`"
        committed = json.loads(committed_path.read_text())
        assert committed == fresh, f"notebooks/{sol.name} is out of date: run `make release`"


@pytest.mark.parametrize("path", [NOTEBOOKS / p.name for p in SOLUTION_PATHS], ids=IDS)
def test_learner_notebooks_have_no_outputs_and_no_solutions(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: committed outputs in a code cell"
        assert "BEGIN SOLUTION" not in cell.source, f"{path.name}: a solution survived"


@pytest.mark.parametrize("path", SOLUTION_PATHS, ids=IDS)
def test_solution_notebooks_follow_the_convention(path):
    from workshop.grading.nbgrader_glue import lint

    nb = json.loads(path.read_text())
    assert lint(nb, path.name) == []
    tests, _ = nbk.graded_tests(nb)
    if path.stem in UNGRADED:
        cells = [nbk.nbgrader_meta(c) for c in nbk.code_cells(nb)]
        assert not [m.get("grade_id") for m in cells if m.get("grade") or m.get("solution")], (
            f"{path.name} is a going-further chapter: no solution or graded cells")
    else:
        assert tests, f"{path.name} has no graded exercise"


def test_every_exercise_is_graded_in_its_chapter_notebook():
    """An exercise's ``chapter`` is the notebook that grades it: every graded cell belongs to an
    exercise of that notebook's chapter, and every exercise has graded cells there."""
    from workshop.exercises import all_exercises, get

    graded = {}
    for path in SOLUTION_PATHS:
        tests, _ = nbk.graded_tests(json.loads(path.read_text()))
        for t in tests:
            chapter = get(t.exercise).chapter
            assert chapter == path.stem, f"{path.name}: {t.grade_id} grades {t.exercise} of {chapter}"
            assert t.tier in get(t.exercise).tiers, f"{path.name}: {t.grade_id}: no such tier"
            graded.setdefault(t.exercise, set()).add(t.tier)
    ungraded = [f"{e.name} ({e.chapter})" for e in all_exercises() if e.name not in graded]
    assert not ungraded, f"exercises no notebook grades: {ungraded}"


def _test_cell_indices(path: Path) -> list[tuple[int, str]]:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [(i, nbk.nbgrader_meta(c)["grade_id"]) for i, c in enumerate(code) if nbk.is_test_cell(c)]


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTION_PATHS, ids=IDS)
def test_solution_notebook_runs(path):
    run = run_notebook(path)
    assert run.ok, f"{path.name} failed:\n{run.error}"
    for i, grade_id in _test_cell_indices(path):
        assert "FAILED" not in run.outputs[i] and "not implemented" not in run.outputs[i], (
            f"{path.name}: {grade_id} does not pass with the solution:\n{run.outputs[i][:2000]}")
    assert not run.leftovers, f"{path.name} left temporary files behind: {run.leftovers[:10]}"
    # memory does not depend on how busy the machine is (time does: make course-report)
    assert run.peak_mb is None or run.peak_mb <= BUDGET_MB, (
        f"{path.name} peaked at {run.peak_mb} MB, over the notebooks' {BUDGET_MB} MB budget")
    print(f"{path.name}: {run.seconds:.1f} s, peak {run.peak_mb} MB")  # budgets: make course-report


@pytest.mark.slow
@pytest.mark.parametrize("path", [NOTEBOOKS / p.name for p in SOLUTION_PATHS], ids=IDS)
def test_learner_notebook_runs_unimplemented(path):
    run = run_notebook(path)
    assert run.ok, f"{path.name} failed:\n{run.error}"
    for i, grade_id in _test_cell_indices(path):
        assert "not implemented yet" in run.outputs[i], (
            f"{path.name}: {grade_id} should report 'not implemented yet':\n{run.outputs[i][:2000]}")
    assert not run.leftovers, f"{path.name} left temporary files behind: {run.leftovers[:10]}"


def test_a_notebook_run_leaves_nothing_in_tmp(tmp_path):
    """run_notebook gives the kernel a TMPDIR of its own and removes it; what the notebook left
    there once its kernel stopped is reported: a TemporaryDirectory is gone, a mkdtemp is not."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import tempfile\nfrom pathlib import Path\n"
        "scratch = tempfile.TemporaryDirectory(prefix='nbscratch_')\n"
        "(Path(scratch.name) / 'best.weights.h5').write_bytes(b'weights')\n"
        "leaked = tempfile.mkdtemp(prefix='nbleaked_')\n"
        "print(tempfile.gettempdir())")])
    path = tmp_path / "scratch.ipynb"
    nbformat.write(nb, path)
    with private_tempdir(tmp_path / "tmp") as scratch:
        run = run_notebook(path, timeout=120)
    assert run.ok, run.error
    kernel_tmp = Path(run.outputs[0].strip())
    assert kernel_tmp.parent == scratch and not kernel_tmp.exists()
    assert [re.sub(r"_.*", "_", n) for n in run.leftovers] == ["nbleaked_"]
    assert os.listdir(scratch) == [], f"left in {scratch}: {sorted(os.listdir(scratch))}"


@pytest.mark.parametrize("path", SOLUTION_PATHS, ids=IDS)
def test_notebooks_make_no_temporary_files_that_outlive_the_kernel(path):
    """Scratch folders are tempfile.TemporaryDirectory (deleted when the kernel stops); mkdtemp,
    mkstemp and delete=False files would pile up in /tmp with every run."""
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert not re.search(r"mkdtemp|mkstemp|delete\s*=\s*False", code), path.name


# -- a workshop day: each tier's time and kind above it, one timing table by default ------------
TIMING_FLAG = "SHOW_ALL_TIMINGS"


@pytest.mark.parametrize("path", [p for p in SOLUTION_PATHS if p.stem not in UNGRADED],
                         ids=[i for i in IDS if i not in UNGRADED])
def test_every_tier_shows_its_time_and_kind_from_the_registry(path):
    """Right above each solution cell, the line `workshop.tracks.tier_note` writes: the
    registry's minutes, core or stretch, the tracks it counts in."""
    from workshop.tracks import tier_note

    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        gid = nbk.nbgrader_meta(cell).get("grade_id", "")
        if nbk.is_solution_cell(cell) and nbk.split_id(gid):
            above = cells[i - 1]
            assert above.cell_type == "markdown" and above.source == tier_note(*nbk.split_id(gid)), (
                f"{path.name}: the line above {gid} is not the registry's: regenerate it")
            assert nbk.nbgrader_meta(above).get("locked"), f"{path.name}: {gid}'s line is not locked"


def _timing_calls(tree: ast.AST, guarded: bool = False):
    """(speed_table call, whether an `if SHOW_ALL_TIMINGS:` guards it) for every call in tree."""
    for node in ast.iter_child_nodes(tree):
        inside = guarded or (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                             and node.test.id == TIMING_FLAG)
        if isinstance(node, ast.If) and inside and not guarded:
            for child in node.body:
                yield from _timing_calls(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _timing_calls(ast.Module(body=[child], type_ignores=[]), False)
            continue
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "speed_table":
            yield node, guarded
        yield from _timing_calls(node, guarded)


def timing_tables(path: Path) -> tuple[int, int, bool]:
    """(tables that run by default, optional tables, the flag is set to False before them)."""
    default = optional = 0
    flag_off = False
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(nbk.strip_magics(cell.source))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [TIMING_FLAG]):
                flag_off = flag_off or (isinstance(node.value, ast.Constant) and node.value.value is False)
        for _, guarded in _timing_calls(tree):
            optional += guarded
            default += not guarded
            assert flag_off or default, f"{path.name}: a timing cell before the {TIMING_FLAG} line"
    return default, optional, flag_off


@pytest.mark.parametrize("path", [p for p in SOLUTION_PATHS if p.stem not in UNGRADED],
                         ids=[i for i in IDS if i not in UNGRADED])
def test_one_timing_table_runs_by_default(path):
    """A chapter runs its most telling timing table; the others wait for SHOW_ALL_TIMINGS."""
    default, optional, flag_off = timing_tables(path)
    assert default == 1, f"{path.name}: {default} timing tables run by default, not 1"
    assert optional == 0 or flag_off, f"{path.name}: optional tables but no `{TIMING_FLAG} = False`"


def test_the_timing_rule_can_fail(tmp_path):
    cells = [nbformat.v4.new_code_cell(f"{TIMING_FLAG} = False"),
             nbformat.v4.new_code_cell("speed_table('iou', {}, ())"),
             nbformat.v4.new_code_cell(f"if {TIMING_FLAG}:\n    speed_table('iou', {{}}, ())\n"
                                       "speed_table('nms', {}, ())")]
    path = tmp_path / "x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert timing_tables(path) == (2, 1, True)
