"""Named runs: the config's `runs` and `sweeps` resolved into the list of models to train, ensembles
to average, and the settings of each, checked before any job starts.

A run overrides the config's `train` section, the shard `image_size` and `encoding`, and the
`evaluate` section. `repeats: N` trains N copies with seeds seed, seed+1, ... (named `NAME-seedS`);
`ensemble: [a, b]` averages the probabilities of trained runs (a repeated run stands for all its
copies), with optional `weights`. A sweep `{NAME: {key: [values], ...}}` is the grid of its keys,
one run per combination, named `NAME-key_value-key_value`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, check, schema

# Where each run's files are: rules and the CLI both spell them from here.
RUN = "results/runs/{run}"
MODEL = RUN + "/train/model.keras"
THRESHOLDS = RUN + "/evaluate/thresholds.json"
CALIBRATION = RUN + "/calibrate/calibration.json"
EXTERNAL = RUN + "/external/{dataset}"  # a run's files on an external collection

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


_PYTHON = {"integer": int, "number": float, "boolean": bool, "string": str}


def _python_type(node: dict):
    """The Python type of a schema key (`enum`s are strings; `null` adds None)."""
    kinds = [node["type"]] if isinstance(node.get("type"), str) else node.get("type", ["string"])
    types = [_PYTHON[k] for k in kinds if k in _PYTHON]
    kind = types[0] if types else object
    return kind | None if "null" in kinds else kind


def _settings_class(name: str, section: str, node: dict, nested: dict | None = None) -> type:
    """A frozen dataclass with one field per key of a schema section, in the schema's order and of
    its types. `of` builds one from the section as validation left it (`nested` objects as theirs)."""
    nested = nested or {}
    fields = [
        (key, nested[key] | None if key in nested else _python_type(sub)) for key, sub in node["properties"].items()
    ]

    def of(cls, values: dict):
        values = dict(values)
        for key, kind in nested.items():
            if values[key] is not None:
                values[key] = kind.of(values[key])
        return cls(**values)

    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace={"of": classmethod(of), "section": section})
    cls.__module__ = __name__  # (make_dataclass takes `module` from Python 3.12 on)
    cls.__doc__ = f"The checked `{section}` settings of a run (cxr14/schemas/config.schema.yaml)."
    return cls


_TRAIN = schema()["properties"]["train"]
AugmentSettings = _settings_class("AugmentSettings", "train.augment", _TRAIN["properties"]["augment"])
TrainSettings = _settings_class("TrainSettings", "train", _TRAIN, {"augment": AugmentSettings})
EvaluateSettings = _settings_class("EvaluateSettings", "evaluate", schema()["properties"]["evaluate"])
_DATASET = schema()["properties"]["datasets"]["additionalProperties"]
DatasetSettings = _settings_class("DatasetSettings", "datasets.<name>", _DATASET)


def dataset_param(dataset: dict) -> dict:
    """A dataset's checked config as a rule param: every key of the schema, in its order (None for a
    key its format does not use)."""
    return {key: dataset.get(key) for key in _DATASET["properties"]}


def as_param(settings) -> dict:
    """Typed settings as a rule param: a plain dict in the schema's order (Snakemake records a param
    by its repr, and a rule script unpickles its params where cxr14 may not be importable)."""
    return dataclasses.asdict(settings)


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


def run_of(path) -> str:
    """The run a file under results/runs/<run>/ belongs to."""
    prefix = RUN.split("{run}")[0]
    path = str(path)
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not a run's file (under {prefix})")
    return path[len(prefix) :].split("/", 1)[0]


def dataset_of(path) -> str:
    """The collection a run's file under results/runs/<run>/external/<dataset>/ belongs to."""
    parts = Path(str(path)).parts
    if "external" not in parts[3:-1]:
        raise ValueError(f"{path} is not a run's file on an external collection ({EXTERNAL})")
    return parts[parts.index("external", 3) + 1]


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
