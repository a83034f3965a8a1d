"""What a step needs to read its settings: the schema (the one home of every default) and a typed,
frozen settings class per section a rule hands a step (`train`, `evaluate`, `monitor`, a dataset's).

It sits low and holds no logic of any step or of the workflow's resolution of runs, so that every step
can import it without its code fingerprint taking in code that cannot change its results
(docs/rerunning.md). Validating a whole config (coercing `--config` strings, filling defaults) is the
workflow's (`workflow.config`); resolving runs and collections is `workflow.runs`'s and
`workflow.collections`'.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources

import yaml

SCHEMA = resources.files("cxr14") / "schemas" / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def defaults(section: str) -> dict:
    """The schema's defaults of one section, nested objects filled in: what validation gives a
    config that leaves the section out (for the CLI and tests, without Snakemake)."""
    return _default(schema()["properties"][section])


def _default(node: dict):
    value = node.get("default")
    if "properties" in node and isinstance(value, dict):
        value = dict(value)
        for key, sub in node["properties"].items():
            if key not in value and ("default" in sub or "properties" in sub):
                value[key] = _default(sub)
    return value


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
MonitorSettings = _settings_class("MonitorSettings", "monitor", schema()["properties"]["monitor"])
DATASET = schema()["properties"]["datasets"]["additionalProperties"]
DatasetSettings = _settings_class("DatasetSettings", "datasets.<name>", DATASET)


def as_param(settings) -> dict:
    """Typed settings as a rule param: a plain dict in the schema's order (Snakemake records a param
    by its repr, and a rule script unpickles its params where cxr14 may not be importable)."""
    return dataclasses.asdict(settings)


def sources(data) -> list[str]:
    """`train.data` as a list: `site` and `[site]` are one setting."""
    return [data] if isinstance(data, str) else list(data)
