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
import itertools
import re
from dataclasses import dataclass, field

# Where each run's files are: rules and the CLI both spell them from here.
RUN = "results/runs/{run}"
MODEL = RUN + "/train/model.keras"
THRESHOLDS = RUN + "/evaluate/thresholds.json"
CALIBRATION = RUN + "/calibrate/calibration.json"

SECTIONS = ("train", "shards", "evaluate")
SHARD_KEYS = ("image_size", "encoding")  # what makes a different set of shards
RESERVED = {"all", "runs", "leaderboard", "demo", "download", "extract", "clean", "shards", "train", "calibrate",
            "evaluate", "app", "resume", "logs", "benchmarks", "results"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
DEFAULT = "default"


class RunError(ValueError):
    """A run, sweep or ensemble in the config that cannot be built; the message names it."""


@dataclass
class Run:
    name: str
    train: dict
    shards: dict            # image_size and encoding
    evaluate: dict
    members: list[str] = field(default_factory=list)   # an ensemble's trained runs
    weights: list[float] = field(default_factory=list)
    group: str | None = None                            # the run a repeat belongs to

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def layout(self) -> str:
        """The shard set this run reads, e.g. `224px-raw`."""
        return layout(self.shards["image_size"], self.shards["encoding"])

    def settings(self) -> dict:
        """Flat `section.key` settings, for the leaderboard's 'differs from the reference' column."""
        if self.is_ensemble:
            return {"ensemble": " + ".join(self.members),
                    **({"weights": ", ".join(f"{w:g}" for w in self.weights)} if self.weights else {}),
                    **{f"evaluate.{k}": v for k, v in self.evaluate.items()}}
        flat = {f"train.{k}": v for k, v in self.train.items() if k != "augment"}
        flat.update({f"train.augment.{k}": v for k, v in (self.train["augment"] or {}).items()})
        flat["train.augment"] = "on" if self.train["augment"] else "off"
        flat.update({f"shards.{k}": v for k, v in self.shards.items()})
        flat.update({f"evaluate.{k}": v for k, v in self.evaluate.items()})
        return flat


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
        seeds = [settings["train"]["seed"] + k for k in range(repeats)]
        for seed in seeds:
            run_name = f"{name}-seed{seed}" if repeats > 1 else name
            train = {**settings["train"], "seed": seed}
            runs[run_name] = Run(run_name, train, {k: settings["shards"][k] for k in SHARD_KEYS},
                                 settings["evaluate"], group=name if repeats > 1 else None)
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
        raise RunError(f"run name {name!r} is not allowed: use letters, digits and _ . = + - (not starting "
                       f"with a sign), and none of the reserved folder names {sorted(RESERVED)}")


def _merged(name: str, base: dict, spec: dict) -> dict:
    """The run's train, shards and evaluate sections: the config's, with the run's overrides."""
    unknown = set(spec) - {*SECTIONS, "repeats"}
    if unknown:
        raise RunError(f"run {name!r}: unknown key(s) {sorted(unknown)}; a run takes {[*SECTIONS, 'repeats']} "
                       "(or ensemble and weights)")
    merged = copy.deepcopy(base)
    for section in SECTIONS:
        _override(name, section, merged[section], spec.get(section) or {})
    return _validated(name, merged)


def _override(name: str, section: str, settings: dict, override: dict) -> None:
    """Apply a run's override of one section to `settings`, in place: known keys only, read as the
    schema's types (from `--config` they arrive as strings); `augment` is merged key by key."""
    from .config import coerce, schema

    allowed = SHARD_KEYS if section == "shards" else tuple(settings)
    bad = set(override) - set(allowed)
    if bad:
        raise RunError(f"run {name!r}: unknown {section} key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    for key, value in override.items():
        value = coerce(value, schema()["properties"][section]["properties"][key])
        if key == "augment" and isinstance(value, dict) and settings[key]:
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value


def _validated(name: str, sections: dict) -> dict:
    """`sections` checked against the schema, as a config holding them would be."""
    from .config import ConfigError, validate

    try:
        validate({"archive_catalog": {}, **sections})
    except ConfigError as exc:  # it names the key and the reason
        raise RunError(f"run {name!r}: " + "; ".join(line.strip() for line in str(exc).splitlines()[1:])) from exc
    return sections


def _ensemble(name: str, spec: dict, runs: dict[str, Run], base: dict) -> Run:
    unknown = set(spec) - {"ensemble", "weights", "evaluate"}
    if unknown:
        raise RunError(f"ensemble {name!r}: unknown key(s) {sorted(unknown)}; an ensemble takes ensemble, weights, evaluate")
    members: list[str] = []
    for member in spec["ensemble"] or []:
        copies = [r.name for r in runs.values() if r.group == member] or ([member] if member in runs else [])
        if not copies:
            raise RunError(f"ensemble {name!r}: member {member!r} is not a trained run; trained runs are "
                           f"{sorted(runs)} (an ensemble cannot contain another ensemble)")
        members += copies
    if len(members) < 2:
        raise RunError(f"ensemble {name!r} needs at least two member runs, not {members}")
    weights = [float(w) for w in spec.get("weights") or []]
    if weights and (len(weights) != len(spec["ensemble"]) or min(weights) <= 0):
        raise RunError(f"ensemble {name!r}: give one positive weight per listed member ({len(spec['ensemble'])}), "
                       f"not {spec['weights']}")
    if weights:  # a repeated member's weight is shared by its copies
        per_member = []
        for member, w in zip(spec["ensemble"], weights):
            per_member += [w] * max(1, sum(r.group == member for r in runs.values()))
        weights = per_member
    evaluate = copy.deepcopy(base["evaluate"])
    _override(name, "evaluate", evaluate, spec.get("evaluate") or {})
    _validated(name, {"evaluate": evaluate})
    return Run(name, {}, dict(runs[members[0]].shards), evaluate, members=members, weights=weights)


def _sweep(sweep: str, grid: dict, train_keys: set[str]) -> dict[str, dict]:
    if not grid:
        raise RunError(f"sweep {sweep!r} is empty: give it keys with lists of values")
    keys = list(grid)
    for key in keys:
        if key not in train_keys and key not in SHARD_KEYS:
            raise RunError(f"sweep {sweep!r}: unknown key {key!r}; a sweep varies train keys "
                           f"{sorted(train_keys)} or {list(SHARD_KEYS)}")
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


def on_disk() -> dict[str, tuple[str, str | None, str | None]]:
    """The trained runs with a saved model under results/runs/ (from the working directory):
    name -> (model, thresholds or None, calibration or None)."""
    from pathlib import Path

    found = {}
    for model in sorted(Path().glob(MODEL.format(run="*"))):
        run = model.parts[-3]
        sidecars = [Path(pattern.format(run=run)) for pattern in (THRESHOLDS, CALIBRATION)]
        found[run] = (str(model), *(str(p) if p.exists() else None for p in sidecars))
    return found


def served(run: str | None, model: str | None, thresholds: str | None,
           calibration: str | None = None) -> tuple[dict[str, tuple], str]:
    """What `cxr14 app` and `cxr14 predict` serve: a model file, or the trained runs on disk
    (starting with `run`); (name -> (model, thresholds, calibration), the first name). SystemExit
    says why not."""
    if model:
        return {"model": (model, thresholds, calibration)}, "model"
    runs = on_disk()
    if not runs:
        raise SystemExit(f"no trained run under {RUN.format(run='*')}: run the workflow first, or give --model")
    first = run or next(iter(runs))
    if first not in runs:
        raise SystemExit(f"run {first!r} has no trained model ({MODEL.format(run=first)}); trained runs: "
                         f"{', '.join(runs)} (an ensemble has no model of its own: use one of its members)")
    if thresholds or calibration:
        own = runs[first]
        runs[first] = (own[0], thresholds or own[1], calibration or own[2])
    return runs, first
