"""Where a step's messages go: its rule's log file (logging, stdout, stderr and TensorFlow's C++ lines)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("cxr14")


@contextlib.contextmanager
def logged(path: str | Path):
    """Send logging, stdout and stderr (tqdm bars) of a step to `path`; a failure is logged with
    its traceback before it propagates, so the log says why the job failed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        # Point the file descriptors there too, so TensorFlow's C++ messages land in the log.
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except Exception:
            log.exception("step failed")
            raise
        finally:
            root.removeHandler(handler)
            fh.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
