"""The course's trained weights: one archive, checked by SHA-256, unpacked atomically.

The repository ships ``checkpoint/workshop-checkpoint.tar.gz`` (at most 20 MB) and
``checkpoint/MANIFEST.json``; ``./download_checkpoint.sh`` (a thin wrapper around
``python -m workshop.checkpoint``) unpacks it into ``checkpoints/`` at the repository root, or
into ``$WORKSHOP_CHECKPOINT_DIR``. An offline set-up and CI therefore never train.

Archive layout (flat: regular files only, no directories, links, absolute paths or ``..``)::

    CHECKPOINT.json             this archive's own member list (sha256, size), version,
                                created date and figures; it cannot list itself
    metrics.json                the figures the models reached (also in CHECKPOINT.json)
    classifier.weights.h5       Keras weights (or <name>.keras whole models) for
    backbone.weights.h5         classifier, backbone, unet and detector
    unet.weights.h5
    detector_rpn.weights.h5     the detector's backbone + RPN, and its box head
    detector_head.weights.h5

``checkpoint/MANIFEST.json`` (kept in git) holds the same member list plus the archive's own
``{"name", "sha256", "size"}``. An unpacked checkpoint directory holds the members,
``CHECKPOINT.json`` and ``.installed.json`` (where it came from: archive sha256, source).

Where the expected archive sha256 comes from:
  * the shipped archive: ``MANIFEST.json`` only; every member is also checked against it;
  * a release at ``$WORKSHOP_CHECKPOINT_URL`` (or a local ``--archive FILE``), first found of:
    ``$WORKSHOP_CHECKPOINT_SHA256``; the sidecar ``<url>.sha256`` / ``<file>.sha256``
    (``sha256sum`` output; a 404 means "no sidecar"); ``MANIFEST.json`` (the URL is then a mirror
    of the shipped archive). With none of these the download is refused, never trusted blindly.
    Members are then checked against the archive's own ``CHECKPOINT.json``.

Failures never touch the checkpoint in place: the archive is downloaded and unpacked into a
temporary directory beside the target, every member is verified, and only then the directories
are swapped by ``rename``. When a good checkpoint is in place and fetching a release fails
(404, HTML page, truncated, wrong sha256, no network), the good one is kept and the command exits
0 with a WARNING (the course works offline with it); ``--strict`` makes that an error (exit 1).

Python API for the rest of the course::

    from workshop import checkpoint
    checkpoint.path("classifier")        # Path to classifier.weights.h5 (verified)
    checkpoint.ready_dir()               # the verified directory (e.g. detector_*.weights.h5)
    checkpoint.figures()                 # dict of metrics.json
    checkpoint.verify()                  # [] when the checkpoint is complete and intact

Environment: ``WORKSHOP_CHECKPOINT_DIR`` (unpacked location), ``WORKSHOP_CHECKPOINT_URL``,
``WORKSHOP_CHECKPOINT_SHA256``, ``WORKSHOP_CHECKPOINT_TIMEOUT`` (seconds, default 30),
``WORKSHOP_CHECKPOINT_MANIFEST`` (another shipped manifest; its archive sits beside it),
``WORKSHOP_TRAIN_MODULE`` (the trainer ``--build`` runs; default ``workshop.train``),
``WORKSHOP_TRAIN_DIR`` (where it writes; default ``build/checkpoint-train``),
``WORKSHOP_TRAIN_ARGS`` (extra trainer arguments, e.g. ``--tiny`` for a smoke test).

Only the standard library is needed (tqdm draws the progress bar when it is installed), so the
script works before the course's requirements are.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gzip
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "workshop-checkpoint.tar.gz"
MANIFEST_NAME = "MANIFEST.json"
INNER_MANIFEST = "CHECKPOINT.json"
INSTALL_RECORD = ".installed.json"
METRICS = "metrics.json"
MODELS = ("classifier", "backbone", "unet", "detector")
FORMAT = 1
MAX_ARCHIVE_BYTES = 20 * 2**20          # what the repository may ship
MAX_DOWNLOAD_BYTES = 512 * 2**20        # a release may be larger, within reason
MAX_UNPACKED_BYTES = 2 * 2**30          # guards against a decompression bomb
DEFAULT_TIMEOUT = 30.0
SCRIPT = "./download_checkpoint.sh"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class CheckpointError(RuntimeError):
    """Something about the checkpoint is wrong; the message says what and what to do."""


class NothingShipped(CheckpointError):
    """The repository ships no checkpoint archive yet and no release URL was given."""


@dataclass
class Result:
    """What ``prepare`` did.

    status: "in-place" (nothing to do), "installed", "kept" (fetching failed; the good
    checkpoint already in place was kept, ``warning`` is True) or "unavailable" (nothing
    shipped yet and ``if_available``).
    """

    status: str
    dir: Path
    message: str
    warning: bool = False


# --------------------------------------------------------------------------- locations

def checkpoint_dir() -> Path:
    """The unpacked checkpoint: ``$WORKSHOP_CHECKPOINT_DIR`` or ``<repo>/checkpoints``."""
    env = os.environ.get("WORKSHOP_CHECKPOINT_DIR")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    return ROOT / "checkpoints"


def manifest_path() -> Path:
    """The shipped manifest: ``$WORKSHOP_CHECKPOINT_MANIFEST`` or ``checkpoint/MANIFEST.json``."""
    env = os.environ.get("WORKSHOP_CHECKPOINT_MANIFEST")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    return ROOT / "checkpoint" / MANIFEST_NAME


def load_manifest(path: str | os.PathLike | None = None) -> dict | None:
    """The shipped manifest as a dict, or None when the repository ships none yet."""
    path = Path(path) if path is not None else manifest_path()
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({e}); restore it with "
                              f"`git checkout -- {path.name}` or rebuild with {SCRIPT} --build")
    problems = _manifest_problems(man, with_archive=True)
    if problems:
        raise CheckpointError(f"{path} is malformed: " + "; ".join(problems))
    return man


def _manifest_problems(man, with_archive: bool) -> list[str]:
    if not isinstance(man, dict):
        return ["not a JSON object"]
    out = []
    if man.get("format") != FORMAT:
        out.append(f"format is {man.get('format')!r}, this code reads format {FORMAT}")
    members = man.get("members")
    if not isinstance(members, dict) or not members:
        out.append("no 'members' object")
    else:
        for name, m in members.items():
            if not _NAME_RE.match(name) or name in (INNER_MANIFEST, INSTALL_RECORD):
                out.append(f"member name {name!r} is not allowed")
            elif (not isinstance(m, dict) or not _SHA_RE.match(str(m.get("sha256")))
                  or not isinstance(m.get("size"), int)):
                out.append(f"member {name!r} needs a lowercase hex 'sha256' and an int 'size'")
    if with_archive:
        a = man.get("archive")
        if (not isinstance(a, dict) or not _NAME_RE.match(str(a.get("name")))
                or not _SHA_RE.match(str(a.get("sha256"))) or not isinstance(a.get("size"), int)):
            out.append("'archive' needs 'name', a lowercase hex 'sha256' and an int 'size'")
    return out


def _shipped_archive(mpath: Path, man: dict) -> Path:
    return mpath.parent / man["archive"]["name"]


# --------------------------------------------------------------------------- hashing, verify

def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def verify(dir: str | os.PathLike | None = None, manifest: dict | None = None) -> list[str]:
    """Problems with an unpacked checkpoint; an empty list means complete and intact.

    Every member listed in the directory's ``CHECKPOINT.json`` must exist with its size and
    sha256; with ``manifest`` (e.g. ``load_manifest()``) its member list must also agree.
    """
    d = Path(dir) if dir is not None else checkpoint_dir()
    if not d.is_dir():
        return [f"{d} does not exist" if not d.exists() else f"{d} is not a directory"]
    inner_path = d / INNER_MANIFEST
    try:
        inner = _read_json(inner_path)
    except FileNotFoundError:
        return [f"{inner_path} is missing"]
    except (OSError, ValueError) as e:
        return [f"{inner_path} is unreadable ({e})"]
    problems = [f"{INNER_MANIFEST}: {p}" for p in _manifest_problems(inner, with_archive=False)]
    if problems:
        return problems
    members = inner["members"]
    if manifest is not None and manifest.get("members") != members:
        problems.append(f"{INNER_MANIFEST} lists other files than the manifest "
                        f"({_diff_members(manifest.get('members') or {}, members)})")
    for name, m in sorted(members.items()):
        f = d / name
        if not f.is_file():
            problems.append(f"{name} is missing")
            continue
        sha, size = sha256_file(f)
        if size != m["size"]:
            problems.append(f"{name} has {size} bytes, expected {m['size']}")
        elif sha != m["sha256"]:
            problems.append(f"{name} has sha256 {sha[:12]}..., expected {m['sha256'][:12]}...")
    return problems


def _diff_members(expected: dict, got: dict) -> str:
    parts = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("unexpected " + ", ".join(extra))
    if changed:
        parts.append("different " + ", ".join(changed))
    return "; ".join(parts) or "same"


_VERIFIED: dict[str, tuple] = {}


def _signature(d: Path) -> tuple:
    sig = []
    for name in sorted(os.listdir(d)):
        st = os.stat(d / name)
        sig.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sig)


def _verified_dir(dir=None) -> Path:
    d = Path(dir) if dir is not None else checkpoint_dir()
    try:
        sig = _signature(d)
    except OSError:
        sig = None
    if sig is None or _VERIFIED.get(str(d)) != sig:
        problems = verify(d)
        if problems:
            raise CheckpointError(
                f"The course checkpoint in {d} is not ready: " + "; ".join(problems)
                + f".\nRun {SCRIPT} in the repository root (it unpacks the shipped weights;"
                " no training needed).")
        _VERIFIED[str(d)] = sig
    return d


def ready_dir(dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint directory, verified; raises CheckpointError (telling the user to run
    ``./download_checkpoint.sh``) when it is missing or damaged. Cheap after the first call."""
    return _verified_dir(dir)


def path(name: str, dir: str | os.PathLike | None = None) -> Path:
    """Path to a verified checkpoint file.

    ``name`` is a member name ("unet.weights.h5") or a model name ("unet"), which picks the
    member ``unet.weights.h5`` or ``unet.keras``. Raises CheckpointError (telling the user to run
    ``./download_checkpoint.sh``) when the checkpoint is missing or damaged, or lacks ``name``.
    """
    d = _verified_dir(dir)
    members = sorted(_read_json(d / INNER_MANIFEST)["members"])
    if name in members:
        return d / name
    hits = [m for m in members if m.split(".", 1)[0] == name]
    if len(hits) == 1:
        return d / hits[0]
    if len(hits) > 1:
        raise CheckpointError(f"{name!r} is ambiguous in {d}: {', '.join(hits)}; pass one of them")
    raise CheckpointError(f"The checkpoint in {d} has no {name!r}; it holds {', '.join(members)}."
                          f" A newer course version may need a newer checkpoint: run {SCRIPT}.")


def figures(dir: str | os.PathLike | None = None) -> dict:
    """The figures the shipped models reached (the checkpoint's metrics.json)."""
    d = _verified_dir(dir)
    inner = _read_json(d / INNER_MANIFEST)
    if METRICS in inner["members"]:
        return _read_json(d / METRICS)
    return dict(inner.get("figures") or {})


# --------------------------------------------------------------------------- archives

def _member_name(m: tarfile.TarInfo) -> str | None:
    """The safe flat name of a tar member, None for the top directory entry; raises otherwise."""
    raw = m.name
    name = raw.removeprefix("./")
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        raise CheckpointError(f"archive member {raw!r} has an absolute path; refusing to unpack")
    parts = re.split(r"[\\/]", name)
    if ".." in parts:
        raise CheckpointError(f"archive member {raw!r} points outside the checkpoint with '..';"
                              " refusing to unpack")
    if name in ("", ".", "./") and m.isdir():
        return None
    if not m.isreg():
        kind = ("a symlink" if m.issym() else "a hard link" if m.islnk()
                else "a directory" if m.isdir() else "a special file")
        raise CheckpointError(f"archive member {raw!r} is {kind}; the checkpoint archive holds"
                              " regular files only")
    if len(parts) != 1 or not _NAME_RE.match(name):
        raise CheckpointError(f"archive member {raw!r} is not a plain file name at the top level")
    return name


def _scan_archive(archive: Path, dest: Path | None = None) -> tuple[dict, dict | None]:
    """Read every member of a gzip tar safely: {name: {"sha256", "size"}} and the parsed
    CHECKPOINT.json (None when absent). With ``dest`` each member is also written there."""
    members, inner_bytes, total = {}, None, 0
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:
                name = _member_name(m)
                if name is None:
                    continue
                if name in members or (name == INNER_MANIFEST and inner_bytes is not None):
                    raise CheckpointError(f"archive member {name!r} appears twice")
                total += m.size
                if total > MAX_UNPACKED_BYTES:
                    raise CheckpointError("archive unpacks to more than "
                                          f"{MAX_UNPACKED_BYTES >> 20} MB; refusing")
                src = tf.extractfile(m)
                h, n = hashlib.sha256(), 0
                keep = bytearray() if name == INNER_MANIFEST else None
                with (open(dest / name, "xb") if dest is not None
                      else contextlib.nullcontext()) as out:
                    while block := src.read(1 << 20):
                        h.update(block)
                        n += len(block)
                        if out is not None:
                            out.write(block)
                        if keep is not None:
                            keep += block
                if n != m.size:
                    raise CheckpointError(f"archive member {name!r} is truncated")
                if keep is not None:
                    inner_bytes = bytes(keep)
                else:
                    members[name] = {"sha256": h.hexdigest(), "size": n}
            # Read to the end so gzip checks its CRC and length trailer.
            while tf.fileobj.read(1 << 20):
                pass
    except CheckpointError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, FileNotFoundError) and not Path(archive).exists():
            raise CheckpointError(f"{archive} does not exist")
        raise CheckpointError(f"{archive} is truncated or corrupt ({type(e).__name__}: {e})")
    inner = None
    if inner_bytes is not None:
        try:
            inner = json.loads(inner_bytes.decode("utf-8"))
        except ValueError as e:
            raise CheckpointError(f"the archive's {INNER_MANIFEST} is not JSON ({e})")
        problems = _manifest_problems(inner, with_archive=False)
        if problems:
            raise CheckpointError(f"the archive's {INNER_MANIFEST} is malformed: "
                                  + "; ".join(problems))
    return members, inner


def _check_members(members: dict, inner: dict | None, expected: dict | None, label: str):
    if inner is None:
        raise CheckpointError(f"{label} has no {INNER_MANIFEST}; it is not a course checkpoint "
                              f"archive (build one with {SCRIPT} --build)")
    if inner["members"] != members:
        raise CheckpointError(f"{label}: files do not match its {INNER_MANIFEST} "
                              f"({_diff_members(inner['members'], members)})")
    if expected is not None and expected != members:
        raise CheckpointError(f"{label}: files do not match {MANIFEST_NAME} "
                              f"({_diff_members(expected, members)})")


def build_manifest(archive: str | os.PathLike, figures: dict | None = None, *,
                   version: str | None = None, created: str | None = None) -> dict:
    """The repository manifest of a checkpoint archive (see the module docstring).

    Member sums are computed from the archive and must agree with its CHECKPOINT.json;
    ``version``, ``created`` and ``figures`` default to the ones recorded there.
    """
    archive = Path(archive)
    sha, size = sha256_file(archive)
    members, inner = _scan_archive(archive)
    _check_members(members, inner, None, str(archive))
    return {
        "format": FORMAT,
        "version": version or inner.get("version") or _today(),
        "created": created or inner.get("created") or _now(),
        "archive": {"name": archive.name, "sha256": sha, "size": size},
        "members": members,
        "figures": figures if figures is not None else inner.get("figures", {}),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y.%m.%d")


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _write_atomic(target: Path, data: bytes):
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def pack(files, out_archive: str | os.PathLike, manifest_path: str | os.PathLike,
         figures: dict | None, *, version: str | None = None, created: str | None = None,
         max_bytes: int = MAX_ARCHIVE_BYTES) -> dict:
    """Write a checkpoint archive and its repository manifest; return the manifest.

    files: paths (stored under their base names) or a mapping {member name: path}. A
    ``metrics.json`` is written from ``figures`` unless one is among ``files`` (then ``figures``
    None means "read them from it"). The archive is reproducible (sorted, fixed owners and
    times) and written atomically; more than ``max_bytes`` is an error.
    """
    if isinstance(files, dict):
        items = dict(files)
    else:
        files = list(files)
        items = {Path(f).name: f for f in files}
        if len(items) != len(files):
            raise CheckpointError("two files to pack share a base name: "
                                  + ", ".join(sorted(str(f) for f in files)))
    payload = {}
    for name, src in items.items():
        if not _NAME_RE.match(name) or name in (INNER_MANIFEST, INSTALL_RECORD):
            raise CheckpointError(f"cannot pack a member named {name!r}")
        try:
            payload[name] = Path(src).read_bytes()
        except OSError as e:
            raise CheckpointError(f"cannot read {src}: {e}")
    if METRICS in payload:
        if figures is None:
            try:
                figures = json.loads(payload[METRICS])
            except ValueError as e:
                raise CheckpointError(f"{items[METRICS]} is not JSON ({e})")
    else:
        figures = dict(figures or {})
        payload[METRICS] = _json_bytes(figures)
    if not payload:
        raise CheckpointError("nothing to pack")
    created = created or _now()
    version = version or _today()
    members = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
               for n, b in payload.items()}
    inner = {"format": FORMAT, "version": version, "created": created,
             "members": members, "figures": figures}
    payload[INNER_MANIFEST] = _json_bytes(inner)
    try:
        mtime = int(_dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        mtime = 0

    out_archive = Path(out_archive)
    out_archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_archive.name}.", dir=out_archive.parent)
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name in [INNER_MANIFEST] + sorted(n for n in payload if n != INNER_MANIFEST):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(payload[name]), mtime, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info, _BytesReader(payload[name]))
        size = os.path.getsize(tmp)
        if size > max_bytes:
            raise CheckpointError(f"the archive would be {size / 2**20:.1f} MB, over the "
                                  f"{max_bytes / 2**20:.0f} MB the repository may ship; "
                                  "make the models smaller")
        os.replace(tmp, out_archive)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    manifest = build_manifest(out_archive, figures, version=version, created=created)
    _write_atomic(Path(manifest_path), _json_bytes(manifest))
    return manifest


class _BytesReader:
    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, n=-1):
        end = len(self._data) if n is None or n < 0 else self._pos + n
        out = self._data[self._pos:end]
        self._pos += len(out)
        return out


# --------------------------------------------------------------------------- network

class FetchError(CheckpointError):
    """Fetching a release failed (HTTP error, not an archive, truncated, no network)."""


def _timeout() -> float:
    raw = os.environ.get("WORKSHOP_CHECKPOINT_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        t = float(raw)
        if t <= 0:
            raise ValueError
        return t
    except ValueError:
        raise CheckpointError(f"WORKSHOP_CHECKPOINT_TIMEOUT={raw!r} is not a positive number")


def _network_error(e: BaseException, url: str, timeout: float) -> FetchError:
    host = urllib.parse.urlsplit(url).netloc or url
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(e, urllib.error.HTTPError):
        return FetchError(f"{url} answered HTTP {e.code} {e.reason}: no archive there; check "
                          "WORKSHOP_CHECKPOINT_URL")
    if isinstance(reason, socket.gaierror):
        return FetchError(f"cannot resolve {host} (DNS failure: {reason}); no network?")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return FetchError(f"{host} did not answer within {timeout:g} s (timeout); no network? "
                          "(WORKSHOP_CHECKPOINT_TIMEOUT sets the limit)")
    if isinstance(reason, ConnectionRefusedError):
        return FetchError(f"{host} refused the connection; no network, or the server is down")
    if isinstance(e, (http.client.IncompleteRead, ConnectionResetError)):
        return FetchError(f"the download of {url} was cut off (truncated): {e}")
    return FetchError(f"cannot fetch {url}: {reason}")


def _open(url: str, timeout: float):
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise CheckpointError(f"{url!r} is not an http(s):// or file:// URL")
    req = urllib.request.Request(url, headers={"User-Agent": "workshop-checkpoint/1"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _network_error(e, url, timeout) from e


def _fetch_sidecar(url: str, timeout: float) -> str | None:
    """The sha256 in ``<url>.sha256``; None when the server has no such file (404/410)."""
    side = url + ".sha256"
    try:
        resp = _open(side, timeout)
    except FetchError as e:
        cause = e.__cause__
        if isinstance(cause, urllib.error.HTTPError) and cause.code in (404, 410):
            return None
        if isinstance(cause, urllib.error.URLError) and isinstance(cause.reason,
                                                                   FileNotFoundError):
            return None
        raise
    with resp:
        try:
            text = resp.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise _network_error(e, side, timeout) from e
    token = text.split()[0].lower() if text.split() else ""
    if not _SHA_RE.match(token):
        raise FetchError(f"{side} does not hold a sha256 (it starts {text[:40]!r}); fix it or "
                         "set WORKSHOP_CHECKPOINT_SHA256")
    return token


def _download(url: str, dest: Path, timeout: float, say, magic: bytes = b"\x1f\x8b",
              what: str = "the checkpoint archive", max_bytes: int | None = MAX_DOWNLOAD_BYTES) -> None:
    """Stream ``url`` into ``dest`` with a progress bar; refuse HTML, a file that does not start
    with ``magic``, more than ``max_bytes``, and a truncated or empty answer."""
    resp = _open(url, timeout)
    with resp:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if "text/html" in ctype:
            raise FetchError(f"{url} answered with an HTML page (Content-Type {ctype}), not "
                             f"{what}; is it a download link rather than a web page?")
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and max_bytes is not None and total > max_bytes:
            raise FetchError(f"{url} is {total >> 20} MB, more than {what} can be")
        say(f"Downloading {url}" + (f" ({total / 2**20:.1f} MB)" if total else ""))
        got = 0
        bar = _progress(total)
        try:
            with open(dest, "wb") as out:
                while True:
                    try:
                        block = resp.read(1 << 16)
                    except (OSError, http.client.HTTPException) as e:
                        raise _network_error(e, url, timeout) from e
                    if not block:
                        break
                    if got == 0 and not block.startswith(magic):
                        head = block[:60].decode("utf-8", "replace")
                        kind = "an HTML page" if "<" in head[:20] else "a file of another kind"
                        raise FetchError(f"{url} sent {kind} (it starts {head[:40]!r}), "
                                         f"not {what}")
                    got += len(block)
                    if max_bytes is not None and got > max_bytes:
                        raise FetchError(f"{url} sent more than {max_bytes >> 20} MB")
                    out.write(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if got == 0:
        raise FetchError(f"{url} sent an empty answer, not {what}")
    if total is not None and got != total:
        raise FetchError(f"the download of {url} is truncated: {got} of {total} bytes")


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                disable=None, desc="checkpoint", leave=False)


# --------------------------------------------------------------------------- install

@contextlib.contextmanager
def _lock(target: Path):
    """One prepare at a time per target (the lock file lives in the temp dir, not the repo)."""
    try:
        import fcntl
    except ImportError:             # not POSIX: no lock, installs are still atomic
        yield
        return
    key = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"workshop-checkpoint-{key}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _recover(target: Path, say) -> None:
    """Finish what an interrupted install left behind: restore a swapped-out good checkpoint
    when the target is missing, and remove stale temporary directories."""
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{target.name}.old-*"))
    if not target.exists():
        for old in olds:
            if not verify(old):
                os.rename(old, target)
                say(f"Restored the checkpoint an interrupted install had moved aside ({old.name}).")
                break
    for stale in list(parent.glob(f".{target.name}.old-*")) + list(
            parent.glob(f".{target.name}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)


def _install(archive: Path, target: Path, expected_members: dict | None, record: dict,
             workdir: Path, label: str) -> dict:
    """Unpack ``archive`` into workdir, verify every member, then swap it in as ``target``."""
    new = workdir / "unpacked"
    new.mkdir()
    members, inner = _scan_archive(archive, dest=new)
    _check_members(members, inner, expected_members, label)
    record = dict(record, version=inner.get("version"), installed=_now())
    (new / INSTALL_RECORD).write_bytes(_json_bytes(record))
    problems = verify(new)
    if problems:                                        # cannot happen unless the disk lies
        raise CheckpointError(f"unpacked files do not verify: {'; '.join(problems)}")
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise CheckpointError(f"{target} exists and is not a directory; move it away")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        old.rmdir()
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)
    _VERIFIED.pop(str(target), None)
    return inner


def _installed_record(target: Path) -> dict:
    try:
        rec = _read_json(target / INSTALL_RECORD)
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _say(msg: str) -> None:
    print(msg, flush=True)


def _expected_sha(source: str, is_url: bool, man: dict | None, timeout: float, say):
    env = os.environ.get("WORKSHOP_CHECKPOINT_SHA256", "").strip().lower()
    if env:
        if not _SHA_RE.match(env):
            raise CheckpointError("WORKSHOP_CHECKPOINT_SHA256 must be 64 hex digits, got "
                                  f"{env[:70]!r}")
        return env, "WORKSHOP_CHECKPOINT_SHA256"
    if is_url:
        side = _fetch_sidecar(source, timeout)
        if side:
            return side, f"{source}.sha256"
    else:
        side_path = Path(source + ".sha256")
        if side_path.is_file():
            text = side_path.read_text(encoding="utf-8", errors="replace").split()
            if not text or not _SHA_RE.match(text[0].lower()):
                raise CheckpointError(f"{side_path} does not hold a sha256")
            return text[0].lower(), str(side_path)
    if man is not None:
        say(f"No WORKSHOP_CHECKPOINT_SHA256 and no {source}.sha256: expecting the archive "
            f"{MANIFEST_NAME} lists (a mirror of the shipped one).")
        return man["archive"]["sha256"], MANIFEST_NAME
    raise CheckpointError(
        f"cannot verify {source}: set WORKSHOP_CHECKPOINT_SHA256 to its sha256, or publish "
        f"{source}.sha256 beside it (`sha256sum` output); unverified downloads are refused")


def prepare(url: str | None = None, archive: str | os.PathLike | None = None,
            force: bool = False, *, dir: str | os.PathLike | None = None,
            if_available: bool = False, strict: bool = False, say=_say) -> Result:
    """Make the checkpoint ready; return what was done, raise CheckpointError if nothing usable.

    url: a release to download (default ``$WORKSHOP_CHECKPOINT_URL``; "" forces the shipped
      archive). archive: a local release file instead. Neither: the shipped archive.
    force: reinstall even when the checkpoint in place is the one asked for.
    if_available: when nothing is shipped yet and no URL is given, return status "unavailable"
      instead of raising NothingShipped.
    strict: when fetching a release fails but a good checkpoint is in place, raise instead of
      keeping it with a warning.
    """
    if url is None and archive is None:
        url = os.environ.get("WORKSHOP_CHECKPOINT_URL") or None
    url = url or None
    if url is not None and archive is not None:
        raise CheckpointError("give a URL or a local archive, not both")
    target = Path(dir) if dir is not None else checkpoint_dir()
    target = Path(os.path.abspath(target))
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        _recover(target, say)
        problems = verify(target)
        good = not problems
        record = _installed_record(target) if good else {}
        mpath = manifest_path()
        man = load_manifest(mpath)

        def fail(err: CheckpointError) -> Result:
            if good and not strict:
                return Result("kept", target, f"WARNING: {err}\nKeeping the checkpoint already "
                              f"in {target} (version {record.get('version', '?')}), which "
                              "verifies; the course works with it.", warning=True)
            if good:
                raise CheckpointError(f"{err}\nThe checkpoint already in {target} is untouched.")
            where = ("" if not target.exists() else
                     f" The damaged checkpoint in {target} was left as it was ({problems[0]}).")
            raise type(err)(f"{err}\nNo usable checkpoint is in place.{where}")

        if url is not None or archive is not None:
            source = url if url is not None else str(Path(archive).resolve())
            timeout = _timeout()
            try:
                sha, origin = _expected_sha(source, url is not None, man, timeout, say)
            except CheckpointError as e:
                return fail(e)
            if good and not force and record.get("archive_sha256") == sha:
                return Result("in-place", target, f"Checkpoint already in place in {target} "
                              f"(version {record.get('version', '?')}, from {record.get('source')}"
                              "); it verifies. Nothing to do.")
            work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                if url is not None:
                    file = work / "download.tar.gz"
                    _download(url, file, timeout, say)
                else:
                    file = Path(source)
                    if not file.is_file():
                        raise CheckpointError(f"{file} does not exist")
                got, size = sha256_file(file)
                if got != sha:
                    hint = (" (a newer release? publish <url>.sha256 or set "
                            "WORKSHOP_CHECKPOINT_SHA256)" if origin == MANIFEST_NAME else "")
                    raise CheckpointError(f"sha256 mismatch for {source}: got {got}, expected "
                                          f"{sha} from {origin}{hint}; corrupted or wrong file")
                inner = _install(file, target, None, {"archive_sha256": sha,
                                 "archive_size": size, "source": source}, work, source)
            except CheckpointError as e:
                return fail(e)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return Result("installed", target, f"Installed checkpoint version "
                          f"{inner.get('version', '?')} from {source} into {target} "
                          f"(sha256 checked against {origin}).")

        if man is None:
            if good:
                return Result("in-place", target, f"Checkpoint already in place in {target}; it "
                              f"verifies (the repository ships no {MANIFEST_NAME} to compare).")
            msg = (f"No checkpoint is shipped yet: {mpath} does not exist (the trained weights "
                   f"land with the training code). Train and pack them with {SCRIPT} --build, "
                   "or set WORKSHOP_CHECKPOINT_URL to a release.")
            if if_available:
                extra = f" (the checkpoint in {target} is incomplete: {problems[0]})" \
                    if target.exists() else ""
                return Result("unavailable", target, f"Note: {msg}{extra} Continuing without "
                              "it (--if-available).")
            raise NothingShipped(msg)

        want = man["archive"]["sha256"]
        if good and not force:
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
        elif not good and target.exists():
            say(f"The checkpoint in {target} is incomplete or damaged ({problems[0]}); "
                "reinstalling it.")
        shipped = _shipped_archive(mpath, man)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            if not shipped.is_file():
                raise CheckpointError(f"{MANIFEST_NAME} names {shipped}, which is missing; "
                                      "restore it with `git checkout -- checkpoint/` (or "
                                      "`git lfs pull`)")
            got, size = sha256_file(shipped)
            if got != want:
                with open(shipped, "rb") as f:
                    lfs = f.read(40).startswith(b"version https://git-lfs")
                hint = (" It is a Git LFS pointer: run `git lfs pull`." if lfs else
                        " It is corrupted or does not belong to this manifest: restore both with"
                        " `git checkout -- checkpoint/`.")
                raise CheckpointError(f"sha256 mismatch for the shipped {shipped.name}: got "
                                      f"{got} ({size} bytes), {MANIFEST_NAME} says {want} "
                                      f"({man['archive']['size']} bytes).{hint}")
            inner = _install(shipped, target, man["members"], {"archive_sha256": want,
                             "archive_size": size, "source": "shipped"}, work,
                             f"the shipped {shipped.name}")
        except CheckpointError as e:
            return fail(e)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Result("installed", target, f"Installed checkpoint version "
                      f"{inner.get('version', man['version'])} into {target} (shipped archive, "
                      "sha256 verified).")


# --------------------------------------------------------------------------- --build

def build(train_dir: str | os.PathLike | None = None, say=_say) -> dict:
    """Retrain everything with ``python -m workshop.train all --out DIR``, pack the archive and
    rewrite the manifest beside it, then install it. Returns the new manifest.

    Contract with the trainer (run from the repository root): it writes at least one
    ``<model>*.weights.h5`` or ``<model>*.keras`` for each of classifier, backbone, unet, detector
    and a ``metrics.json`` of figures into DIR. Every ``*.weights.h5`` / ``*.keras`` there is
    packed, except ``*.best.weights.h5`` (ModelCheckpoint leftovers).
    """
    module = os.environ.get("WORKSHOP_TRAIN_MODULE", "workshop.train")
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CheckpointError(f"--build runs `python -m {module} all`, but {module} is not in "
                              "this checkout yet (the training code lands separately); until "
                              f"then use the shipped archive ({SCRIPT} without --build)")
    train_dir = train_dir or os.environ.get("WORKSHOP_TRAIN_DIR")
    out = Path(train_dir) if train_dir else ROOT / "build" / "checkpoint-train"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", module, "all", "--out", str(out),
           *shlex.split(os.environ.get("WORKSHOP_TRAIN_ARGS", ""))]
    say("Training: " + " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
    rc = subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode
    if rc != 0:
        raise CheckpointError(f"training failed (`{' '.join(cmd)}` exited {rc}); the shipped "
                              "archive and manifest are unchanged")
    files = sorted(p for p in out.iterdir() if p.is_file()
                   and p.name.endswith((".weights.h5", ".keras"))
                   and not p.name.endswith(".best.weights.h5"))
    missing = [m for m in MODELS if not any(f.name.startswith(m) for f in files)]
    if missing:
        raise CheckpointError(f"training finished but wrote no weights for {', '.join(missing)}"
                              f" in {out} (expected <model>*.weights.h5 or <model>*.keras)")
    metrics = out / METRICS
    if not metrics.is_file():
        raise CheckpointError(f"training finished but wrote no {metrics}")
    mpath = manifest_path()
    man = pack(files + [metrics], mpath.parent / ARCHIVE_NAME, mpath, None)
    say(f"Packed {mpath.parent / ARCHIVE_NAME} ({man['archive']['size'] / 2**20:.2f} MB, sha256 "
        f"{man['archive']['sha256']}) and rewrote {mpath}. Commit both.")
    res = prepare(url="", force=True, say=say)
    say(res.message)
    return man


# --------------------------------------------------------------------------- --with-imagenet

IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
IMAGENET_BASE = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/")


def cache_imagenet(say=_say) -> Path:
    """Optional: cache Keras' MobileNetV2 ImageNet weights where ``keras.applications`` looks
    (``$KERAS_HOME/models`` or ``~/.keras/models``), so the transfer-learning notebook can show
    them on real photos. The course never depends on this. ``$WORKSHOP_IMAGENET_URL`` overrides
    the download URL (a mirror)."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    dest = home / "models" / IMAGENET_FILE
    if dest.is_file() and dest.stat().st_size > 0 and _looks_like_hdf5(dest):
        say(f"ImageNet MobileNetV2 weights already cached in {dest}.")
        return dest
    url = os.environ.get("WORKSHOP_IMAGENET_URL") or IMAGENET_BASE + IMAGENET_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    timeout = _timeout()
    tmp = Path(tempfile.mkdtemp(prefix=".imagenet-", dir=dest.parent))
    try:
        part = tmp / IMAGENET_FILE
        _download(url, part, timeout, say, magic=b"\x89HDF\r\n\x1a\n",
                  what="the HDF5 weights file", max_bytes=None)
        os.replace(part, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"Cached ImageNet MobileNetV2 weights in {dest}.")
    return dest


def _looks_like_hdf5(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------- CLI

_EPILOG = f"""\
With no options: if the checkpoint in place verifies, say so and exit 0; otherwise unpack the
shipped checkpoint/{ARCHIVE_NAME} after checking its sha256 against checkpoint/{MANIFEST_NAME}.

Environment:
  WORKSHOP_CHECKPOINT_DIR     where to unpack (default: checkpoints/ in the repository)
  WORKSHOP_CHECKPOINT_URL     download this release instead of using the shipped archive
  WORKSHOP_CHECKPOINT_SHA256  its expected sha256; else <URL>.sha256 is fetched; else
                              {MANIFEST_NAME}'s archive sha256 is expected (a mirror).
                              Unverifiable downloads are refused.
  WORKSHOP_CHECKPOINT_TIMEOUT network timeout in seconds (default {DEFAULT_TIMEOUT:g})
  PYTHON                      the interpreter (default .venv/bin/python, else python3)

Exit status: 0 when a verified checkpoint is in place (also when a download failed but the good
checkpoint already in place was kept: a WARNING is printed; --strict makes that 1), or with
--if-available when nothing is shipped yet; 1 when no usable checkpoint is left; 2 for usage.
The checkpoint in place is never modified by a failed attempt."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog=os.environ.get("WORKSHOP_CHECKPOINT_PROG", "download_checkpoint.sh"),
        description="Make the course's trained weights ready (offline: no training needed).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="download this release (overrides WORKSHOP_CHECKPOINT_URL)")
    p.add_argument("--archive", metavar="FILE", help="install this local release archive")
    p.add_argument("--dir", help="unpack here (overrides WORKSHOP_CHECKPOINT_DIR)")
    p.add_argument("--force", action="store_true", help="reinstall even if already in place")
    p.add_argument("--if-available", action="store_true",
                   help="exit 0 with a note when no checkpoint is shipped yet")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 1) when a download fails even if a good checkpoint is kept")
    p.add_argument("--verify", action="store_true",
                   help="only check the checkpoint in place; exit 1 if it does not verify")
    p.add_argument("--build", action="store_true",
                   help="retrain everything (python -m workshop.train all), pack the archive, "
                        "rewrite the manifest and install it (slow)")
    p.add_argument("--with-imagenet", action="store_true",
                   help="also cache Keras' MobileNetV2 ImageNet weights (needs a network; "
                        "optional, the course never depends on it)")
    args = p.parse_args(argv)
    if args.dir:
        os.environ["WORKSHOP_CHECKPOINT_DIR"] = os.path.abspath(args.dir)

    def err(msg: str) -> None:
        print(f"download_checkpoint: error: {msg}", file=sys.stderr, flush=True)

    try:
        if args.verify:
            d = checkpoint_dir()
            problems = verify(d)
            if problems:
                err(f"the checkpoint in {d} does not verify:\n  " + "\n  ".join(problems)
                    + f"\nRun {SCRIPT} to reinstall it.")
                return 1
            print(f"The checkpoint in {d} verifies.")
            return 0
        if args.build:
            if args.url or args.archive:
                p.error("--build packs what it trains; it takes no --url or --archive")
            build()
            rc = 0
        else:
            res = prepare(url=args.url, archive=args.archive, force=args.force,
                          if_available=args.if_available, strict=args.strict)
            print(res.message, file=sys.stderr if res.warning else sys.stdout, flush=True)
            rc = 0
        if args.with_imagenet:
            try:
                cache_imagenet()
            except CheckpointError as e:
                print(f"WARNING: ImageNet weights not cached (optional): {e}", file=sys.stderr)
        return rc
    except CheckpointError as e:
        err(str(e))
        return 1
    except KeyboardInterrupt:
        err("interrupted; the checkpoint in place is unchanged")
        return 130


if __name__ == "__main__":
    sys.exit(main())
