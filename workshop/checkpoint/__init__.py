"""The course's trained weights: one archive, checked by SHA-256, unpacked atomically.

The repository ships ``checkpoint/workshop-checkpoint.tar.gz`` (at most 20 MB) and
``checkpoint/MANIFEST.json``; ``./download_checkpoint.sh`` (a thin wrapper around
``python -m workshop.checkpoint``) unpacks it into ``checkpoints/`` at the repository root, or
into ``$WORKSHOP_CHECKPOINT_DIR``. An offline set-up and CI therefore never train.

  manifest.py   the format: MANIFEST.json and CHECKPOINT.json, pack and unpack an archive,
                verify an unpacked checkpoint; ``path``, ``ready_dir``, ``figures``
  fetch.py      ``prepare``: pick the archive (shipped, or a release by URL or file), download
                it with ``keras.utils.get_file``, check its sha256, unpack it beside the target
                and swap it in; keep a good checkpoint when that fails
  __main__.py   the command line (``./download_checkpoint.sh --help``)

Retraining the models and repacking the archive (``--build``) is
``workshop.train.build_checkpoint``.

Python API for the rest of the course::

    from workshop import checkpoint
    checkpoint.path("classifier")        # Path to classifier.weights.h5 (verified)
    checkpoint.ready_dir()               # the verified directory (e.g. detector_*.weights.h5)
    checkpoint.figures()                 # dict of metrics.json
    checkpoint.verify()                  # [] when the checkpoint is complete and intact

Environment: ``WORKSHOP_CHECKPOINT_DIR`` (unpacked location), ``WORKSHOP_CHECKPOINT_URL``,
``WORKSHOP_CHECKPOINT_SHA256``, ``WORKSHOP_CHECKPOINT_TIMEOUT`` (seconds, default 30),
``WORKSHOP_CHECKPOINT_MANIFEST`` (another shipped manifest; its archive sits beside it).
"""

from .fetch import (
    DEFAULT_TIMEOUT,
    IMAGENET_FILE,
    FetchError,
    NothingShipped,
    Result,
    cache_imagenet,
    prepare,
)
from .manifest import (
    ARCHIVE_NAME,
    FORMAT,
    MANIFEST_NAME,
    METRICS,
    MODELS,
    ROOT,
    SCRIPT,
    CheckpointError,
    build_manifest,
    checkpoint_dir,
    figures,
    load_manifest,
    manifest_path,
    pack,
    path,
    ready_dir,
    sha256_file,
    unpack,
    verify,
)

__all__ = [
    "ARCHIVE_NAME", "DEFAULT_TIMEOUT", "FORMAT", "IMAGENET_FILE", "MANIFEST_NAME", "METRICS",
    "MODELS", "ROOT", "SCRIPT", "CheckpointError", "FetchError", "NothingShipped", "Result",
    "build_manifest", "cache_imagenet", "checkpoint_dir", "figures", "load_manifest",
    "manifest_path", "pack", "path", "prepare", "ready_dir", "sha256_file", "unpack", "verify",
]
