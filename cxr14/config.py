"""Load and validate the workflow configuration the same way for Snakemake and the CLI."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

SCHEMA = resources.files("cxr14") / "schemas" / "config.schema.yaml"


def validate(config: dict) -> dict:
    """Validate `config` in place against the schema, filling in defaults; return it."""
    from snakemake.utils import validate as sm_validate

    sm_validate(config, str(SCHEMA), set_default=True)
    return config


def load(*paths: str | Path) -> dict:
    """Merge YAML files left to right (nested keys override) and validate the result."""
    config: dict = {}
    for path in paths:
        with open(path) as fh:
            _merge(config, yaml.safe_load(fh) or {})
    return validate(config)


def _merge(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def catalog_entry(config: dict, index: int) -> dict:
    """The archive catalog entry for `index` (YAML may give the keys as int or str)."""
    catalog = config["archive_catalog"]
    entry = catalog.get(index, catalog.get(str(index)))
    if entry is None:
        raise KeyError(f"archive {index} is not in archive_catalog")
    return entry
