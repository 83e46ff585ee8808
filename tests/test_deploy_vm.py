"""The class hub of deploy/vm/, brought up by setup.sh on this machine's loopback (throwaway
accounts, removed afterwards), and used as a class would use it: log in, spawn, run a cell, and
the whole nbgrader cycle through the hub (release, fetch, edit, submit, collect, autograde with
the sandboxed grader, feedback, fetch feedback), with learners kept out of each other's work,
the solutions and the gradebook.

Needs root (accounts), bubblewrap and npm (configurable-http-proxy): skipped with the reason on a
laptop without them, a failure on CI.
"""

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import require
from graded_submissions import builder
from hub_client import HubUser

pytestmark = pytest.mark.xdist_group("class-hub")   # one hub for the module, on one worker
ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "deploy" / "vm" / "setup.sh"
VENV = Path(sys.prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prerequisites() -> None:
    require(os.geteuid() == 0, "root (the hub creates Unix accounts)")
    require(shutil.which("bwrap") is not None, "bubblewrap (the grader's sandbox)")
    require(shutil.which("npm") is not None, "npm (configurable-http-proxy)")
    require(Path("/usr/bin/python3").exists(), "a system python3 for the hub's venv")


class Hub:
    """setup.sh run twice into a temporary prefix, then the unit's command line started."""

    def __init__(self, tmp: Path, learners: int = 3):
        tag = secrets.token_hex(2)
        self.tmp = tmp
        self.learners = [f"cvl{tag}{k}" for k in range(learners)]
        self.grader, self.instructor = f"cvg{tag}", f"cvi{tag}"
        self.accounts = tmp / "accounts.csv"
        with open(self.accounts, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["username", "role"])
            w.writerows([(u, "learner") for u in self.learners])
            w.writerow([self.grader, "grader"])
            w.writerow([self.instructor, "instructor"])
        self.prefix, self.state = tmp / "opt", tmp / "srv"
        tmp.chmod(0o755)
        self.port = _free_port()
        self.args = [str(SETUP), "--accounts", str(self.accounts), "--prefix", str(self.prefix),
                     "--state", str(self.state), "--packages-from", str(VENV), "--no-systemd",
                     "--http", "--ip", "127.0.0.1", "--port", str(self.port)]
        self.first = subprocess.run(self.args, capture_output=True, text=True, timeout=900)
        self.second = subprocess.run(self.args, capture_output=True, text=True, timeout=900)
        self.proc = None

    def start(self, attempts: int = 3) -> None:
        """The unit's command line, restarted after a failed start as systemd's
        Restart=on-failure does (a managed service slow to answer on a busy machine makes
        JupyterHub exit)."""
        import requests

        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
               "CVW_HUB_PORT": str(_free_port()), "CVW_PROXY_API_PORT": str(_free_port()),
               "CVW_FORMGRADER_PORT": str(_free_port())}
        for line in (self.state / "hub.env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        unit = (self.state / "cv-workshop-hub.service").read_text()
        command = next(ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("ExecStart="))
        self.base = f"http://127.0.0.1:{self.port}"
        self.class_password = env["CVW_CLASS_PASSWORD"]
        self.admin_password = env["CVW_ADMIN_PASSWORD"]
        self.log = open(self.tmp / "hub.log", "ab")
        for _ in range(attempts):
            self.proc = subprocess.Popen(command.split(), env=env, cwd=self.state,
                                         stdout=self.log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            for _ in range(240):
                try:
                    if requests.get(f"{self.base}/hub/api", timeout=10).ok:
                        return
                except requests.RequestException:   # not listening yet, or busy starting
                    pass
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
            self._kill_leftovers()
            time.sleep(5)   # the unit's RestartSec
        raise RuntimeError("the hub did not start:\n" + (self.tmp / "hub.log").read_text()[-3000:])

    def user(self, name: str) -> HubUser:
        password = self.admin_password if name == self.instructor else self.class_password
        return HubUser(self.base, name, password)

    def _kill_leftovers(self) -> None:
        import psutil

        for proc in psutil.process_iter(["cmdline"]):   # the proxy and services live apart
            if any(str(self.prefix) in part for part in (proc.info["cmdline"] or [])):
                try:
                    proc.kill()
                except psutil.Error:
                    pass

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.log.close()
        self._kill_leftovers()
        for name in [*self.learners, self.grader, self.instructor]:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


def _public_tmp() -> Path:
    """A folder the class's accounts can reach (pytest's own is its owner's alone)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cv-workshop-hub-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def hub():
    _prerequisites()
    tmp = _public_tmp()
    h = Hub(tmp)
    try:
        assert h.first.returncode == 0, h.first.stdout + h.first.stderr
        h.start()
        yield h
    finally:
        h.close()
        shutil.rmtree(tmp, ignore_errors=True)


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
    _prerequisites()
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
