"""A learner's warm sandboxed interpreter (the zygote) runs several of their tests at once, and a
test that hangs, floods or crashes costs that test only, never the learner's other tests."""

import os
import threading
import time

import numpy as np
import pytest
from conftest import require, require_sandbox

from workshop.exercises import get
from workshop.grading import notebook as nbk
from workshop.grading.runner import Limits, run_program
from workshop.grading.zygote import session_for

pytestmark = pytest.mark.xdist_group("attacks")

IOU = ("import numpy as np\n"
       "def f(a, b):\n"
       "    a, b = np.asarray(a, float), np.asarray(b, float)\n"
       "    lt = np.maximum(a[:, None, :2], b[None, :, :2])\n"
       "    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])\n"
       "    inter = np.clip(rb - lt, 0, None).prod(-1)\n"
       "    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])\n"
       "    union = area(a)[:, None] + area(b)[None, :] - inter\n"
       "    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)\n")

# a hang that leaves a sleeping grandchild behind, marked so that the test can look for it
HANG = ("import subprocess, sys\n"
        "def f(a, b):\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', "
        "'zygote-hang-marker'])\n"
        "    while True:\n        pass\n")


@pytest.fixture
def session():
    sandbox = require_sandbox()
    require(os.geteuid() == 0, "root (each learner's warm sandbox forks tests with uids of "
                               "their own)")
    zygote = session_for(sandbox)
    yield zygote
    zygote.close()


def _run(src, session, wall=30.0):
    cases = get("iou").cases(public_only=True)[:3]
    program = nbk.Program(imports=[], cells=[("f", src)], function="f")
    return run_program(program, cases, "numpy", limits=Limits(wall=wall),
                       sandbox=session.sandbox, session=session), cases


def _marked_processes() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"zygote-hang-marker" in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_hang_beside_a_good_answer_costs_only_itself(session):
    runs = {}

    def grade(name, src, wall):
        runs[name] = _run(src, session, wall)

    threads = [threading.Thread(target=grade, args=("hang", HANG, 4.0)),
               threading.Thread(target=grade, args=("good", "import time\ntime.sleep(1)\n" + IOU,
                                                    60.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    hang, _ = runs["hang"]
    good, cases = runs["good"]
    assert hang.status == "timeout" and hang.seconds < 20, hang
    assert good.status == "ok", good.message
    iou = get("iou")
    assert all(iou.compare(ran.output, iou.expected(case)) is None
               for case, ran in zip(cases, good.cases))
    time.sleep(0.5)
    assert _marked_processes() == []          # the hang's grandchild went with it
    assert session.starts == 1                # the sandbox itself was never restarted
    again, _ = _run(IOU, session)
    assert again.status == "ok" and session.starts == 1


def test_many_tests_at_once_each_get_their_own_answer(session):
    results = {}

    def grade(k):
        # each returns a constant of its own: answers must not cross between tests
        results[k] = _run(f"import numpy as np\ndef f(a, b):\n    return np.full((len(a), "
                          f"len(b)), {k}.0)\n", session)[0]

    threads = [threading.Thread(target=grade, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for k, run in results.items():
        assert run.status == "ok", run.message
        assert all(np.all(c.output == k) for c in run.cases)
    assert session.starts == 1


def test_a_sandbox_that_dies_mid_test_is_a_crash_and_the_next_test_starts_anew(session):
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        run=_run("import time\ndef f(a, b):\n    time.sleep(30)\n", session)[0]))
    thread.start()
    deadline = time.monotonic() + 60
    while not session._gen or not session._gen.pending:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    session.stop()                            # what the kernel's OOM killer would do
    thread.join(60)
    assert result["run"].status == "crashed", result["run"]
    after, _ = _run(IOU, session)
    assert after.status == "ok" and session.starts == 2


def test_a_sandbox_that_cannot_start_says_so(session, monkeypatch):
    monkeypatch.setattr(session.sandbox, "zygote_command",
                        lambda argv, jobs: ["/bin/false"])
    session.stop()
    run, _ = _run(IOU, session)
    assert run.status == "failed" and "could not start" in run.message


def test_tests_starting_at_once_share_one_view_and_one_uid_pool():
    """The staged view and the uid pool are made once, however many tests start together
    (a second view would be removed under the test that uses it)."""
    from concurrent.futures import ThreadPoolExecutor

    from workshop.grading.sandbox import Sandbox

    with Sandbox("userns") as sandbox:
        with ThreadPoolExecutor(8) as pool:
            views = list(pool.map(lambda _: sandbox.view, range(8)))
        assert len({id(v) for v in views}) == 1
        assert views[0].runner.exists()
    with Sandbox("root") as sandbox:
        with ThreadPoolExecutor(8) as pool:
            uids = list(pool.map(lambda _: sandbox.acquire_uid(), range(64)))
        assert len(set(uids)) == 64


@pytest.mark.parametrize("attack", [
    "import os, signal\ndef f(a, b):\n    os.kill(-1, signal.SIGKILL)\n",
    "import os\ndef f(a, b):\n    os.kill(1, 9)\n    os.kill(os.getppid(), 9)\n",
    ("import os\ntime = __import__('time')\ndef f(a, b):\n    time.sleep(0.5)\n"
     "    others = [d for d in os.listdir('/tmp') if d != f't{os.getuid()}']\n"
     "    assert others, 'no neighbour yet'\n"
     "    return float(len([os.listdir('/tmp/' + d) for d in others]))\n"),
], ids=["kills everything it can", "kills the sandbox's init and the zygote",
        "reads the neighbour's /tmp"])
def test_an_attack_beside_a_good_answer_costs_the_neighbour_nothing(session, attack):
    runs = {}

    def grade(name, src):
        runs[name] = _run(src, session)

    threads = [threading.Thread(target=grade, args=("attack", attack)),
               threading.Thread(target=grade, args=("good", "import time\ntime.sleep(1)\n" + IOU))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    good, cases = runs["good"]
    iou = get("iou")
    assert good.status == "ok", good.message
    assert all(iou.compare(ran.output, iou.expected(case)) is None
               for case, ran in zip(cases, good.cases))
    attack_run, _ = runs["attack"]
    assert not any(c.status == "ok" for c in attack_run.cases), attack_run
    assert session.starts == 1
