"""``python -m workshop release``: the learner notebooks ``notebooks/`` from ``solutions/``.

Runs nbgrader's own preprocessors, in the order ``nbgrader generate_assignment`` uses them
(minus the gradebook step, which needs an assignment database): LockCells, ClearSolutions,
ClearOutput, CheckCellMetadata, ComputeChecksums, ClearHiddenTests, ClearMarkScheme,
ComputeChecksums, CheckCellMetadata, configured by the course's ``nbgrader_config.py``.
``solutions/`` may be flat (``solutions/03_iou_nms.ipynb``) or nbgrader-style
(``solutions/<assignment>/*.ipynb``); ``notebooks/`` mirrors it.

It also stages the solutions as nbgrader's source folder (``<CourseDirectory.root>/source/
<assignment>/``, one assignment per flat notebook, named by its stem) so that ``nbgrader
generate_assignment / autograde / generate_feedback / export`` work on the same notebooks.

Before writing, each solution notebook is linted against the convention of
:mod:`workshop.grading.notebook` (solution cell ``<exercise>_<tier>`` defines that function,
every test cell has its solution cell, ids unique); problems stop the release.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from . import notebook as nbk

COURSE_ROOT = Path(__file__).resolve().parents[2]

# What every learner notebook says about its kernel: the version-free part of what JupyterLab
# writes when the kernel starts. The learners' server completes it as it opens a notebook
# (workshop.tools.lab_contents), so that a notebook nobody edited does not open as changed.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python"}


def load_config(root: Path = COURSE_ROOT):
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(root) / "nbgrader_config.py"
    if not path.exists():
        return Config()
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def preprocessors(config):
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    chain = [LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums,
             ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata]
    return [cls(config=config) for cls in chain]


def lint(nb: dict, name: str = "notebook") -> list[str]:
    """Convention problems of a solution notebook (empty: fine)."""
    problems = []
    ids: dict[str, int] = {}
    solutions = set()
    for cell in nbk.code_cells(nb):
        meta = nbk.nbgrader_meta(cell)
        gid = meta.get("grade_id")
        if not gid:
            continue
        ids[gid] = ids.get(gid, 0) + 1
        if nbk.is_solution_cell(cell) and nbk.split_id(gid):
            solutions.add(gid)
            try:
                tree = ast.parse(nbk.strip_magics(nbk.source(cell)))
            except SyntaxError as err:
                problems.append(f"{name}: solution cell {gid!r} is not valid Python: {err}")
                continue
            if not any(isinstance(n, ast.FunctionDef) and n.name == gid for n in tree.body):
                problems.append(f"{name}: solution cell {gid!r} does not define {gid}()")
            if "BEGIN SOLUTION" not in nbk.source(cell):
                problems.append(f"{name}: solution cell {gid!r} has no ### BEGIN SOLUTION")
    tests, warnings = nbk.graded_tests(nb)
    problems += [f"{name}: {w}" for w in warnings]
    for t in tests:
        if t.solution_id not in solutions:
            problems.append(f"{name}: test {t.grade_id!r} has no solution cell {t.solution_id!r}")
        if t.points <= 0:
            problems.append(f"{name}: test {t.grade_id!r} is worth no points")
    problems += [f"{name}: grade_id {g!r} used {n} times" for g, n in ids.items() if n > 1]
    return problems


def release_notebook(src: Path, dst: Path, config=None) -> None:
    import nbformat

    config = config if config is not None else load_config()
    nb = nbformat.read(str(src), as_version=4)
    resources = {"nbgrader": {"notebook": src.stem, "assignment": src.parent.name},
                 "unique_key": src.stem}
    for pp in preprocessors(config):
        if getattr(pp, "enabled", True):
            nb, resources = pp.preprocess(nb, resources)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)       # whatever kernel the instructor ran
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    text = nbformat.writes(nb)
    if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text:
        raise RuntimeError(f"{src}: a solution or hidden-test region survived the release")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)


def nbgrader_source(config, root: Path = COURSE_ROOT) -> Path:
    """nbgrader's source folder according to ``config`` (default ``<root>/nbgrader/source``)."""
    course = config.CourseDirectory.get("root") or str(Path(root) / "nbgrader")
    return Path(course) / (config.CourseDirectory.get("source_directory") or "source")


def stage(solutions: Path, source: Path, log=print) -> list[Path]:
    """Copy solution notebooks into nbgrader's ``source/<assignment>/`` layout."""
    import shutil

    staged = []
    for f in sorted(Path(solutions).rglob("*.ipynb")):
        if ".ipynb_checkpoints" in f.parts:
            continue
        rel = f.relative_to(solutions)
        dst = source / (rel if len(rel.parts) > 1 else Path(f.stem) / f.name)
        if not dst.exists() or dst.read_bytes() != f.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst)
            if log:
                log(f"staged {dst}")
        staged.append(dst)
    return staged


def release(solutions: Path, notebooks: Path, root: Path = COURSE_ROOT, log=print,
            nbgrader: bool = True) -> list[Path]:
    """Write the learner version of every solution notebook (and, with ``nbgrader``, stage
    the solutions as nbgrader's source); returns the learner notebooks written."""
    config = load_config(root)
    sources = sorted(f for f in Path(solutions).rglob("*.ipynb")
                     if ".ipynb_checkpoints" not in f.parts)
    problems = []
    for f in sources:
        try:
            problems += lint(nbk.load(f), str(f.relative_to(solutions)))
        except nbk.NotebookError as err:
            problems.append(str(err))
    if problems:
        raise ValueError("solution notebooks break the convention:\n  " + "\n  ".join(problems))
    written = []
    for f in sources:
        dst = Path(notebooks) / f.relative_to(solutions)
        release_notebook(f, dst, config)
        written.append(dst)
        if log:
            log(f"released {dst}")
    if nbgrader:
        stage(solutions, nbgrader_source(config, root), log)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop release", description=__doc__.split("\n")[0])
    ap.add_argument("--solutions", default=str(COURSE_ROOT / "solutions"))
    ap.add_argument("--out", default=str(COURSE_ROOT / "notebooks"))
    ap.add_argument("--root", default=str(COURSE_ROOT), help="folder with nbgrader_config.py")
    ap.add_argument("--no-nbgrader", action="store_true",
                    help="do not stage the solutions as nbgrader's source folder")
    a = ap.parse_args(argv)
    try:
        written = release(Path(a.solutions), Path(a.out), Path(a.root),
                          nbgrader=not a.no_nbgrader)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    if not written:
        print(f"no solution notebooks under {a.solutions}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
