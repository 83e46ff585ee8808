"""The class hub of deploy/vm/, brought up by setup.sh on this machine's loopback (throwaway
accounts, removed afterwards), and used as a class would use it: log in, spawn, run a cell, and
the whole nbgrader cycle through the hub (release, fetch, edit, submit, collect, autograde with
the sandboxed grader, feedback, fetch feedback), with learners kept out of each other's work,
the solutions and the gradebook.

The hub comes from tests/class_hub.py. Needs root (accounts), bubblewrap and npm
(configurable-http-proxy): skipped with the reason on a laptop without them, a failure on CI.
"""

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from class_hub import ROOT, SETUP, prerequisites, running_hub
from graded_submissions import builder
from hub_client import HubUser

pytestmark = pytest.mark.xdist_group("class-hub")   # one hub for the module, on one worker


@pytest.fixture(scope="module")
def hub():
    with running_hub() as h:
        yield h


# == setup.sh ====================================================================================
def test_setup_is_idempotent(hub):
    assert hub.second.returncode == 0, hub.second.stderr
    assert "nothing changed" in hub.second.stdout, hub.second.stdout
    assert "created" not in hub.second.stdout and "installing" not in hub.second.stdout


def test_setup_lays_out_a_class(hub):
    course = hub.prefix / "course"
    assert (course / "notebooks").is_dir() and not (course / "solutions").exists()
    assert oct(hub.state.joinpath("hub.env").stat().st_mode & 0o777) == "0o600"
    for name in [*hub.learners, hub.grader, hub.instructor]:
        home = Path(os.path.expanduser(f"~{name}"))
        assert oct(home.stat().st_mode & 0o777) == "0o700" and home.stat().st_uid != 0
    exchange = hub.state / "exchange"
    assert exchange.stat().st_mode & 0o1777 == 0o1777
    unit = (hub.state / "cv-workshop-hub.service").read_text()
    assert "ExecStart=" in unit and "EnvironmentFile=" in unit and "[Install]" in unit


def test_setup_refuses_plain_http_unless_asked(tmp_path):
    prerequisites()
    args = [str(SETUP), "--accounts", "/dev/null", "--prefix", str(tmp_path / "p"),
            "--state", str(tmp_path / "s"), "--no-systemd"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "https-cert" in proc.stderr


# == logging in, spawning, running =================================================================
def test_wrong_password_is_refused(hub):
    with pytest.raises(PermissionError):
        HubUser(hub.base, hub.learners[0], "not-the-password")


def test_learners_spawn_and_run_a_cell_as_themselves(hub):
    for name in hub.learners:
        user = hub.user(name)
        user.start()
        out = user.run("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getcwd())")
        assert out.split()[0] == name, out
        listing = user.server("GET", "/api/contents/course").json()
        names = {item["name"] for item in listing["content"]}
        assert "03_iou_nms.ipynb" in names and not any("solution" in n for n in names)


def test_a_learners_work_survives_a_new_release(hub):
    name = hub.learners[0]
    home = Path(os.path.expanduser(f"~{name}"))
    mine = home / "course" / "03_iou_nms.ipynb"
    user = hub.user(name)
    user.start()
    mine.write_text(mine.read_text().replace("raise NotImplementedError()", "return 42", 1))
    user.stop()
    time.sleep(2)
    user.start()
    assert "return 42" in mine.read_text()


def test_learners_get_no_instructor_extensions(hub):
    user = hub.user(hub.learners[1])
    user.start()
    assert user.server("GET", "/formgrader").status_code == 404
    page = user.server("GET", f"/lab?token={user.token}")
    lab = page.text
    assert "@jupyter/nbgrader:formgrader" in lab and "@jupyter/nbgrader:create-assignment" in lab, (
        page.status_code, page.url, lab[:3000])
    assert "announcements" in lab   # the news pop-up is off


def test_the_formgrader_is_the_graders(hub):
    import requests

    grader = hub.user(hub.grader)
    page = grader.session.get(f"{hub.base}/services/formgrader/formgrader", timeout=60)
    assert page.status_code == 200 and "formgrader" in page.text.lower()
    assert "frame-ancestors 'self'" in page.headers.get("Content-Security-Policy", "")
    learner = hub.user(hub.learners[2])
    refused = learner.session.get(f"{hub.base}/services/formgrader/formgrader", timeout=60)
    assert refused.status_code == 403 or "formgrader" not in refused.url, refused.url
    assert requests.get(f"{hub.base}/services/formgrader/formgrader", timeout=30,
                        allow_redirects=False).status_code in (302, 303)


# == the nbgrader cycle through the hub ============================================================
def _nbgrader(user: HubUser, cwd: str, *args: str) -> str:
    code = ("import subprocess, sys\n"
            f"p = subprocess.run([sys.executable, '-m', 'nbgrader', *{list(args)!r}], cwd={cwd!r},"
            " capture_output=True, text=True)\n"
            "print('EXIT', p.returncode); print(p.stdout[-3000:]); print(p.stderr[-3000:])\n")
    out = user.run(code)
    assert "EXIT 0" in out, out
    return out


def test_the_nbgrader_cycle(hub):
    course = str(Path(os.path.expanduser(f"~{hub.instructor}")) / "cv-workshop")
    teacher = hub.user(hub.instructor)
    teacher.start()
    source = json.dumps(nbformat.writes(builder.build()))
    teacher.run(f"import os; os.makedirs({course!r} + '/source/ps1', exist_ok=True)\n"
                f"open({course!r} + '/source/ps1/ps1.ipynb', 'w').write(json.loads({source!r}))"
                .replace("import os;", "import os, json;"))
    _nbgrader(teacher, course, "generate_assignment", "ps1", "--force")
    _nbgrader(teacher, course, "release_assignment", "ps1", "--force")
    bodies = [dict(builder.SOLUTIONS), {("iou", "numpy"): builder.IOU_NUMPY}, {}]
    for name, body in zip(hub.learners, bodies):
        learner = hub.user(name)
        learner.start()
        home = os.path.expanduser(f"~{name}")
        _nbgrader(learner, home, "fetch_assignment", "ps1", "--course", "cv-workshop")
        edits = {f"{e}_{t}": b for (e, t), b in body.items()}
        learner.run(
            "import nbformat\n"
            f"path = {home!r} + '/ps1/ps1.ipynb'\n"
            "nb = nbformat.read(path, as_version=4)\n"
            f"edits = {edits!r}\n"
            "sigs = {'iou_numpy': '(boxes1, boxes2)', 'iou_loops': '(boxes1, boxes2)', "
            "'nms_numpy': '(boxes, scores, iou_threshold, max_output_size=None, "
            "score_threshold=None)'}\n"
            "for cell in nb.cells:\n"
            "    gid = cell.metadata.get('nbgrader', {}).get('grade_id')\n"
            "    if gid in edits:\n"
            "        cell.source = f'def {gid}{sigs[gid]}:\\n' + edits[gid]\n"
            "nbformat.write(nb, path)\n")
        _nbgrader(learner, home, "submit", "ps1", "--course", "cv-workshop")
    _nbgrader(teacher, course, "collect", "ps1")
    _nbgrader(teacher, course, "autograde", "ps1")
    _nbgrader(teacher, course, "generate_feedback", "ps1")
    _nbgrader(teacher, course, "release_feedback", "ps1")
    _nbgrader(teacher, course, "export")
    with open(Path(course) / "grades.csv", newline="") as f:
        rows = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader(f)}
    graded = Path(course) / "autograded" / hub.learners[0] / "ps1" / "ps1.ipynb"
    outputs = [o.get("text", o.get("evalue", "")) for c in nbformat.read(graded, as_version=4).cells
               if c.cell_type == "code" for o in c.get("outputs", [])] if graded.exists() else []
    assert [rows[n] for n in hub.learners] == [builder.TOTAL, 2.0, 0.0], (rows, outputs)
    for name in hub.learners:
        learner = hub.user(name)
        home = os.path.expanduser(f"~{name}")
        _nbgrader(learner, home, "fetch_feedback", "ps1", "--course", "cv-workshop")
        found = learner.run(f"import glob; print(glob.glob({home!r} + '/ps1/feedback/*/*.html'))")
        assert ".html" in found, found
    # nobody reads another's work, the solutions or the gradebook
    other = os.path.expanduser(f"~{hub.learners[1]}")
    probe = hub.user(hub.learners[0]).run(
        "import os\n"
        f"for p in [{other!r} + '/ps1/ps1.ipynb', {course!r} + '/source/ps1/ps1.ipynb', "
        f"{course!r} + '/gradebook.db', {str(ROOT / 'solutions')!r}]:\n"
        "    try:\n        open(p).read(1); print('READ', p)\n"
        "    except OSError as e:\n        print('refused', type(e).__name__)\n")
    assert "READ" not in probe, probe
