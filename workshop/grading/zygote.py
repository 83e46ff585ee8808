"""One learner's warm interpreter in the sandbox: a process per test, forked, not started.

Starting Python and importing TensorFlow costs seconds; doing it for every test makes grading a
class slow. So, when the grader runs as root, each learner gets one sandbox (see
:mod:`workshop.grading.sandbox`: no network, no view of the grader, the answers or the other
learners) whose first process, the *zygote*, imports numpy (and TensorFlow, when the learner's
notebooks use it) and then, for every test, forks a child that

* gets a uid of its own (from the grader's pool), no capabilities, no supplementary groups, and
  a fresh private ``/tmp/t<uid>`` (mode 0700) as its home and temporary folder;
* sees only its own job folder (``/jobs/<job>``, mode 0700, its uid's);
* has the runner's limits (memory beyond what the zygote had mapped, CPU, file size, processes);
* runs :func:`runner._child_main` (the same code as a one-shot run), its output going to pipes
  the grader passed for this test only.

Several tests of the same learner may run at once (one uid each). When a child exits, the zygote
kills every process of its uid (nothing a test starts outlives it), removes its ``/tmp`` folder
and reports the exit status. A test that hangs or floods its result channel is ended the same
way, by its uid, without touching the learner's other tests. A learner's code can signal or trace
none of the other processes (other uids), and never shares a process with another learner's code
(one sandbox per learner). If the zygote itself dies, its tests count as crashed and the next
test starts a new sandbox.

This file is also the zygote's script (run inside the sandbox, standard library + numpy).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

# after a test's time is up: how long its processes may take to be killed before the whole
# sandbox is
KILL_GRACE = 10.0


def session_for(sandbox, tensorflow: bool = False):
    """One learner's warm sandboxed interpreter, where the sandbox allows it (as root), started
    now in the background (``tensorflow``: imported before the first test); None: a new
    sandboxed process per test."""
    from .runner import child_env

    if sandbox.mode != "root":
        return None
    zygote = Zygote(sandbox, child_env())
    zygote.prepare(tensorflow)
    return zygote


class SandboxFailed(OSError):
    """The learner's sandboxed interpreter could not start."""


class _Generation:
    """One started zygote process: its socket and the tests sent to it and not yet answered."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket):
        self.proc, self.sock = proc, sock
        self.pending: set[int] = set()
        self.ready = False
        self.dead = False


class Zygote:
    """The grader's handle on one learner's sandboxed zygote (started on first use); safe to use
    from several threads, one test each."""

    def __init__(self, sandbox, env: dict[str, str]):
        import tempfile
        from pathlib import Path

        self.sandbox, self.env = sandbox, env
        self._outer = Path(tempfile.mkdtemp(prefix="workshop-jobs-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._outer), True)
        self.jobs = self._outer / "jobs"
        self.jobs.mkdir()
        self._outer.chmod(0o711)
        self.jobs.chmod(0o711)
        self._cond = threading.Condition()
        self._gen: _Generation | None = None
        self._codes: dict[int, int | str] = {}
        self._next_id = 0
        self._tensorflow = False
        self.starts = 0

    # -- lifetime ------------------------------------------------------------------------------
    def prepare(self, tensorflow: bool = False) -> None:
        """Start the sandbox now, without waiting for it (``tensorflow``: import it first)."""
        with self._cond:
            self._tensorflow = self._tensorflow or tensorflow
            self._ensure_started()

    def _ensure_started(self) -> _Generation:
        gen = self._gen
        if gen is None or gen.dead or gen.proc.poll() is not None:
            self._stop_locked()
            gen = self._gen = self._spawn()
        return gen

    def _spawn(self) -> _Generation:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-I", "-X", "faulthandler", "/grader/zygote.py",
                str(theirs.fileno())] + (["--tensorflow"] if self._tensorflow else [])
        try:
            proc = subprocess.Popen(
                self.sandbox.zygote_command(argv, self.jobs), env=self.env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, pass_fds=(theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.starts += 1
        gen = _Generation(proc, ours)
        threading.Thread(target=self._read_replies, args=(gen,), daemon=True).start()
        return gen

    def _read_replies(self, gen: _Generation) -> None:
        """The zygote's replies (``ready``, then one per finished test), until it ends."""
        while True:
            try:
                reply = gen.sock.recv(4096)
            except OSError:
                reply = b""
            with self._cond:
                if not reply:   # the zygote died (the OOM killer?) or was stopped
                    lost = -signal.SIGKILL if gen.ready else "no start"
                    for job_id in gen.pending:
                        self._codes[job_id] = lost
                    gen.pending.clear()
                    gen.dead = True
                    self._cond.notify_all()
                    return
                message = json.loads(reply)
                if message.get("ready"):
                    gen.ready = True
                    continue
                gen.pending.discard(message["id"])
                self._codes[message["id"]] = int(message["code"])
                self._cond.notify_all()

    def _stop_locked(self) -> None:
        gen, self._gen = self._gen, None
        if gen is None:
            return
        try:
            os.killpg(gen.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        gen.proc.wait()
        try:
            gen.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        """Kill the sandbox and everything in it; its unfinished tests count as crashed."""
        with self._cond:
            self._stop_locked()

    def close(self) -> None:
        self.stop()
        self._cleanup()

    # -- one test --------------------------------------------------------------------------------
    def start(self, job_name: str, uid: int, tier: str | None, result_fd: int, out_fd: int,
              warm_tensorflow: bool = False) -> _Test:
        """Fork the test's process (its output on ``result_fd`` and ``out_fd``)."""
        with self._cond:
            gen = self._ensure_started()
            job_id = self._next_id
            self._next_id += 1
            message = json.dumps({"id": job_id, "job": f"/jobs/{job_name}", "uid": uid,
                                  "tier": tier, "tensorflow": warm_tensorflow}).encode()
            gen.pending.add(job_id)
            try:
                socket.send_fds(gen.sock, [message], [result_fd, out_fd])
            except OSError:    # the zygote is gone already
                gen.pending.discard(job_id)
                self._codes[job_id] = -signal.SIGKILL if gen.ready else "no start"
        return _Test(self, gen, job_id)

    def _wait(self, job_id: int, timeout: float) -> int | str | None:
        with self._cond:
            self._cond.wait_for(lambda: job_id in self._codes, max(timeout, 0.01))
            return self._codes.pop(job_id, None)

    def _kill(self, gen: _Generation, job_id: int) -> None:
        with self._cond:
            if job_id in gen.pending and not gen.dead:
                try:
                    gen.sock.send(json.dumps({"kill": job_id}).encode())
                except OSError:
                    pass


class _Test:
    """One test running in a zygote: :meth:`wait` for it, :meth:`stop` it early."""

    def __init__(self, zygote: Zygote, gen: _Generation, job_id: int):
        self.zygote, self.gen, self.job_id = zygote, gen, job_id

    def wait(self, timeout: float) -> int | None:
        """The test's exit code (negative: killed by that signal); None when ``timeout``
        seconds passed first (its processes are then killed)."""
        code = self.zygote._wait(self.job_id, timeout)
        if code is None:
            self.stop()
            if self.zygote._wait(self.job_id, KILL_GRACE) is None:
                with self.zygote._cond:    # the zygote does not answer: end the sandbox
                    if self.zygote._gen is self.gen:
                        self.zygote._stop_locked()
            return None
        if code == "no start":
            raise SandboxFailed("the sandboxed interpreter did not start")
        return int(code)

    def stop(self) -> None:
        """End the test now (every process of its uid)."""
        self.zygote._kill(self.gen, self.job_id)


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
    shutil.rmtree(path, ignore_errors=True)


def _fork_test(job: dict, fds: list[int], sock: socket.socket, wake: tuple[int, int],
               child_main) -> int:
    """Start one test's process; its pid."""
    uid = int(job["uid"])
    result_fd, out_fd = fds
    tmp = f"/tmp/t{uid}"
    _remove(tmp)
    os.mkdir(tmp, 0o700)
    os.chown(tmp, uid, uid)
    pid = os.fork()
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            for fd in wake:
                os.close(fd)
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
    return pid


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap(running: dict[int, tuple[int, int]], sock: socket.socket) -> None:
    """Report every finished test (pid in ``running``), after killing its uid's processes and
    removing its ``/tmp`` folder."""
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid not in running:
            continue
        job_id, uid = running.pop(pid)
        _sweep(uid)
        _remove(f"/tmp/t{uid}")
        sock.send(json.dumps({"id": job_id, "code": os.waitstatus_to_exitcode(status)}).encode())


def _serve(sock_fd: int, tensorflow: bool) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numpy  # noqa: F401  (warm: every test needs it)
    from runner import _child_main

    tf_loaded = False

    def load_tensorflow() -> None:
        nonlocal tf_loaded
        if not tf_loaded:
            tf_loaded = True
            try:
                import tensorflow  # noqa: F401  (before any learner code: forked warm)
            except Exception:  # noqa: BLE001, S110  (the test will say what is wrong)
                pass

    if tensorflow:
        load_tensorflow()
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.send(b'{"ready": true}')
    running: dict[int, tuple[int, int]] = {}     # pid -> (test id, uid)
    while True:
        try:
            readable, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            _drain(wake_r)
        _reap(running, sock)
        if sock not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, 65536, 2)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if "kill" in request:
            uid = next((u for j, u in running.values() if j == request["kill"]), None)
            if uid is not None:
                _sweep(uid)
            continue
        if request.get("tier") == "tf" or request.get("tensorflow"):
            load_tensorflow()
        pid = _fork_test(request, fds, sock, (wake_r, wake_w), _child_main)
        running[pid] = (request["id"], int(request["uid"]))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), "--tensorflow" in sys.argv[2:])
