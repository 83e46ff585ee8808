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
