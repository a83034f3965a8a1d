"""Test-only fail points: with this folder on PYTHONPATH, `CXR14_HANG` makes every Python process of a
Snakemake run (the jobs included) freeze at a chosen point, after writing its pid to
`CXR14_HANG_MARKER`, so a test can `kill -9` the run exactly there instead of after a guessed sleep.

`CXR14_HANG` is `WHERE#N` (hang at the N-th hit, default 1), WHERE being
- `replace:GLOB`: an os.replace whose destination matches GLOB (an output about to be committed), or
- `call:MODULE:QUALNAME[@CALLER]`: a call of that function or method, once MODULE is imported (only
  calls made from module CALLER, when given: `call:shutil:copyfileobj@cxr14.steps.extract`).
"""

import fnmatch
import os
import sys
import time

SPEC = os.environ.get("CXR14_HANG")


def _hang():
    with open(os.environ["CXR14_HANG_MARKER"], "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        time.sleep(60)


def _counter(n):
    hits = [0]

    def hit():
        hits[0] += 1
        if hits[0] == n:
            _hang()

    return hit


if SPEC:
    where, _, count = SPEC.partition("#")
    hit = _counter(int(count or 1))
    kind, _, target = where.partition(":")
    if kind == "replace":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if fnmatch.fnmatch(os.path.abspath(dst), target):
                hit()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif kind == "call":
        import wrapt

        target, _, caller = target.partition("@")
        module, _, qualname = target.partition(":")

        def wrapper(wrapped, instance, args, kwargs):
            frame = sys._getframe(1)
            while frame.f_globals.get("__name__", "").startswith("wrapt"):
                frame = frame.f_back
            if not caller or frame.f_globals.get("__name__") == caller:
                hit()
            return wrapped(*args, **kwargs)

        wrapt.register_post_import_hook(lambda mod: wrapt.wrap_function_wrapper(mod, qualname, wrapper), module)
    else:
        raise ValueError(f"CXR14_HANG={SPEC!r}: expected replace:GLOB or call:MODULE:QUALNAME")
