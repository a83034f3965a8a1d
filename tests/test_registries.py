"""One place per extension point: a collection format is one module of cxr14/formats (its reader, its
label map, what the config schema takes for it), a backbone one entry of models.BACKBONES. The config
schema names them too, for validation before anything runs; these tests prove the two agree."""

import pytest

from cxr14 import formats
from cxr14.constants import FINDINGS
from cxr14.settings import schema

DATASET = schema()["properties"]["datasets"]["additionalProperties"]


def test_the_schemas_formats_are_the_registrys():
    assert DATASET["properties"]["format"]["enum"] == list(formats.FORMATS)


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_each_format_is_one_module_the_schema_agrees_with(name):
    module = formats.FORMATS[name]
    assert module.__name__ == f"cxr14.formats.{name}" and callable(module.read)
    # A label maps to one of the 14 NIH findings, or to several (PadChest's hydropneumothorax to two).
    mapped = {f for v in module.LABELS.values() for f in ((v,) if isinstance(v, str) else v)}
    assert mapped <= set(FINDINGS)
    [entry] = [e["then"] for e in DATASET["allOf"] if e["if"]["properties"]["format"]["const"] == name]
    assert entry == module.SCHEMA, f"the schema's entry for {name} is not cxr14/formats/{name}.py's SCHEMA"


def test_the_schemas_backbones_are_the_registrys():
    from cxr14 import models

    backbone = schema()["properties"]["train"]["properties"]["backbone"]
    assert backbone["enum"] == list(models.BACKBONES)


def test_the_image_readers_guard_is_the_schemas_and_the_cli_starts_from_the_schema():
    """The defaults live in the schema: the CLI's options start there, and the reader's own guard
    (for a caller that names no limits) is the same."""
    from cxr14 import images
    from cxr14.cli import parser
    from cxr14.settings import defaults

    limits, predict = defaults("images"), defaults("predict")
    assert (images.DEFAULT_MAX_MB, images.DEFAULT_MAX_MEGAPIXELS) == (limits["max_mb"], limits["max_megapixels"])
    args = parser().parse_args(["predict", "x.png", "--run", "r"])
    assert (args.max_mb, args.max_megapixels) == (limits["max_mb"], limits["max_megapixels"])
    assert (args.batch_size, args.out) == (predict["batch_size"], predict["out"])
    app = parser().parse_args(["app"])
    assert (app.port, app.concurrency, app.queue_size) == tuple(
        defaults("app")[k] for k in ("port", "concurrency", "queue_size")
    )
