"""One learner's warm interpreter in the sandbox: a process per test, forked, not started.

Starting Python and importing TensorFlow costs seconds; doing it for every test makes grading a
class slow. So, when the grader runs as root, each learner gets one sandbox (see
:mod:`workshop.grading.sandbox`: no network, no view of the grader, the answers or the other
learners) whose first process, the *zygote*, imports numpy (and TensorFlow, before the first TF
test) and then, for every test, forks a child that

* gets a uid of its own (from the grader's pool), no capabilities, no supplementary groups, and
  a fresh private ``/tmp/t<uid>`` (mode 0700) as its home and temporary folder;
* sees only its own job folder (``/jobs/<job>``, mode 0700, its uid's);
* has the runner's limits (memory beyond what the zygote had mapped, CPU, file size, processes);
* runs :func:`runner._child_main` (the same code as a one-shot run), its output going to pipes
  the grader passed for this test only.

When the child exits, the zygote kills every process of that uid (nothing a test starts
outlives it), removes its ``/tmp`` folder and reports the exit status. A learner's code can
signal or trace none of the other processes (other uids), and never shares a process with
another learner's code (one sandbox per learner). A hang or a result too large kills the whole
sandbox; the next test starts a new one.

This file is also the zygote's script (run inside the sandbox, standard library + numpy).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

READY_TIMEOUT = 120.0


def session_for(sandbox):
    """One learner's warm sandboxed interpreter, where the sandbox allows it (as root);
    None: a new sandboxed process per test."""
    from .runner import child_env

    return Zygote(sandbox, child_env()) if sandbox.mode == "root" else None


class Zygote:
    """The grader's handle on one learner's sandboxed zygote (started on first use)."""

    def __init__(self, sandbox, env: dict[str, str]):
        import tempfile
        from pathlib import Path

        self.sandbox, self.env = sandbox, env
        self._outer = Path(tempfile.mkdtemp(prefix="workshop-jobs-"))
        self.jobs = self._outer / "jobs"
        self.jobs.mkdir()
        self._outer.chmod(0o711)
        self.jobs.chmod(0o711)
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.starts = 0

    # -- lifetime ------------------------------------------------------------------------------
    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-X", "faulthandler", "/grader/zygote.py",
                str(theirs.fileno())]
        try:
            self.proc = subprocess.Popen(
                self.sandbox.zygote_command(argv, self.jobs), env=self.env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.sock = ours
        self.starts += 1
        self.sock.settimeout(READY_TIMEOUT)
        try:
            ready = self.sock.recv(4096)
        except OSError:
            ready = b""
        if not ready:
            self.stop()
            raise OSError("the sandboxed interpreter did not start")

    def stop(self) -> None:
        """Kill the sandbox and everything in it (a hang, a flood, or the end)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self._outer, ignore_errors=True)

    # -- one test --------------------------------------------------------------------------------
    def start(self, job_name: str, uid: int, tier: str | None, result_fd: int, out_fd: int,
              warm_tensorflow: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        message = json.dumps({"job": f"/jobs/{job_name}", "uid": uid, "tier": tier,
                              "tensorflow": warm_tensorflow}).encode()
        socket.send_fds(self.sock, [message], [result_fd, out_fd])

    def wait(self, timeout: float) -> int | None:
        """The test's exit code (negative: killed by that signal); None when ``timeout``
        seconds passed first (the sandbox is then killed)."""
        self.sock.settimeout(max(timeout, 0.01))
        try:
            reply = self.sock.recv(4096)
        except (TimeoutError, socket.timeout):
            self.stop()
            return None
        except OSError:
            reply = b""
        if not reply:  # the zygote itself died (the OOM killer?): a crash of this test
            self.stop()
            return -signal.SIGKILL
        return int(json.loads(reply)["code"])


# == inside the sandbox ==========================================================================
def _live_processes(uid: int) -> int:
    """How many processes of ``uid`` are alive (zombies excluded) in this sandbox."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid and \
                not fields.get("State", "").strip().startswith(("Z", "X")):
            count += 1
    return count


def _sweep(uid: int) -> None:
    """Kill every process of ``uid``: a helper with that uid sends ``kill(-1, SIGKILL)``, which
    reaches all of them at once, until none is left (a fork bomb is capped by RLIMIT_NPROC)."""
    for _ in range(100):
        if not _live_processes(uid):
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.002)


def _remove(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _run_one(job: dict, fds: list[int], sock: socket.socket, child_main) -> int:
    uid = int(job["uid"])
    result_fd, out_fd = fds
    tmp = f"/tmp/t{uid}"
    _remove(tmp)
    os.mkdir(tmp, 0o700)
    os.chown(tmp, uid, uid)
    pid = os.fork()
    if pid == 0:
        try:
            sock.close()
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            os.close(out_fd)
            os.setsid()
            os.environ.update(HOME=tmp, TMPDIR=tmp, MPLCONFIGDIR=tmp)
            os.chdir(tmp)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)   # every capability is gone with uid 0
            child_main(job["job"], result_fd)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(0)
    os.close(result_fd)
    os.close(out_fd)
    _, status = os.waitpid(pid, 0)
    _sweep(uid)
    _remove(tmp)
    return os.waitstatus_to_exitcode(status)


def _serve(sock_fd: int) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy  # noqa: F401  (warm: every test needs it)
    from runner import _child_main

    sock = socket.socket(fileno=sock_fd)
    sock.send(b'{"ready": true}')
    tf_loaded = False
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 65536, 2)
        except OSError:
            return
        if not message:
            return
        job = json.loads(message)
        if (job.get("tier") == "tf" or job.get("tensorflow")) and not tf_loaded:
            tf_loaded = True
            try:
                import tensorflow  # noqa: F401  (before any learner code: forked warm)
            except Exception:  # noqa: BLE001, S110  (the test will say what is wrong)
                pass
        code = _run_one(job, fds, sock, _child_main)
        sock.send(json.dumps({"code": code}).encode())


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
