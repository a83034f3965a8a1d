"""The collections a config names: NIH (its table made by `clean`) and each under `datasets` (made by
`ingest`), as every step after its table sees them: what differs between them is data, not a path."""

from __future__ import annotations

from dataclasses import dataclass

from .. import paths
from ..constants import NIH, SPLITS
from ..prediction_table import EXTERNAL
from ..settings import DATASET
from ..shard_io import UNSPLIT
from .config import ConfigError


def dataset_param(dataset: dict) -> dict:
    """A dataset's checked config as a rule param: every key of the schema, in its order (None for a
    key its format does not use; a made `split` as val, test, seed however it was written)."""
    param = {key: dataset.get(key) for key in DATASET["properties"]}
    if isinstance(param["split"], dict):
        param["split"] = {key: param["split"][key] for key in ("val", "test", "seed")}
    return param


def is_split(dataset: dict) -> bool:
    """Whether a collection has train/val/test splits of its own (so a run can train on it)."""
    return dataset.get("split") is not None


def dataset_groups(dataset: dict) -> list[str]:
    """The shard groups of a collection: its three splits, or one group of every image."""
    return list(SPLITS) if is_split(dataset) else [UNSPLIT]


def scored_groups(dataset: dict) -> dict[str, str]:
    """How every run is scored on a collection (the predictions' split -> the group scored as it): a
    split collection's val split (its own calibration and operating points are fitted there) and its
    test split (validated on); else all of it."""
    if is_split(dataset):
        return {"val": "val", EXTERNAL: "test"}
    return {EXTERNAL: UNSPLIT}


@dataclass(frozen=True)
class Collection:
    """A collection as every step after its table sees it: NIH (its table made by `clean`) or one
    under the config's `datasets` (made by `ingest`). What differs is data, not a second path."""

    name: str
    root: str  # the folder its table's image paths are relative to
    groups: tuple[str, ...]  # its shard groups: train, val, test, or UNSPLIT
    scored: dict[str, str]  # how runs are scored on it: the predictions' split -> the group scored as it
    images_per_shard: int
    seed: int  # of its shard order and its local recalibration's patients
    recalibrate: float = 0  # the share of its patients a local calibration is fitted on (unsplit only)
    image_folders: tuple[str, ...] = ()  # what the workflow made under root (NIH's extracted archives)

    @property
    def is_site(self) -> bool:
        """Whether each run gets a calibration and operating points of its own here, fitted on the
        collection's val split (NIH and every split collection)."""
        return "val" in self.scored


def collections(config: dict) -> dict[str, Collection]:
    """NIH, then the config's `datasets` by name, as collections."""
    nih = Collection(
        NIH,
        root=paths.EXTRACT,
        groups=SPLITS,
        scored={"val": "val", "test": "test"},
        images_per_shard=config["shards"]["images_per_shard"],
        seed=config["shards"]["seed"],
        image_folders=tuple(paths.EXTRACTED.format(nn=f"{i:02d}") for i in sorted(config["archives"])),
    )
    found = {NIH: nih}
    for name, dataset in sorted((config.get("datasets") or {}).items()):
        if is_split(dataset) and dataset["recalibrate"]:
            raise ConfigError(
                [
                    f"datasets.{name}: recalibrate is for a collection without splits; a split collection is "
                    "calibrated on its own val split (each run gets a calibration and operating points there)"
                ]
            )
        found[name] = Collection(
            name,
            root=dataset["root"],
            groups=tuple(dataset_groups(dataset)),
            scored=scored_groups(dataset),
            images_per_shard=dataset["images_per_shard"],
            seed=dataset["seed"],
            recalibrate=dataset["recalibrate"],
        )
    return found
