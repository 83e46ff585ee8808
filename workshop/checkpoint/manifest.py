"""The checkpoint format: the manifests, the archive (pack, unpack) and the unpacked checkpoint
(verify, and the ``path`` / ``ready_dir`` / ``figures`` the course calls).

Standard library only, so ``./download_checkpoint.sh`` works before the requirements are
installed. Archive layout (flat: regular files at the top level, nothing else)::

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
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE_NAME = "workshop-checkpoint.tar.gz"
MANIFEST_NAME = "MANIFEST.json"
INNER_MANIFEST = "CHECKPOINT.json"
INSTALL_RECORD = ".installed.json"
METRICS = "metrics.json"
MODELS = ("classifier", "backbone", "unet", "detector")
FORMAT = 1
MAX_ARCHIVE_BYTES = 20 * 2**20          # what the repository may ship
MAX_UNPACKED_BYTES = 2 * 2**30          # guards against a decompression bomb
SCRIPT = "./download_checkpoint.sh"
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class CheckpointError(RuntimeError):
    """Something about the checkpoint is wrong; the message says what and what to do."""


# --------------------------------------------------------------------------- locations

def checkpoint_dir() -> Path:
    """The unpacked checkpoint: ``$WORKSHOP_CHECKPOINT_DIR`` or ``<repo>/checkpoints``."""
    env = os.environ.get("WORKSHOP_CHECKPOINT_DIR")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    return ROOT / "checkpoints"


def manifest_path() -> Path:
    """The shipped manifest: ``$WORKSHOP_CHECKPOINT_MANIFEST`` or ``checkpoint/MANIFEST.json``
    (the archive it names sits beside it)."""
    env = os.environ.get("WORKSHOP_CHECKPOINT_MANIFEST")
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    return ROOT / "checkpoint" / MANIFEST_NAME


def load_manifest(path: str | os.PathLike | None = None) -> dict | None:
    """The shipped manifest as a dict, or None when the repository ships none."""
    path = Path(path) if path is not None else manifest_path()
    if not path.exists():
        return None
    try:
        man = read_json(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({e}); restore it with "
                              f"`git checkout -- {path.name}` or rebuild with {SCRIPT} --build")
    problems = manifest_problems(man, with_archive=True)
    if problems:
        raise CheckpointError(f"{path} is malformed: " + "; ".join(problems))
    return man


def manifest_problems(man, with_archive: bool) -> list[str]:
    """What is wrong with a manifest (``MANIFEST.json`` with its ``archive`` entry, or an
    archive's ``CHECKPOINT.json`` without); an empty list when nothing is."""
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
            if not NAME_RE.match(name) or name in (INNER_MANIFEST, INSTALL_RECORD):
                out.append(f"member name {name!r} is not allowed")
            elif (not isinstance(m, dict) or not SHA_RE.match(str(m.get("sha256")))
                  or not isinstance(m.get("size"), int)):
                out.append(f"member {name!r} needs a lowercase hex 'sha256' and an int 'size'")
    if with_archive:
        a = man.get("archive")
        if (not isinstance(a, dict) or not NAME_RE.match(str(a.get("name")))
                or not SHA_RE.match(str(a.get("sha256"))) or not isinstance(a.get("size"), int)):
            out.append("'archive' needs 'name', a lowercase hex 'sha256' and an int 'size'")
    return out


# --------------------------------------------------------------------------- verify, read

def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
        inner = read_json(inner_path)
    except FileNotFoundError:
        return [f"{inner_path} is missing"]
    except (OSError, ValueError) as e:
        return [f"{inner_path} is unreadable ({e})"]
    problems = [f"{INNER_MANIFEST}: {p}" for p in manifest_problems(inner, with_archive=False)]
    if problems:
        return problems
    members = inner["members"]
    if manifest is not None and manifest.get("members") != members:
        problems.append(f"{INNER_MANIFEST} lists other files than the manifest "
                        f"({diff_members(manifest.get('members') or {}, members)})")
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


def diff_members(expected: dict, got: dict) -> str:
    """Which members are missing, unexpected or different, in words."""
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


_VERIFIED: dict[str, tuple] = {}      # directory -> its listing when it last verified


def _signature(d: Path) -> tuple:
    sig = []
    for name in sorted(os.listdir(d)):
        st = os.stat(d / name)
        sig.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sig)


def forget(d: Path) -> None:
    """Drop the cached verdict on ``d`` (after installing into it)."""
    _VERIFIED.pop(str(d), None)


def ready_dir(dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint directory, verified; raises CheckpointError (telling the user to run
    ``./download_checkpoint.sh``) when it is missing or damaged. Cheap after the first call:
    the sha256 sums are checked again only when the directory's listing changes."""
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


def path(name: str, dir: str | os.PathLike | None = None) -> Path:
    """Path to a verified checkpoint file.

    ``name`` is a member name ("unet.weights.h5") or a model name ("unet"), which picks the
    member ``unet.weights.h5`` or ``unet.keras``. Raises CheckpointError (telling the user to run
    ``./download_checkpoint.sh``) when the checkpoint is missing or damaged, or lacks ``name``.
    """
    d = ready_dir(dir)
    members = sorted(read_json(d / INNER_MANIFEST)["members"])
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
    d = ready_dir(dir)
    inner = read_json(d / INNER_MANIFEST)
    if METRICS in inner["members"]:
        return read_json(d / METRICS)
    return dict(inner.get("figures") or {})


# --------------------------------------------------------------------------- pack

def now() -> str:
    """The current UTC time as ``2025-01-02T03:04:05Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


@contextlib.contextmanager
def _atomic_file(target: Path):
    """Yield a temporary path beside ``target``; it replaces ``target`` when the block ends
    without an error and is removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def pack(files, out_archive: str | os.PathLike, manifest_path: str | os.PathLike,
         figures: dict | None, *, version: str | None = None, created: str | None = None,
         max_bytes: int = MAX_ARCHIVE_BYTES) -> dict:
    """Write a checkpoint archive and its repository manifest; return the manifest.

    files: paths (stored under their base names) or a mapping {member name: path}. A
    ``metrics.json`` is written from ``figures`` unless one is among ``files`` (then ``figures``
    None means "read them from it"). The archive is reproducible (sorted, fixed owners and
    times, a gzip header without name or time) and written atomically; more than ``max_bytes``
    is an error.
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
        if not NAME_RE.match(name) or name in (INNER_MANIFEST, INSTALL_RECORD):
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
        payload[METRICS] = json_bytes(figures)
    created = created or now()
    version = version or created[:10].replace("-", ".")
    members = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
               for n, b in payload.items()}
    payload[INNER_MANIFEST] = json_bytes({"format": FORMAT, "version": version,
                                          "created": created, "members": members,
                                          "figures": figures})
    try:
        mtime = int(_dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        mtime = 0

    out_archive = Path(out_archive)
    with _atomic_file(out_archive) as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name in [INNER_MANIFEST] + sorted(n for n in payload if n != INNER_MANIFEST):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(payload[name]), mtime, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tf.addfile(info, io.BytesIO(payload[name]))
        size = tmp.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"the archive would be {size / 2**20:.1f} MB, over the "
                                  f"{max_bytes / 2**20:.0f} MB the repository may ship; "
                                  "make the models smaller")
    manifest = build_manifest(out_archive, figures, version=version, created=created)
    with _atomic_file(Path(manifest_path)) as tmp:
        tmp.write_bytes(json_bytes(manifest))
    return manifest


def build_manifest(archive: str | os.PathLike, figures: dict | None = None, *,
                   version: str | None = None, created: str | None = None) -> dict:
    """The repository manifest of a checkpoint archive (see the module docstring).

    The archive is unpacked (into a temporary folder beside it) and checked as an install
    would; ``version``, ``created`` and ``figures`` default to the ones in its CHECKPOINT.json.
    """
    archive = Path(archive)
    sha, size = sha256_file(archive)
    with tempfile.TemporaryDirectory(prefix=f".{archive.name}.", dir=archive.parent) as tmp:
        inner = unpack(archive, Path(tmp), None, str(archive))
    return {
        "format": FORMAT,
        "version": version or inner.get("version") or now()[:10].replace("-", "."),
        "created": created or inner.get("created") or now(),
        "archive": {"name": archive.name, "sha256": sha, "size": size},
        "members": inner["members"],
        "figures": figures if figures is not None else inner.get("figures", {}),
    }


# --------------------------------------------------------------------------- unpack

def unpack(archive: Path, dest: Path, expected: dict | None, label: str) -> dict:
    """Unpack a checkpoint archive into the empty folder ``dest``; return its CHECKPOINT.json.

    Every file is checked against the archive's CHECKPOINT.json, and against ``expected``
    (MANIFEST.json's members) when given. Safety is tarfile's "data" extraction filter:
    nothing lands outside ``dest`` (absolute paths are made relative, ``..``, links out of
    ``dest`` and device files are refused). The course's own rule comes on top: regular files
    at the top level only, :data:`MAX_UNPACKED_BYTES` in all. ``label`` names the archive in
    error messages.
    """
    if not hasattr(tarfile, "data_filter"):
        raise CheckpointError(f"unpacking needs tarfile's extraction filters (Python 3.10.12+, "
                              f"3.11.4+ or 3.12+); this is Python {sys.version.split()[0]}: "
                              "set PYTHON to a newer one")
    total = 0

    def flat_data(member: tarfile.TarInfo, where: str) -> tarfile.TarInfo | None:
        nonlocal total
        member = tarfile.data_filter(member, where)
        name = os.path.normpath(member.name)
        if name == "." and member.isdir():
            return None                            # the "./" entry of `tar -C dir .`
        if not member.isreg() or not NAME_RE.match(name):
            raise CheckpointError(f"{label}: archive member {member.name!r} is not a regular "
                                  "file at the top level (the checkpoint archive is flat); "
                                  "refusing to unpack")
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise CheckpointError(f"{label} unpacks to more than {MAX_UNPACKED_BYTES >> 20} MB;"
                                  " refusing")
        return member.replace(name=name, deep=False)

    try:
        with tarfile.open(archive, "r:gz") as tf:
            tf.extractall(dest, filter=flat_data)
    except tarfile.FilterError as e:
        raise CheckpointError(f"{label}: {e}; refusing to unpack")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CheckpointError(f"{label} is truncated or corrupt ({type(e).__name__}: {e})")

    try:
        inner = read_json(dest / INNER_MANIFEST)
    except FileNotFoundError:
        raise CheckpointError(f"{label} has no {INNER_MANIFEST}; it is not a course checkpoint "
                              f"archive (build one with {SCRIPT} --build)")
    except ValueError as e:
        raise CheckpointError(f"the {INNER_MANIFEST} in {label} is not JSON ({e})")
    problems = manifest_problems(inner, with_archive=False)
    if problems:
        raise CheckpointError(f"the {INNER_MANIFEST} in {label} is malformed: "
                              + "; ".join(problems))
    members = {}
    for f in sorted(dest.iterdir()):
        if f.name != INNER_MANIFEST:
            sha, size = sha256_file(f)
            members[f.name] = {"sha256": sha, "size": size}
    if inner["members"] != members:
        raise CheckpointError(f"{label}: files do not match its {INNER_MANIFEST} "
                              f"({diff_members(inner['members'], members)})")
    if expected is not None and expected != members:
        raise CheckpointError(f"{label}: files do not match {MANIFEST_NAME} "
                              f"({diff_members(expected, members)})")
    return inner
