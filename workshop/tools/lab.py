"""``python -m workshop lab``: JupyterLab on the learner notebooks, as a learner gets it.

The one place that says how the course's lab starts: ``make lab`` runs this, and the browser
tests (tests/test_browser.py) start the lab from :func:`command` and :func:`environment`, so the
two cannot drift apart. The lab uses the learners' Jupyter settings (``deploy/jupyter/learner``:
no nbgrader instructor tools, no news pop-up), the same the class hub gives its learners.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
LEARNER_SETTINGS = ROOT / "deploy" / "jupyter" / "learner"


def command(ip: str = "127.0.0.1", port: int = 8888, root_dir: Path = NOTEBOOKS,
            extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ``jupyter lab`` command line (this interpreter's JupyterLab); ``extra`` flags last."""
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={ip}", f"--port={port}",
            f"--ServerApp.root_dir={root_dir}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")           # a class VM or a container often runs as root
    return args + list(extra)


def environment(base: dict | None = None) -> dict:
    """``base`` (default: this process's environment) with the learners' Jupyter settings."""
    env = dict(os.environ if base is None else base)
    env["JUPYTER_CONFIG_PATH"] = str(LEARNER_SETTINGS)
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop lab",
                                 description="JupyterLab on the learner notebooks, as a learner "
                                             "gets it.",
                                 epilog="Other arguments go to `jupyter lab` as they are.")
    ap.add_argument("--ip", default="127.0.0.1", help="0.0.0.0 to serve a class from a VM")
    ap.add_argument("--port", type=int, default=8888)
    args, extra = ap.parse_known_args(argv)
    if not NOTEBOOKS.is_dir():
        print(f"no notebooks/ next to the workshop package ({ROOT}): run this from a checkout "
              "of the course", file=sys.stderr)
        return 2
    cmd = command(args.ip, args.port, extra=extra)
    sys.stdout.flush()
    if os.name == "nt":                       # no exec on Windows: run it and pass its status on
        import subprocess

        return subprocess.call(cmd, env=environment())
    os.execve(cmd[0], cmd, environment())
    return 0   # not reached


if __name__ == "__main__":
    raise SystemExit(main())
