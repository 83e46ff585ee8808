"""``python -m workshop.checkpoint`` (what ``./download_checkpoint.sh`` runs): make the course's
trained weights ready. ``--help`` says everything."""

from __future__ import annotations

import argparse
import os
import sys

from .fetch import DEFAULT_TIMEOUT, cache_imagenet, prepare
from .manifest import ARCHIVE_NAME, MANIFEST_NAME, SCRIPT, CheckpointError, checkpoint_dir, verify

EPILOG = f"""\
With no options: if the checkpoint in place verifies, say so and exit 0; otherwise unpack the
shipped checkpoint/{ARCHIVE_NAME} after checking its sha256 against checkpoint/{MANIFEST_NAME}.

Environment:
  WORKSHOP_CHECKPOINT_DIR     where to unpack (default: checkpoints/ in the repository)
  WORKSHOP_CHECKPOINT_URL     download this release instead of using the shipped archive
                              (with Keras' get_file: a progress bar, then the sha256 check)
  WORKSHOP_CHECKPOINT_SHA256  its expected sha256 (also for --archive); without it the sha256
                              {MANIFEST_NAME} lists is expected (a mirror of the shipped
                              archive). Unverifiable downloads are refused.
  WORKSHOP_CHECKPOINT_TIMEOUT network timeout in seconds (default {DEFAULT_TIMEOUT:g})
  PYTHON                      the interpreter (default .venv/bin/python, else python3)

Exit status: 0 when a verified checkpoint is in place (also when a download failed but the good
checkpoint already in place was kept: a WARNING is printed; --strict makes that 1), or with
--if-available when nothing is shipped; 1 when no usable checkpoint is left; 2 for usage.
The checkpoint in place is never modified by a failed attempt."""


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # a download imports Keras
    p = argparse.ArgumentParser(
        prog=os.environ.get("WORKSHOP_CHECKPOINT_PROG", "download_checkpoint.sh"),
        description="Make the course's trained weights ready (offline: no training needed).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="download this release (overrides WORKSHOP_CHECKPOINT_URL)")
    p.add_argument("--archive", metavar="FILE", help="install this local release archive")
    p.add_argument("--dir", help="unpack here (overrides WORKSHOP_CHECKPOINT_DIR)")
    p.add_argument("--force", action="store_true", help="reinstall even if already in place")
    p.add_argument("--if-available", action="store_true",
                   help="exit 0 with a note when no checkpoint is shipped")
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
            from ..train import build_checkpoint

            build_checkpoint()
        else:
            res = prepare(url=args.url, archive=args.archive, force=args.force,
                          if_available=args.if_available, strict=args.strict)
            print(res.message, file=sys.stderr if res.warning else sys.stdout, flush=True)
        if args.with_imagenet:
            try:
                cache_imagenet()
            except CheckpointError as e:
                print(f"WARNING: ImageNet weights not cached (optional): {e}", file=sys.stderr)
        return 0
    except CheckpointError as e:
        err(str(e))
        return 1
    except KeyboardInterrupt:
        err("interrupted; the checkpoint in place is unchanged")
        return 130


if __name__ == "__main__":
    sys.exit(main())
