"""A class arriving at once, on 127.0.0.1, bounded in count and time: 30 learners log in and
spawn together and each runs a cell; three of them also run notebook 3's setup cell (a
TensorFlow kernel). Prints spawn times (median, max) and memory per idle and per TensorFlow
learner (run with -s; deploy/vm/README.md's sizing comes from them)."""

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psutil
import pytest
from class_hub import Hub, prerequisites, public_tmp

# the class's arrival and the browser tests are the suite's heaviest: one after the other, on one
# worker, so that neither measures the other
pytestmark = pytest.mark.xdist_group("browser")
ROOT = Path(__file__).resolve().parents[1]
LEARNERS = 30
WITH_TENSORFLOW = 3


def _memory_mb(username: str) -> float:
    total = 0
    for proc in psutil.process_iter(["username", "memory_info"]):
        if proc.info["username"] == username and proc.info["memory_info"] is not None:
            total += proc.info["memory_info"].rss
    return total / 2**20


@pytest.mark.slow
def test_thirty_learners_at_once():
    import shutil

    prerequisites()
    tmp = public_tmp()
    hub = Hub(tmp, learners=LEARNERS)
    try:
        assert hub.first.returncode == 0, hub.first.stderr
        hub.start()
        t0 = time.monotonic()

        def arrive(name):
            user = hub.user(name)
            return user, user.start(timeout=600)

        with ThreadPoolExecutor(max_workers=LEARNERS) as pool:
            arrived = list(pool.map(arrive, hub.learners))
        all_spawned = time.monotonic() - t0
        spawn = [s for _, s in arrived]
        idle = [_memory_mb(u.name) for u, _ in arrived]
        with ThreadPoolExecutor(max_workers=5) as pool:
            outs = list(pool.map(lambda a: a[0].run("print(6 * 7)", timeout=300), arrived))
        assert all(o.strip() == "42" for o in outs), outs
        setup = next(c.source for c in nbformat.read(
            ROOT / "notebooks" / "03_iou_nms.ipynb", as_version=4).cells if c.cell_type == "code")
        setup = "\n".join(ln for ln in setup.splitlines() if not ln.startswith("%"))
        code = ("import os; os.chdir(os.path.expanduser('~/course'))\n" + setup +
                "\nprint('SETUP OK', tf.__version__)\nimport time; time.sleep(20)\n")
        heavy = [u for u, _ in arrived[:WITH_TENSORFLOW]]
        with ThreadPoolExecutor(max_workers=WITH_TENSORFLOW) as pool:
            futures = [pool.submit(u.run, code, 600) for u in heavy]
            time.sleep(15)   # measured while the kernels hold TensorFlow
            with_tf = [_memory_mb(u.name) for u in heavy]
            outs = [f.result() for f in futures]
        assert all("SETUP OK" in o for o in outs), outs
        figures = {
            "learners": LEARNERS, "all_spawned_s": round(all_spawned, 1),
            "spawn_median_s": round(statistics.median(spawn), 1), "spawn_max_s": round(max(spawn), 1),
            "idle_server_mb_median": round(statistics.median(idle)),
            "tensorflow_learner_mb_median": round(statistics.median(with_tf)),
        }
        print("load test:", json.dumps(figures))
        assert max(spawn) < 300   # the spawner's start timeout
    finally:
        hub.close()
        shutil.rmtree(tmp, ignore_errors=True)
