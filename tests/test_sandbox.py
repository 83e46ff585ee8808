"""The operating-system sandbox of `workshop grade`: crafted attacks on the grader (one per kind,
tests/graded_submissions/attacks.py), graded as a class beside an honest learner, and the
sandbox's promises tested live (`--check-sandbox`)."""

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from conftest import require_sandbox
from graded_submissions import attacks, builder

from workshop.grading.sandbox import ANSWER_MODULES, LEARNER_SAFE, PACKAGE_DIR, Sandbox

pytestmark = pytest.mark.xdist_group("attacks")   # one class run for the module
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# the grader, reporting its own peak memory when it ends
LAUNCHER = ("import resource, runpy, sys\n"
            "sys.argv = ['workshop'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('workshop', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "sys.exit(code)\n")


def _tree_digest(*folders: Path) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


def _listener():
    """A TCP server on 127.0.0.1 that records every connection it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                seen.append(conn.recv(100))
                conn.close()
            except OSError:
                continue
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, seen, stop


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """Every attack, an honest learner and the numpy-patching cell, graded as one class."""
    require_sandbox()
    tmp = tmp_path_factory.mktemp("class")
    sol = tmp / "solutions" / builder.ASSIGNMENT / builder.NOTEBOOK
    sol.parent.mkdir(parents=True)
    nbformat.write(builder.build(), str(sol))
    subs, out = tmp / "subs", tmp / "results"
    marker = f"workshop-attack-{uuid.uuid4().hex[:8]}"
    server, seen, stop = _listener()
    places = {"course": str(ROOT), "results": str(out), "subs": str(subs),
              "port": server.getsockname()[1], "marker": marker}
    notebooks = {name: attacks.build_attack(name, **places) for name in attacks.ATTACKS}
    notebooks["honest"] = builder.build()
    notebooks["patches_numpy"] = attacks.patches_numpy_in_a_solution_cell()
    for name, nb in notebooks.items():
        path = subs / name / builder.NOTEBOOK
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
    course_before = _tree_digest(ROOT / "workshop" / "reference", ROOT / "solutions")
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-m", "workshop", "grade", str(subs), "--solutions",
                           str(tmp / "solutions"), "--out", str(out), "--jobs", "2",
                           "--timeout", "20"], capture_output=True, text=True, env=ENV,
                          cwd=tmp, timeout=900, check=False)
    seconds = time.monotonic() - t0
    results_after = _tree_digest(out)
    time.sleep(3)   # long enough for a surviving daemon to strike
    stop.set()
    server.close()
    return {"proc": proc, "out": out, "seen": seen, "marker": marker, "seconds": seconds,
            "results_after": results_after,
            "course_before": course_before, "names": list(notebooks)}


def _rows(out):
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def _record(out, student, test):
    return json.loads((out / "records" / student / "ps1" / f"{test}.json").read_text())


def test_the_grader_finishes_normally(class_run):
    proc = class_run["proc"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert set(_rows(class_run["out"])) == set(class_run["names"])


@pytest.mark.parametrize("name", list(attacks.ATTACKS))
def test_an_attack_earns_nothing_and_costs_nobody_else(class_run, name):
    rows = _rows(class_run["out"])
    row = rows[name]
    record = _record(class_run["out"], name, attacks.TARGET)
    assert float(row[attacks.TARGET]) == 0.0, record
    for test, points in builder.POINTS.items():
        if test != attacks.TARGET:
            assert float(row[test]) == points, (test, _record(class_run["out"], name, test))
    assert float(rows["honest"]["total"]) == builder.TOTAL


def test_patching_numpy_costs_only_that_cell(class_run):
    row = _rows(class_run["out"])["patches_numpy"]
    assert float(row["test_iou_loops"]) == 0.0
    assert float(row["test_iou_numpy"]) == 2.0 and float(row["test_nms_numpy"]) == 3.0
    msg = _record(class_run["out"], "patches_numpy", "test_iou_loops")["message"]
    assert "np.allclose" in msg


def test_nothing_outside_the_sandbox_changed(class_run):
    out = class_run["out"]
    assert _tree_digest(out) == class_run["results_after"], "results changed after the run"
    assert "hacked" not in (out / "grades.csv").read_text()
    assert _tree_digest(ROOT / "workshop" / "reference", ROOT / "solutions") == \
        class_run["course_before"]
    assert not list(Path("/tmp").glob(class_run["marker"] + "*"))
    assert not list(Path("/tmp").glob("fill*"))


def test_no_connection_left_the_sandbox(class_run):
    assert class_run["seen"] == []


def test_the_result_flood_is_refused_without_the_grader_growing(class_run, tmp_path):
    record = _record(class_run["out"], "floods_the_result_channel", attacks.TARGET)
    assert record["status"] in ("failed", "error"), record
    assert "results" in record["message"] or "output" in record["message"], record["message"]
    # the grader's own memory, grading the flood alone beside an honest learner
    subs = class_run["out"].parent / "subs"
    proc = subprocess.run([PY, "-c", LAUNCHER, "grade", str(subs / "floods_the_result_channel"),
                           str(subs / "honest"), "--solutions",
                           str(class_run["out"].parent / "solutions"), "--out",
                           str(tmp_path / "out"), "--jobs", "2"], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False)
    peak_mb = float(proc.stdout.rsplit("PEAK_KB", 1)[-1].split()[0]) / 1024
    # the flood sends 300 MB and a zip declaring a 5.6 GB array: loaded without the caps, the
    # grader would pass 5.6 GB (it reached 5.5 GB before them)
    assert peak_mb < 3000, f"the grader peaked at {peak_mb:.0f} MB"


def test_the_hidden_cases_seed_is_secret_and_recorded(class_run):
    out = class_run["out"]
    run = json.loads((out / "run.json").read_text())
    assert isinstance(run["seed"], int) and run["sandbox"] in ("root", "userns")
    assert oct((out / "run.json").stat().st_mode & 0o777) == "0o600"
    feedback = "".join(p.read_text() for p in (out / "feedback").rglob("*.*"))
    assert str(run["seed"]) not in feedback


def test_a_resumed_run_keeps_what_was_graded(class_run, tmp_path):
    out = class_run["out"]
    subs = out.parent / "subs"
    proc = subprocess.run([PY, "-m", "workshop", "grade", str(subs / "honest"),
                           str(subs / "tmp_reader"), "--solutions",
                           str(out.parent / "solutions"), "--out", str(out), "--resume"],
                          capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(kept)") == 2, proc.stdout


# == the sandbox's promises, live =============================================================
@pytest.mark.parametrize("mode", ["best", "userns"])
def test_check_sandbox_shows_every_item_blocked(mode):
    sandbox = require_sandbox()
    from workshop.grading.probe import check_sandbox

    if mode == "userns":
        sandbox = Sandbox("userns", bwrap=sandbox.bwrap)
    with sandbox:
        rows = check_sandbox(sandbox, log=None)
    open_items = [(item, why) for item, held, why in rows if not held]
    if mode == "userns":   # a user namespace maps the sandbox's uid to the grader's own
        assert [item for item, _ in open_items] == ["identity"], open_items
    else:
        assert not open_items, open_items
        assert sandbox.mode == "root" or os.geteuid() != 0


def test_check_sandbox_command_line():
    require_sandbox()
    proc = subprocess.run([PY, "-m", "workshop", "grade", "--check-sandbox"], capture_output=True,
                          text=True, env=ENV, timeout=300, check=False)
    assert "network" in proc.stdout and "blocked" not in proc.stderr
    if os.geteuid() == 0:
        assert proc.returncode == 0 and "OPEN" not in proc.stdout, proc.stdout


def test_without_a_sandbox_grading_is_refused(tmp_path):
    env = {**ENV, "PATH": str(tmp_path)}   # no bwrap on PATH
    nb = tmp_path / "alice" / builder.NOTEBOOK
    nb.parent.mkdir()
    nbformat.write(builder.build(), str(nb))
    proc = subprocess.run([PY, "-m", "workshop", "grade", str(nb), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2 and "bubblewrap" in proc.stderr and "--no-sandbox" in proc.stderr
    assert not (tmp_path / "o" / "grades.csv").exists()


# == what the sandbox shows of the package ======================================================
def test_every_module_takes_a_side():
    """A new module is hidden until it is declared learner-safe: each top-level entry of the
    package is either shown or an answer / grader / tool module that the sandbox leaves out."""
    hidden_on_purpose = {"reference", "kernels", "exercises", "grading", "bench", "tools",
                         "evaluation.py", "checkpoint", "train.py", "toolkit",
                         "tracks.py",   # the grader's and the listing's: reads the registry
                         "__main__.py"}
    entries = {p.name for p in PACKAGE_DIR.iterdir() if p.name != "__pycache__"}
    assert entries - set(LEARNER_SAFE) - hidden_on_purpose == set()
    for module in ANSWER_MODULES:
        top = module.split(".")[1]
        assert top not in LEARNER_SAFE and f"{top}.py" not in LEARNER_SAFE


def test_learner_safe_modules_do_not_import_the_answers_at_import_time():
    code = ("import sys, importlib\n"
            "for m in ['workshop.conventions', 'workshop.course', 'workshop.vis', "
            "'workshop.diagrams', 'workshop.data', 'workshop.models']:\n"
            "    importlib.import_module(m)\n"
            "bad = [m for m in sys.modules if m.startswith(('workshop.reference', "
            "'workshop.exercises', 'workshop.bench', 'workshop.evaluation'))]\n"
            "print(bad)\n")
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=ENV,
                          timeout=300, check=False)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_the_words_for_not_implemented_agree():
    from workshop import course
    from workshop.grading.check import NOT_IMPLEMENTED
    from workshop.grading.sandbox import GRADING_STUB

    assert course.NOT_IMPLEMENTED == NOT_IMPLEMENTED
    assert f'NOT_IMPLEMENTED = "{NOT_IMPLEMENTED}"' in GRADING_STUB
