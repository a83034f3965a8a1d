"""Where Snakemake's calling habits stop: a rule script hands its rule's named input, output and
params to one step function through `run`, which translates them once, here.

- An input a rule leaves out for some jobs is `[]` to Snakemake; the step gets None.
- A per-run input (one file of each of several runs, `per_run`) is a list to Snakemake; the step
  gets {run: file}, the run read from each path (results/runs/<run>/...). A per-dataset input (a file
  of each run on each external collection, `per_dataset`) becomes {dataset: {run: file}}. An input
  of one or more files (`lists`) is always a list.
- A run's typed settings (`settings.TrainSettings`, `settings.EvaluateSettings`) reach the rule as a plain
  dict (Snakemake records params by their repr); the step gets the typed settings back.
- The `code` param (the fingerprint of the package code the step runs, see `fingerprint`) is there
  for Snakemake to rerun the step when that code changes; the step does not take it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..logs import logged
from ..paths import dataset_of, run_of

CODE = "code"


def arguments(
    snakemake,
    per_run: Iterable[str] = (),
    settings: type | None = None,
    threads: bool = False,
    per_dataset: Iterable[str] = (),
    lists: Iterable[str] = (),
) -> dict:
    """The keyword arguments of a step function from a rule script's `snakemake` object."""
    per_run, per_dataset, lists = set(per_run), set(per_dataset), set(lists)
    kwargs = {}
    for name, value in {**snakemake.input}.items():
        files = [value] if isinstance(value, str) else list(value)
        if name in per_run:
            kwargs[name] = {run_of(path): path for path in files}
        elif name in per_dataset:
            kwargs[name] = {}
            for path in files:
                kwargs[name].setdefault(dataset_of(path), {})[run_of(path)] = path
        elif name in lists:
            kwargs[name] = files
        elif not isinstance(value, str) and len(value) == 0:
            kwargs[name] = None
        else:
            kwargs[name] = value
    kwargs.update({**snakemake.output})
    params = {name: value for name, value in {**snakemake.params}.items() if name != CODE}
    if settings is not None:
        params["settings"] = settings.of(params["settings"])
    kwargs.update(params)
    if threads:
        kwargs["threads"] = snakemake.threads
    return kwargs


def run(step: Callable, snakemake, **translation):
    """Call `step` with its rule's named input, output and params (and `threads`), in the rule's log;
    `translation`: how (`arguments`' keywords: per_run, settings, threads, per_dataset, lists)."""
    with logged(snakemake.log[0]):
        return step(**arguments(snakemake, **translation))
