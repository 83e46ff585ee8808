"""The class hub of deploy/vm/ for the tests: setup.sh run into a temporary prefix on this
machine, the hub started from the systemd unit's command line on 127.0.0.1, throwaway Unix
accounts removed afterwards. Used by test_deploy_vm.py, test_deploy_load.py and
test_browser.py.

Needs root (accounts), bubblewrap and npm (configurable-http-proxy): :func:`prerequisites` skips
with the reason on a laptop without them, and fails on CI.
"""

import contextlib
import csv
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import require
from hub_client import HubUser

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "deploy" / "vm" / "setup.sh"
VENV = Path(sys.prefix)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prerequisites() -> None:
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
        self.port = free_port()
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
               "CVW_HUB_PORT": str(free_port()), "CVW_PROXY_API_PORT": str(free_port()),
               "CVW_FORMGRADER_PORT": str(free_port())}
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
        uids = set()
        for name in [*self.learners, self.grader, self.instructor]:
            with contextlib.suppress(KeyError):
                uids.add(pwd.getpwnam(name).pw_uid)
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        # what their killed kernels left in the system's temporary folder (TensorFlow's
        # autograph sources, removed only when a kernel exits normally) goes with the accounts
        for entry in Path("/tmp").iterdir():
            with contextlib.suppress(OSError):
                if entry.lstat().st_uid in uids:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()


def public_tmp() -> Path:
    """A folder the class's accounts can reach (pytest's own is its owner's alone)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cv-workshop-hub-"))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def running_hub(learners: int = 3):
    """A started :class:`Hub` (after :func:`prerequisites`), closed and removed afterwards."""
    prerequisites()
    tmp = public_tmp()
    h = Hub(tmp, learners=learners)
    try:
        assert h.first.returncode == 0, h.first.stdout + h.first.stderr
        h.start()
        yield h
    finally:
        h.close()
        shutil.rmtree(tmp, ignore_errors=True)
