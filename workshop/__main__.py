"""``python -m workshop COMMAND [ARGS]`` (also the ``workshop`` console script).

Commands are imported only when used, so ``python -m workshop grade`` does not load TensorFlow
and a missing optional module gives a clear message instead of a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import sys

COMMANDS = {
    "check": ("workshop.grading.grader:check_main",
              "run the public self-checks of a notebook's solution cells (sandboxed)"),
    "grade": ("workshop.grading.grader:main",
              "grade submitted notebooks: grades.csv, records, feedback"),
    "lab": ("workshop.tools.lab:main",
            "start JupyterLab on notebooks/ with the learners' settings (what `make lab` runs)"),
    "exercises": ("workshop.exercises:main",
                  "list the exercises by chapter: tiers, what each computes, its signature"),
    "bench": ("workshop.bench:main", "print the benchmark table"),
    "train": ("workshop.toolkit.training:main",
              "train the course's models; `train detector --dataset` on your own COCO / VOC data"),
    "release": ("workshop.grading.nbgrader_glue:main",
                "write the learner notebooks/ from solutions/ (nbgrader preprocessors)"),
    "course-report": ("workshop.tools.course_report:main", "the course report"),
    "render": ("workshop.tools.render:main",
               "the course as HTML pages with every output (learner's view; --with-solutions)"),
    "predict": ("workshop.toolkit.predict:main",
                "run the detector on images, folders and videos: COCO results JSON, drawn media"),
    "eval": ("workshop.toolkit.evaluate:main",
             "COCO (or VOC) evaluation of a results file: the 12 COCO numbers, AP per class"),
    "serve": ("workshop.toolkit.serve:main",
              "a web page and a JSON API around the detector (FastAPI + uvicorn)"),
    "export": ("workshop.toolkit.export:main",
               "the detector's networks as one TensorFlow Lite file (float32 or --int8); --report"),
}


def usage() -> str:
    lines = ["usage: python -m workshop COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<14} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "`python -m workshop COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module, _, func = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            print(f"`{name}` is not available: module {module} is missing from this "
                  "checkout (not written yet, or not installed).", file=sys.stderr)
            return 3
        raise
    entry = getattr(mod, func, None)
    if entry is None:
        print(f"`{name}` is not available: {module} has no {func}()", file=sys.stderr)
        return 3
    sys.argv = [f"python -m workshop {name}", *rest]  # for a main() that reads sys.argv
    try:
        takes_argv = bool(inspect.signature(entry).parameters)
    except (TypeError, ValueError):
        takes_argv = False
    code = entry(rest) if takes_argv else entry()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
