"""Named runs: the config's `runs` and `sweeps` resolved into the list of models to train, ensembles
to average, and the settings of each, checked before any job starts.

A run overrides the config's `train` section, the shard `image_size` and `encoding`, and the
`evaluate` section. `repeats: N` trains N copies with seeds seed, seed+1, ... (named `NAME-seedS`);
`ensemble: [a, b]` averages the probabilities of trained runs (a repeated run stands for all its
copies), with optional `weights`. A sweep `{NAME: {key: [values], ...}}` is the grid of its keys,
one run per combination, named `NAME-key_value-key_value`. A fine-tune (`train.init: RUN`) starts
from another run's model and keeps its input and network; `train.data` names what a run trains on
(`nih`, a split collection, or several).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from dataclasses import dataclass, field

from ..constants import NIH
from ..settings import EvaluateSettings, TrainSettings, as_param, schema, sources
from .collections import dataset_param, is_split
from .config import ConfigError, check

SECTIONS = ("train", "shards", "evaluate")
SHARD_KEYS = ("image_size", "encoding")  # what makes a different set of shards
# Names a run cannot take: the folders and targets the workflow itself uses.
RESERVED = set(
    "all runs leaderboard demo download extract clean shards train calibrate evaluate app resume logs benchmarks "
    "results".split()
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
DEFAULT = "default"


class RunError(ValueError):
    """A run, sweep or ensemble in the config that cannot be built; the message names it."""


@dataclass
class Run:
    name: str
    train: TrainSettings | None  # None for an ensemble
    shards: dict  # image_size and encoding
    evaluate: EvaluateSettings
    members: list[str] = field(default_factory=list)  # an ensemble's trained runs
    weights: dict[str, float] | None = None  # an ensemble's, by member; None: equal
    group: str | None = None  # the run a repeat belongs to

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def starts_from(self) -> str | None:
        """The run a fine-tune starts from (`train.init`); None for a new model or an ensemble."""
        return self.train.init if self.train else None

    @property
    def layout(self) -> str:
        """The shard set this run reads, e.g. `224px-raw`."""
        return layout(self.shards["image_size"], self.shards["encoding"])

    def flat_settings(self) -> dict:
        """Flat `section.key` settings, for the leaderboard's 'differs from the reference' column."""
        evaluate = {f"evaluate.{k}": v for k, v in as_param(self.evaluate).items()}
        if self.is_ensemble:
            weights = {"weights": ", ".join(f"{w:g}" for w in self.weights.values())} if self.weights else {}
            return {"ensemble": " + ".join(self.members), **weights, **evaluate}
        train = as_param(self.train)
        augment = train.pop("augment")
        flat = {f"train.{k}": v for k, v in train.items()}
        flat.update({f"train.augment.{k}": v for k, v in (augment or {}).items()})
        flat["train.augment"] = "on" if augment else "off"
        flat.update({f"shards.{k}": v for k, v in self.shards.items()})
        return flat | evaluate


def reproducing_config(runs: dict[str, Run], name: str, datasets: dict) -> dict:
    """The config that makes run `name` again as it was resolved: every setting of it and of the runs
    it needs (an ensemble's members, a fine-tune's starting run), and the collections they train on."""
    needed, order = [name], []
    while needed:
        run = runs[needed.pop()]
        if run.name not in order:
            order.insert(0, run.name)
            needed += run.members + ([run.starts_from] if run.starts_from else [])
    specs, used = {}, set()
    for run in (runs[n] for n in order):
        evaluate = {"evaluate": as_param(run.evaluate)}
        if run.is_ensemble:
            weights = {"weights": list(run.weights.values())} if run.weights else {}
            specs[run.name] = {"ensemble": run.members, **weights, **evaluate}
        else:
            specs[run.name] = {"train": as_param(run.train), "shards": dict(run.shards), **evaluate}
            used |= set(sources(run.train.data)) - {NIH}
    collections = {d: {k: v for k, v in dataset_param(datasets[d]).items() if k in datasets[d]} for d in sorted(used)}
    return {"runs": specs, **({"datasets": collections} if collections else {})}


def layout(image_size: int, encoding: str) -> str:
    return f"{image_size}px-{encoding}"


def parse_layout(name: str) -> tuple[int, str]:
    size, encoding = name.split("px-")
    return int(size), encoding


def resolve(config: dict) -> dict[str, Run]:
    """name -> Run, in config order (runs, then sweeps); the `default` run when there are none."""
    specs = dict(config.get("runs") or {})
    for sweep, grid in (config.get("sweeps") or {}).items():
        for name, overrides in _sweep(sweep, grid, set(config["train"])).items():
            if name in specs:
                raise RunError(f"sweep {sweep!r} makes run {name!r}, which is also a run of its own")
            specs[name] = overrides
    if not specs:
        specs = {DEFAULT: {}}
    base = {s: copy.deepcopy(config[s]) for s in SECTIONS}
    runs: dict[str, Run] = {}
    for name, spec in specs.items():
        _check_name(name)
        spec = dict(spec or {})
        if "ensemble" in spec:
            continue
        settings = _merged(name, base, spec)
        repeats = spec.get("repeats", 1)
        train = TrainSettings.of(settings["train"])
        for seed in [train.seed + k for k in range(repeats)]:
            run_name = f"{name}-seed{seed}" if repeats > 1 else name
            runs[run_name] = Run(
                run_name,
                dataclasses.replace(train, seed=seed),
                {k: settings["shards"][k] for k in SHARD_KEYS},
                EvaluateSettings.of(settings["evaluate"]),
                group=name if repeats > 1 else None,
            )
    _check_data(runs, config.get("datasets") or {})
    _fine_tunes(runs, specs)
    for name, spec in specs.items():
        if spec and "ensemble" in spec:
            runs[name] = _ensemble(name, spec, runs, base)
    order = list(specs)
    return dict(sorted(runs.items(), key=lambda kv: order.index(kv[1].group or kv[0])))


def reference(config: dict, runs: dict[str, Run]) -> str:
    """The run every other is compared with: `leaderboard.reference`, else the first."""
    name = config["leaderboard"]["reference"] or next(iter(runs))
    if name not in runs:
        raise RunError(f"leaderboard.reference {name!r} is not a run; runs are {sorted(runs)}")
    return name


def groups(runs: dict[str, Run]) -> dict[str, list[str]]:
    """Repeated runs by the run they repeat."""
    out: dict[str, list[str]] = {}
    for run in runs.values():
        if run.group:
            out.setdefault(run.group, []).append(run.name)
    return out


def _check_name(name: str) -> None:
    if not NAME.match(str(name)) or name in RESERVED:
        raise RunError(
            f"run name {name!r} is not allowed: use letters, digits and _ . = + - (not starting "
            f"with a sign), and none of the reserved folder names {sorted(RESERVED)}"
        )


def _merged(name: str, base: dict, spec: dict) -> dict:
    """The run's train, shards and evaluate sections: the config's, with the run's overrides."""
    unknown = set(spec) - {*SECTIONS, "repeats"}
    if unknown:
        raise RunError(
            f"run {name!r}: unknown key(s) {sorted(unknown)}; a run takes {[*SECTIONS, 'repeats']} "
            "(or ensemble and weights)"
        )
    return {section: _overridden(name, section, base[section], spec.get(section) or {}) for section in SECTIONS}


def _overridden(name: str, section: str, settings: dict, override: dict) -> dict:
    """A section with a run's override applied (known keys only; `augment` merged key by key), then
    checked against the section's schema, which reads strings from `--config` as its types."""
    allowed = SHARD_KEYS if section == "shards" else tuple(settings)
    bad = set(override) - set(allowed)
    if bad:
        raise RunError(f"run {name!r}: unknown {section} key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    merged = copy.deepcopy(settings)
    for key, value in copy.deepcopy(override).items():
        if key == "augment" and isinstance(value, dict) and merged[key]:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return check(merged, schema()["properties"][section], where=section)
    except ConfigError as exc:
        raise RunError(f"run {name!r}: " + "; ".join(exc.problems)) from exc


def _check_data(runs: dict[str, Run], datasets: dict) -> None:
    """Each run's `train.data` as a list of sources, each NIH or a split collection, none twice."""
    for run in runs.values():
        data = sources(run.train.data)
        for source in data:
            if source != NIH and source not in datasets:
                raise RunError(
                    f"run {run.name!r}: train.data {source!r} is neither {NIH!r} nor a dataset; datasets are "
                    f"{sorted(datasets)}"
                )
            if source != NIH and not is_split(datasets[source]):
                raise RunError(
                    f"run {run.name!r}: dataset {source!r} has no train/val/test split to train on; give it "
                    "`split: own` (its own) or `split: {val: 0.1, test: 0.2}` (made at ingest)"
                )
        if len(set(data)) < len(data):
            raise RunError(f"run {run.name!r}: train.data lists a source twice: {data}")
        run.train = dataclasses.replace(run.train, data=data)


def _fine_tunes(runs: dict[str, Run], specs: dict) -> None:
    """A fine-tune (`train.init`) keeps its starting run's input size, encoding, backbone and dropout
    (the model it loads has them); setting another one is an error, as is a start that is not a
    trained run, or a chain of starts that loops."""
    for run in runs.values():
        chain = [run.name]
        while (start := runs[chain[-1]].starts_from) is not None:
            if start not in runs:
                repeats = [r for r in runs.values() if r.group == start]
                hint = f"; it is repeated: name one copy, e.g. {repeats[0].name!r}" if repeats else ""
                raise RunError(
                    f"run {chain[-1]!r}: train.init {start!r} is not a trained run{hint} (trained runs: {sorted(runs)})"
                )
            if start in chain:
                raise RunError(f"runs start from each other in a loop: {' -> '.join([*chain, start])}")
            chain.append(start)
    for run in runs.values():
        if run.starts_from is None:
            continue
        origin = runs[run.starts_from]
        while origin.starts_from is not None:
            origin = runs[origin.starts_from]
        spec = specs[run.group or run.name] or {}
        explicit = {**{f"train.{k}": v for k, v in (spec.get("train") or {}).items()},
                    **{f"shards.{k}": v for k, v in (spec.get("shards") or {}).items()}}  # fmt: skip
        kept = {
            "shards.image_size": origin.shards["image_size"],
            "shards.encoding": origin.shards["encoding"],
            "train.backbone": origin.train.backbone,
            "train.dropout": origin.train.dropout,
        }
        for key, value in kept.items():
            if key in explicit and _canonical(key, explicit[key]) != value:
                raise RunError(
                    f"run {run.name!r} starts from {run.starts_from!r}, whose model has {key} {value!r}, but sets "
                    f"{key} {explicit[key]!r}: a fine-tune keeps its starting model's input and network"
                )
        run.shards = {k: kept[f"shards.{k}"] for k in SHARD_KEYS}
        run.train = dataclasses.replace(run.train, backbone=origin.train.backbone, dropout=origin.train.dropout)


def _canonical(key: str, value):
    """A run's own setting read as the schema's type (`--config` hands strings)."""
    section, name = key.split(".")
    return check({name: value}, {"properties": {name: schema()["properties"][section]["properties"][name]}})[name]


def _ensemble(name: str, spec: dict, runs: dict[str, Run], base: dict) -> Run:
    unknown = set(spec) - {"ensemble", "weights", "evaluate"}
    if unknown:
        raise RunError(
            f"ensemble {name!r}: unknown key(s) {sorted(unknown)}; an ensemble takes ensemble, weights, evaluate"
        )
    members: list[str] = []
    for member in spec["ensemble"] or []:
        copies = [r.name for r in runs.values() if r.group == member] or ([member] if member in runs else [])
        if not copies:
            raise RunError(
                f"ensemble {name!r}: member {member!r} is not a trained run; trained runs are "
                f"{sorted(runs)} (an ensemble cannot contain another ensemble)"
            )
        members += copies
    if len(members) < 2:
        raise RunError(f"ensemble {name!r} needs at least two member runs, not {members}")
    listed = [float(w) for w in spec.get("weights") or []]
    if listed and (len(listed) != len(spec["ensemble"]) or min(listed) <= 0):
        raise RunError(
            f"ensemble {name!r}: give one positive weight per listed member ({len(spec['ensemble'])}), "
            f"not {spec['weights']}"
        )
    weights = None
    if listed:  # a repeated member's weight is shared by its copies
        weights = {}
        for member, w in zip(spec["ensemble"], listed):
            weights |= dict.fromkeys([r.name for r in runs.values() if r.group == member] or [member], w)
    evaluate = EvaluateSettings.of(_overridden(name, "evaluate", base["evaluate"], spec.get("evaluate") or {}))
    return Run(name, None, dict(runs[members[0]].shards), evaluate, members=members, weights=weights)


def _sweep(sweep: str, grid: dict, train_keys: set[str]) -> dict[str, dict]:
    if not grid:
        raise RunError(f"sweep {sweep!r} is empty: give it keys with lists of values")
    keys = list(grid)
    for key in keys:
        if key not in train_keys and key not in SHARD_KEYS:
            raise RunError(
                f"sweep {sweep!r}: unknown key {key!r}; a sweep varies train keys "
                f"{sorted(train_keys)} or {list(SHARD_KEYS)}"
            )
        values = grid[key]
        if not isinstance(values, list) or not values:
            raise RunError(f"sweep {sweep!r}: {key} needs a list of values, not {values!r}")
    out = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        name = "-".join([sweep, *(f"{k}_{_label(v)}" for k, v in zip(keys, combo))])
        overrides: dict = {}
        for key, value in zip(keys, combo):  # (values are read as the schema's types with the run's)
            section = "shards" if key in SHARD_KEYS else "train"
            overrides.setdefault(section, {})[key] = value
        out[name] = overrides
    return out


def _label(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)
