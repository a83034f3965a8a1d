"""The workflow configuration and its validation against the schema (`settings.schema`, the one home
of every default).

The Snakefile validates the config once, with defaults filled in; rules hand each step the values it
uses as params, so no step reads the config itself.
"""

from __future__ import annotations

import copy

import yaml

from ..settings import schema


def _types(node: dict) -> set[str]:
    kind = node.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def coerce(value, node: dict | None = None):
    """Turn strings into what the schema asks for, the way YAML would read them.

    `snakemake --config archives=[1]` hands over ['1'] (Snakemake parses --config values with
    YAML's BaseLoader, which keeps every scalar a string); a config file gives [1]. Both mean the same.
    """
    node = schema() if node is None else node
    types = _types(node)
    if isinstance(value, str):
        if value in ("null", "~") and "null" in types:
            return None
        if "string" in types or "enum" in node:
            return value
        try:
            parsed = yaml.safe_load(value)
            if isinstance(parsed, str) and "number" in types:
                parsed = float(value)  # YAML 1.1 reads 1e-3 as a string
        except (yaml.YAMLError, ValueError):
            return value  # validation names the key and what it wants
        return value if isinstance(parsed, str) else coerce(parsed, node)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce(value[key], sub)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value[:] = [coerce(v, node["items"]) for v in value]
    return value


class ConfigError(ValueError):
    """The config does not fit the schema; `problems` names each key and the reason."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


def validate(config: dict) -> dict:
    """Coerce shell strings, then validate `config` in place against the schema, filling in defaults
    (a copy of each, and only inside objects: `train.augment: null` stays off), and write each number
    in one form (see `canonical`)."""
    return check(config, schema())


def check(value, node: dict, where: str = "") -> dict:
    """`value` coerced, checked against the schema `node` (the whole schema, or one section's) with
    its defaults filled in, and made canonical; ConfigError names each bad key, under `where`."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, node):
        if validator.is_type(instance, "object"):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, node)

    filling = validators.extend(Draft202012Validator, {"properties": fill_defaults})
    coerce(value, node)
    errors = list(filling(node).iter_errors(value))
    if errors:
        raise ConfigError(
            [
                f"{'.'.join([where] * bool(where) + [str(p) for p in e.absolute_path]) or '(top level)'}: {e.message}"
                for e in errors
            ]
        )
    return canonical(value, node)


def canonical(value, node: dict):
    """One spelling of each value, so that a plan depends on values only: a `number` is a float
    (`1` and `1.0` are one setting), an integral `integer` an int, and an object's keys in the
    schema's order (then the rest as written)."""
    types = _types(node)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        if "integer" in types and float(value).is_integer():
            return int(value)
        return float(value) if "number" in types else value
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        order = [k for k in props if k in value] + [k for k in value if k not in props]
        items = [(k, canonical(value[k], props.get(k, extra if isinstance(extra, dict) else {}))) for k in order]
        value.clear()
        value.update(items)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value[:] = [canonical(v, node["items"]) for v in value]
    return value


def catalog_entry(config: dict, index: int) -> dict:
    """The archive catalog entry for `index` (YAML may give the keys as int or str)."""
    catalog = config["archive_catalog"]
    entry = catalog.get(index, catalog.get(str(index)))
    if entry is None:
        raise KeyError(f"archive {index} is not in archive_catalog")
    return entry
