"""Making the checkpoint ready: choose the archive, download it (Keras' ``get_file``), check its
sha256, unpack it beside the target and swap it in with one ``rename``.

Where the expected archive sha256 comes from:
  * the shipped archive: ``MANIFEST.json``; every member is also checked against it;
  * a release at ``$WORKSHOP_CHECKPOINT_URL`` (or a local ``--archive FILE``):
    ``$WORKSHOP_CHECKPOINT_SHA256``, else ``MANIFEST.json`` (the URL is then a mirror of the
    shipped archive). With neither the download is refused, never trusted blindly. Members are
    then checked against the archive's own ``CHECKPOINT.json``.

Failures never touch the checkpoint in place: the archive is downloaded and unpacked into a
temporary folder beside the target, every member is verified, and only then the folders are
swapped by ``rename``. When a good checkpoint is in place and fetching a release fails (404,
HTML page, truncated, wrong sha256, no network), the good one is kept with a WARNING (the course
works offline with it); ``strict`` makes that an error.

The shipped archive needs the standard library only; Keras is imported for downloads alone.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .manifest import (
    INSTALL_RECORD,
    MANIFEST_NAME,
    SCRIPT,
    SHA_RE,
    CheckpointError,
    checkpoint_dir,
    forget,
    json_bytes,
    load_manifest,
    manifest_path,
    now,
    read_json,
    sha256_file,
    unpack,
    verify,
)

DEFAULT_TIMEOUT = 30.0
IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
IMAGENET_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class FetchError(CheckpointError):
    """Fetching a release failed (HTTP error, not an archive, truncated, no network)."""


class NothingShipped(CheckpointError):
    """The repository ships no checkpoint archive and no release URL was given."""


@dataclass
class Result:
    """What ``prepare`` did.

    status: "in-place" (nothing to do), "installed", "kept" (fetching failed; the good
    checkpoint already in place was kept, ``warning`` is True) or "unavailable" (nothing
    shipped and ``if_available``).
    """

    status: str
    dir: Path
    message: str
    warning: bool = False


@dataclass
class _Plan:
    """An archive to install: a local ``file`` or a ``url``, and the sha256 it must have."""

    label: str                      # names it in messages: the URL, the file, "the shipped ..."
    sha: str
    origin: str                     # where ``sha`` comes from
    source: str                     # recorded in .installed.json: "shipped", the URL or file
    url: str | None = None
    file: Path | None = None
    members: dict | None = None     # MANIFEST.json's members, for the shipped archive


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- download

def timeout() -> float:
    """The network timeout: ``$WORKSHOP_CHECKPOINT_TIMEOUT`` seconds, default 30."""
    raw = os.environ.get("WORKSHOP_CHECKPOINT_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        t = float(raw)
    except ValueError:
        t = 0.0
    if not t > 0:
        raise CheckpointError(f"WORKSHOP_CHECKPOINT_TIMEOUT={raw!r} is not a positive number")
    return t


def check_url(url: str) -> None:
    """Refuse what is not a URL ``get_file`` can fetch (e.g. a path given to ``--url``)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise CheckpointError(f"{url!r} is not an http(s):// or file:// URL (a local archive: "
                              "--archive FILE)")


def download(url: str, workdir: Path, name: str, sha: str | None) -> Path:
    """Download ``url`` to ``workdir/name`` with ``keras.utils.get_file`` (its progress bar,
    its sha256 check when ``sha`` is given) and return the file. Raises FetchError in words:
    HTTP error, refused, DNS failure, timeout, truncated; a wrong sha256 raises ValueError and
    leaves the file for :func:`_wrong_file` to describe."""
    check_url(url)
    try:
        from keras.utils import get_file
    except ImportError as e:
        raise CheckpointError(f"downloading needs Keras ({e}); install the course's "
                              "requirements first (make setup, or pip install -r requirements.txt)")
    wait = timeout()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(wait)          # get_file takes no timeout: this process-wide
                                            # default is restored right after
    try:
        return Path(get_file(name, url, file_hash=sha, hash_algorithm="sha256",
                             cache_dir=str(workdir), cache_subdir="."))
    except ValueError:
        if (workdir / name).is_file():
            raise
        raise FetchError(f"cannot fetch {url}")
    except Exception as e:
        raise _network_error(e, url, wait) from e
    finally:
        socket.setdefaulttimeout(previous)


def _network_error(e: BaseException, url: str, wait: float) -> FetchError:
    """What went wrong, in words; ``get_file`` wraps urllib's errors in a plain Exception."""
    host = urllib.parse.urlsplit(url).netloc or url
    chain = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for c in chain:
        if isinstance(c, urllib.error.HTTPError):
            return FetchError(f"{url} answered HTTP {c.code} {c.reason}: nothing to download "
                              "there; check the URL")
        if isinstance(c, (urllib.error.ContentTooShortError, http.client.IncompleteRead,
                          ConnectionResetError)):
            return FetchError(f"the download of {url} was cut off (truncated): {c}")
        if isinstance(c, socket.gaierror):
            return FetchError(f"cannot resolve {host} (DNS failure: {c}); no network?")
        if isinstance(c, TimeoutError):
            return FetchError(f"{host} did not answer within {wait:g} s (timeout); no network? "
                              "(WORKSHOP_CHECKPOINT_TIMEOUT sets the limit)")
        if isinstance(c, ConnectionRefusedError):
            return FetchError(f"{host} refused the connection; no network, or the server is down")
        if isinstance(c, FileNotFoundError):
            return FetchError(f"{url}: no such file")
    return FetchError(f"cannot fetch {url}: {chain[-1]}")


def _wrong_file(file: Path, plan: _Plan) -> CheckpointError:
    """Why ``file`` does not have the sha256 ``plan`` expects, in words."""
    got, size = sha256_file(file)
    with open(file, "rb") as f:
        head = f.read(64)
    if head.startswith(b"version https://git-lfs"):
        return CheckpointError(f"{plan.label} is a Git LFS pointer, not the archive: run "
                               "`git lfs pull`")
    if head.lstrip()[:1] == b"<":
        return FetchError(f"{plan.label} is an HTML page (it starts {head[:40]!r}), not the "
                          "checkpoint archive; is the URL a download link rather than a web page?")
    if plan.source == "shipped":
        hint = (" It is corrupted or does not belong to this manifest: restore both with "
                "`git checkout -- checkpoint/`.")
    elif plan.origin == MANIFEST_NAME:
        hint = " A newer release? Set WORKSHOP_CHECKPOINT_SHA256 to its sha256."
    else:
        hint = " The file is corrupted or not the release meant."
    return CheckpointError(f"sha256 mismatch for {plan.label}: got {got} ({size} bytes), "
                           f"expected {plan.sha} from {plan.origin}.{hint}")


# --------------------------------------------------------------------------- install

@contextlib.contextmanager
def _lock(target: Path):
    """One install at a time per folder: an ``flock`` on the target's parent folder itself, so
    no lock file is created or left behind. Without ``fcntl`` (Windows) there is no lock; an
    install is still atomic."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                                # releases the lock


def _recover(target: Path, say) -> None:
    """Finish what an interrupted install left behind: restore a swapped-out good checkpoint
    when the target is missing, and remove stale temporary folders."""
    olds = sorted(target.parent.glob(f".{target.name}.old-*"))
    if not target.exists():
        for old in olds:
            if not verify(old):
                os.rename(old, target)
                say(f"Restored the checkpoint an interrupted install had moved aside ({old.name}).")
                break
    for stale in [*target.parent.glob(f".{target.name}.old-*"),
                  *target.parent.glob(f".{target.name}.tmp-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _install(plan: _Plan, target: Path) -> dict:
    """Fetch and check ``plan``'s archive, unpack it beside ``target`` and swap it in; return
    its CHECKPOINT.json. Nothing in ``target`` changes unless everything checked out."""
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        if plan.url is not None:
            try:
                file = download(plan.url, work, "download.tar.gz", plan.sha)
            except ValueError:
                raise _wrong_file(work / "download.tar.gz", plan)
        else:
            file = plan.file
            if sha256_file(file)[0] != plan.sha:
                raise _wrong_file(file, plan)
        new = work / "unpacked"
        new.mkdir()
        inner = unpack(file, new, plan.members, plan.label)
        record = {"archive_sha256": plan.sha, "archive_size": file.stat().st_size,
                  "source": plan.source, "version": inner.get("version"), "installed": now()}
        (new / INSTALL_RECORD).write_bytes(json_bytes(record))
        if target.exists() or target.is_symlink():
            if not target.is_dir():
                raise CheckpointError(f"{target} exists and is not a directory; move it away")
            old = target.parent / f".{target.name}.old-{work.name.rsplit('.tmp-', 1)[1]}"
            os.rename(target, old)                  # _recover puts it back after a crash here
            try:
                os.rename(new, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(new, target)
        forget(target)
        return inner
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _installed_record(target: Path) -> dict:
    try:
        rec = read_json(target / INSTALL_RECORD)
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- prepare

def _release_plan(url: str | None, archive, man: dict | None, say) -> _Plan:
    if url is not None:
        check_url(url)
        timeout()
    source = url if url is not None else str(Path(archive).resolve())
    env = os.environ.get("WORKSHOP_CHECKPOINT_SHA256", "").strip().lower()
    if env:
        if not SHA_RE.match(env):
            raise CheckpointError("WORKSHOP_CHECKPOINT_SHA256 must be 64 hex digits, got "
                                  f"{env[:70]!r}")
        sha, origin = env, "WORKSHOP_CHECKPOINT_SHA256"
    elif man is not None:
        say(f"No WORKSHOP_CHECKPOINT_SHA256: expecting the archive {MANIFEST_NAME} lists "
            "(a mirror of the shipped one).")
        sha, origin = man["archive"]["sha256"], MANIFEST_NAME
    else:
        raise CheckpointError(f"cannot verify {source}: set WORKSHOP_CHECKPOINT_SHA256 to its "
                              "sha256 (`sha256sum` prints it); unverified downloads are refused")
    if url is None and not Path(source).is_file():
        raise CheckpointError(f"{source} does not exist")
    return _Plan(label=source, sha=sha, origin=origin, source=source, url=url,
                 file=None if url is not None else Path(source))


def _shipped_plan(man: dict, mpath: Path, target: Path, record: dict | None,
                  problems: list[str], force: bool, say) -> _Plan | Result:
    """The shipped archive to install, or a Result when the checkpoint in place will do."""
    want = man["archive"]["sha256"]
    if record is not None and not force:
        if record.get("archive_sha256") == want:
            return Result("in-place", target, f"Checkpoint already in place in {target} "
                          f"(version {man['version']}); it verifies. Nothing to do.")
        if record.get("source") not in (None, "shipped"):
            return Result("in-place", target, f"Checkpoint already in place in {target}: "
                          f"version {record.get('version', '?')} from {record['source']}, "
                          f"which verifies (the repository ships version {man['version']};"
                          f" {SCRIPT} --force installs that instead).")
        say(f"The checkpoint in {target} is not the one the repository now ships "
            f"(version {man['version']}); replacing it.")
    elif record is None and target.exists():
        say(f"The checkpoint in {target} is incomplete or damaged ({problems[0]}); "
            "reinstalling it.")
    shipped = mpath.parent / man["archive"]["name"]
    if not shipped.is_file():
        raise CheckpointError(f"{MANIFEST_NAME} names {shipped}, which is missing; restore it "
                              "with `git checkout -- checkpoint/` (or `git lfs pull`)")
    return _Plan(label=f"the shipped {shipped.name}", sha=want, origin=MANIFEST_NAME,
                 source="shipped", file=shipped, members=man["members"])


def prepare(url: str | None = None, archive: str | os.PathLike | None = None,
            force: bool = False, *, dir: str | os.PathLike | None = None,
            if_available: bool = False, strict: bool = False, say=_say) -> Result:
    """Make the checkpoint ready; return what was done, raise CheckpointError if nothing usable.

    url: a release to download (default ``$WORKSHOP_CHECKPOINT_URL``; "" forces the shipped
      archive). archive: a local release file instead. Neither: the shipped archive.
    force: reinstall even when the checkpoint in place is the one asked for.
    if_available: when nothing is shipped and no URL is given, return status "unavailable"
      instead of raising NothingShipped.
    strict: when fetching a release fails but a good checkpoint is in place, raise instead of
      keeping it with a warning.
    """
    if url is None and archive is None:
        url = os.environ.get("WORKSHOP_CHECKPOINT_URL") or None
    url = url or None
    if url is not None and archive is not None:
        raise CheckpointError("give a URL or a local archive, not both")
    target = Path(os.path.abspath(dir if dir is not None else checkpoint_dir()))
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        _recover(target, say)
        problems = verify(target)
        record = None if problems else _installed_record(target)   # None: no good one in place
        mpath = manifest_path()
        man = load_manifest(mpath)
        if url is None and archive is None and man is None:
            return _nothing_shipped(target, mpath, problems, if_available)
        try:
            if url is None and archive is None:
                plan = _shipped_plan(man, mpath, target, record, problems, force, say)
                if isinstance(plan, Result):
                    return plan
            else:
                plan = _release_plan(url, archive, man, say)
                if record is not None and not force and record.get("archive_sha256") == plan.sha:
                    return Result("in-place", target, f"Checkpoint already in place in {target} "
                                  f"(version {record.get('version', '?')}, from "
                                  f"{record.get('source')}); it verifies. Nothing to do.")
            inner = _install(plan, target)
        except CheckpointError as err:
            return _keep_or_raise(err, target, record, problems, strict)
        return Result("installed", target, f"Installed checkpoint version "
                      f"{inner.get('version', '?')} from {plan.label} into {target} "
                      f"(sha256 checked against {plan.origin}).")


def _nothing_shipped(target: Path, mpath: Path, problems: list[str], if_available: bool):
    if not problems:
        return Result("in-place", target, f"Checkpoint already in place in {target}; it "
                      f"verifies (the repository ships no {MANIFEST_NAME} to compare).")
    msg = (f"No checkpoint is shipped: {mpath} does not exist. Train and pack one with "
           f"{SCRIPT} --build, or set WORKSHOP_CHECKPOINT_URL to a release.")
    if not if_available:
        raise NothingShipped(msg)
    extra = (f" (the checkpoint in {target} is incomplete: {problems[0]})"
             if target.exists() else "")
    return Result("unavailable", target, f"Note: {msg}{extra} Continuing without it "
                  "(--if-available).")


def _keep_or_raise(err: CheckpointError, target: Path, record: dict | None,
                   problems: list[str], strict: bool) -> Result:
    """After a failed install: keep the good checkpoint in place with a warning, or raise."""
    if record is not None and not strict:
        return Result("kept", target, f"WARNING: {err}\nKeeping the checkpoint already in "
                      f"{target} (version {record.get('version', '?')}), which verifies; the "
                      "course works with it.", warning=True)
    if record is not None:
        raise CheckpointError(f"{err}\nThe checkpoint already in {target} is untouched.")
    where = ("" if not target.exists() else
             f" The damaged checkpoint in {target} was left as it was ({problems[0]}).")
    raise type(err)(f"{err}\nNo usable checkpoint is in place.{where}")


# --------------------------------------------------------------------------- --with-imagenet

def cache_imagenet(say=_say) -> Path:
    """Optional: cache Keras' MobileNetV2 ImageNet weights where ``keras.applications`` looks
    (``$KERAS_HOME/models`` or ``~/.keras/models``), so the transfer-learning notebook can show
    them on real photos. The course never depends on this. ``$WORKSHOP_IMAGENET_URL`` overrides
    the download URL (a mirror). Keras publishes no sha256 for the file: it must at least be
    an HDF5 file, and it replaces the cached one atomically."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    dest = home / "models" / IMAGENET_FILE
    if dest.is_file() and _is_hdf5(dest):
        say(f"ImageNet MobileNetV2 weights already cached in {dest}.")
        return dest
    url = os.environ.get("WORKSHOP_IMAGENET_URL") or IMAGENET_BASE + IMAGENET_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".imagenet-", dir=dest.parent) as tmp:
        file = download(url, Path(tmp), IMAGENET_FILE, None)
        if not _is_hdf5(file):
            with open(file, "rb") as f:
                head = f.read(40)
            raise FetchError(f"{url} sent something else than the HDF5 weights file (it starts "
                             f"{head!r})")
        os.replace(file, dest)
    say(f"Cached ImageNet MobileNetV2 weights in {dest}.")
    return dest


def _is_hdf5(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(8) == HDF5_SIGNATURE

