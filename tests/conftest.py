import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def require(available: bool, what: str) -> None:
    """Skip a test whose system prerequisite ``what`` is missing, with the reason; on CI
    (``CI=true``), where ``make test`` installs every prerequisite, fail instead."""
    import pytest

    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"prerequisite missing on CI: {what}")
    pytest.skip(f"prerequisite missing: {what}")


def require_sandbox():
    """The strongest sandbox here (bubblewrap), or skip/fail as :func:`require` does."""
    from workshop.grading.sandbox import Sandbox, SandboxUnavailable

    try:
        return Sandbox.detect()
    except SandboxUnavailable as err:
        require(False, str(err))


# -- a test run leaves nothing in the temporary folder ----------------------------------------
# The run gets a temporary folder of its own (TMPDIR, inherited by every worker, kernel and
# grader it starts), removed at the end: files that libraries leave behind when a process ends
# abruptly (TensorFlow's autograph sources, for one) go with it. Anything the run still puts in
# the system's temporary folder is named, and fails the run on CI.
_TMP_BEFORE: set[str] = set()
_RUN_TMP = "WORKSHOP_TEST_TMPDIR"


def _tmp_entries(root: str) -> set[str]:
    return set(os.listdir(root))


def pytest_configure(config):
    import tempfile

    if hasattr(config, "workerinput") or os.environ.get(_RUN_TMP):
        return
    system = tempfile.gettempdir()
    _TMP_BEFORE.update(_tmp_entries(system) | {"<system>:" + system})
    run_tmp = tempfile.mkdtemp(prefix="workshop-tests-")
    os.chmod(run_tmp, 0o1777)          # like /tmp: the throwaway accounts of the hub tests too
    os.environ["TMPDIR"] = os.environ[_RUN_TMP] = run_tmp
    tempfile.tempdir = run_tmp


def pytest_sessionfinish(session, exitstatus):
    """Name what the run put in the system's temporary folder; on CI that fails the run."""
    if hasattr(session.config, "workerinput") or not _TMP_BEFORE:
        return
    system = next(e for e in _TMP_BEFORE if e.startswith("<system>:")).split(":", 1)[1]
    run_tmp = os.path.basename(os.environ.get(_RUN_TMP, ""))
    left = sorted(_tmp_entries(system) - _TMP_BEFORE - {run_tmp})
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"the tests left {len(left)} entries in {system}: "
                            f"{', '.join(left[:20])}", red=True)
    if os.environ.get("CI", "").lower() == "true" and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_unconfigure(config):
    import shutil
    import tempfile

    if hasattr(config, "workerinput") or not os.environ.get(_RUN_TMP):
        return
    run_tmp = os.environ.pop(_RUN_TMP)
    os.environ.pop("TMPDIR", None)
    tempfile.tempdir = None
    shutil.rmtree(run_tmp, ignore_errors=True)
