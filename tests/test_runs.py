"""Named runs, sweeps, repeats and ensembles resolved from the config, and refused with a clear error."""

import pytest

from cxr14.settings import as_param
from cxr14.workflow import runs
from cxr14.workflow.config import validate


def resolve(**config):
    return runs.resolve(validate({"archive_catalog": {}, **config}))


def test_without_runs_there_is_one_default_run_with_the_config_settings():
    got = resolve(train={"learning_rate": 0.01})
    assert list(got) == ["default"] and got["default"].train.learning_rate == 0.01
    assert got["default"].layout == "224px-raw" and not got["default"].is_ensemble


def test_runs_override_train_shards_and_evaluate_and_share_layouts():
    got = resolve(
        runs={
            "a": {},
            "b": {"train": {"loss": "focal", "augment": {"zoom": 0.2}}},
            "c": {"shards": {"image_size": 320}, "evaluate": {"n_boot": 50}},
        }
    )
    assert got["b"].train.loss == "focal" and got["b"].train.augment.zoom == 0.2
    assert got["b"].train.augment.rotation_deg == 5  # the rest of augment stays
    assert got["a"].layout == got["b"].layout == "224px-raw" and got["c"].layout == "320px-raw"
    assert got["c"].evaluate.n_boot == 50 and got["a"].evaluate.n_boot == 1000
    assert got["b"].flat_settings()["train.loss"] == "focal"


def test_values_from_the_shell_are_read_as_the_schemas_types():
    got = resolve(runs={"a": {"train": {"learning_rate": "1e-3", "epochs": "2"}, "shards": {"image_size": "96"}}})
    assert got["a"].train.learning_rate == 0.001 and got["a"].train.epochs == 2 and got["a"].layout == "96px-raw"


def test_sweeps_expand_to_stable_readable_names():
    got = resolve(sweeps={"lr_bb": {"backbone": ["densenet121", "small_cnn"], "learning_rate": [0.001, 0.0003]}})
    assert list(got) == [
        "lr_bb-backbone_densenet121-learning_rate_0.001",
        "lr_bb-backbone_densenet121-learning_rate_0.0003",
        "lr_bb-backbone_small_cnn-learning_rate_0.001",
        "lr_bb-backbone_small_cnn-learning_rate_0.0003",
    ]
    assert got["lr_bb-backbone_small_cnn-learning_rate_0.0003"].train.learning_rate == 0.0003
    sized = resolve(sweeps={"px": {"image_size": [128, 224]}})
    assert [r.layout for r in sized.values()] == ["128px-raw", "224px-raw"]


def test_repeats_train_consecutive_seeds_and_ensembles_take_all_copies():
    got = resolve(
        train={"seed": 7},
        runs={"base": {"repeats": 3}, "other": {}, "ens": {"ensemble": ["base", "other"], "weights": [1, 2]}},
    )
    assert list(got) == ["base-seed7", "base-seed8", "base-seed9", "other", "ens"]
    assert [got[f"base-seed{s}"].train.seed for s in (7, 8, 9)] == [7, 8, 9]
    assert runs.groups(got) == {"base": ["base-seed7", "base-seed8", "base-seed9"]}
    assert got["ens"].members == ["base-seed7", "base-seed8", "base-seed9", "other"]
    assert got["ens"].weights == {"base-seed7": 1, "base-seed8": 1, "base-seed9": 1, "other": 2}
    assert got["ens"].is_ensemble
    evaluated = resolve(runs={"a": {}, "b": {}, "e": {"ensemble": ["a", "b"], "evaluate": {"n_boot": "50"}}})
    assert evaluated["e"].evaluate.n_boot == 50 and evaluated["a"].evaluate.n_boot == 1000


def test_an_ensemble_of_one_repeated_run_is_the_ensemble_of_its_copies():
    """`ensemble: [base]` with base repeated is two models or more; a lone model is not an ensemble."""
    got = resolve(train={"seed": 7}, runs={"base": {"repeats": 2}, "seeds": {"ensemble": ["base"]}})
    assert got["seeds"].members == ["base-seed7", "base-seed8"]
    with pytest.raises(runs.RunError, match="'solo' needs at least two member runs"):
        resolve(runs={"a": {}, "solo": {"ensemble": ["a"]}})


SITE = {"site": {"format": "chexpert", "root": "x", "split": {"val": 0.1, "test": 0.2}},
        "plain": {"format": "chexpert", "root": "y"}}  # fmt: skip


def test_a_fine_tune_keeps_its_starting_models_input_and_network():
    got = resolve(
        datasets=SITE,
        runs={
            "base": {"train": {"backbone": "small_cnn", "dropout": 0.3}, "shards": {"image_size": 80}},
            "tuned": {"train": {"init": "base", "data": "site", "learning_rate": 1e-4, "freeze_epochs": 2}},
            "both": {"train": {"init": "tuned", "data": ["nih", "site"]}},
        },
    )
    for name in ("tuned", "both"):
        run = got[name]
        assert run.layout == "80px-raw" and run.train.backbone == "small_cnn" and run.train.dropout == 0.3
    assert got["tuned"].starts_from == "base" and got["both"].starts_from == "tuned" and got["base"].starts_from is None
    assert got["tuned"].train.data == ["site"] and got["both"].train.data == ["nih", "site"]
    assert got["base"].train.data == ["nih"]
    # `site` and `[site]` are one setting: the same param, so the same plan
    listed = resolve(datasets=SITE, runs={"b": {}, "t": {"train": {"init": "b", "data": ["site"]}}})
    plain = resolve(datasets=SITE, runs={"b": {}, "t": {"train": {"init": "b", "data": "site"}}})
    assert as_param(listed["t"].train) == as_param(plain["t"].train)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"runs": {"t": {"train": {"init": "nope"}}}}, r"run 't': train.init 'nope' is not a trained run"),
        ({"runs": {"t": {"train": {"init": "t"}}}}, r"runs start from each other in a loop: t -> t"),
        (
            {"runs": {"a": {"train": {"init": "b"}}, "b": {"train": {"init": "a"}}}},
            r"runs start from each other in a loop: a -> b -> a",
        ),
        (
            {"runs": {"a": {"repeats": 2}, "t": {"train": {"init": "a"}}}},
            r"train.init 'a' is not a trained run; it is repeated: name one copy, e.g. 'a-seed42'",
        ),
        (
            {"runs": {"a": {}, "b": {}, "e": {"ensemble": ["a", "b"]}, "t": {"train": {"init": "e"}}}},
            r"run 't': train.init 'e' is not a trained run",
        ),
        (
            {
                "runs": {
                    "a": {"shards": {"image_size": 64}},
                    "t": {"train": {"init": "a"}, "shards": {"image_size": 32}},
                }
            },
            r"run 't' starts from 'a', whose model has shards.image_size 64, but sets shards.image_size 32",
        ),
        (
            {"runs": {"a": {}, "t": {"train": {"init": "a", "backbone": "resnet50"}}}},
            r"whose model has train.backbone 'densenet121', but sets train.backbone 'resnet50'",
        ),
        ({"runs": {"a": {"train": {"data": "else"}}}}, r"run 'a': train.data 'else' is neither 'nih' nor a dataset"),
        ({"runs": {"a": {"train": {"data": "plain"}}}}, r"run 'a': dataset 'plain' has no train/val/test split"),
        ({"runs": {"a": {"train": {"data": ["site", "site"]}}}}, r"run 'a': train.data lists a source twice"),
    ],
)
def test_bad_fine_tunes_are_refused_before_any_job_starts(config, message):
    with pytest.raises(runs.RunError, match=message):
        resolve(datasets=SITE, **config)


def test_a_dataset_cannot_be_called_nih():
    from cxr14.workflow.config import ConfigError

    with pytest.raises(ConfigError, match="datasets"):
        validate({"archive_catalog": {}, "datasets": {"nih": {"format": "chexpert", "root": "x"}}})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"runs": {"a": {"train": {"learnig_rate": 0.1}}}}, r"run 'a': unknown train key\(s\) \['learnig_rate'\]"),
        ({"runs": {"a": {"shards": {"images_per_shard": 9}}}}, r"unknown shards key\(s\) \['images_per_shard'\]"),
        ({"runs": {"a": {"train": {"epochs": "many"}}}}, r"run 'a': train.epochs: 'many' is not of type 'integer'"),
        ({"runs": {"train": {}}}, r"run name 'train' is not allowed"),
        ({"runs": {"../x": {}}}, r"run name '../x' is not allowed"),
        ({"runs": {"a": {}, "e": {"ensemble": ["a", "zz"]}}}, r"ensemble 'e': member 'zz' is not a trained run"),
        (
            {"runs": {"a": {}, "b": {}, "e": {"ensemble": ["a", "b"], "weights": [1]}}},
            r"one positive weight per listed member",
        ),
        ({"sweeps": {"s": {"learnig_rate": [0.1]}}}, r"sweep 's': unknown key 'learnig_rate'"),
        (
            {"runs": {"a": {}, "b": {}, "e": {"ensemble": ["a", "b"], "evaluate": {"nboot": 5}}}},
            r"run 'e': unknown evaluate key\(s\) \['nboot'\]",
        ),
        (
            {"runs": {"a": {}, "b": {}, "e": {"ensemble": ["a", "b"], "evaluate": {"n_boot": 2}}}},
            r"run 'e': evaluate.n_boot: 2 is less than the minimum of 10",
        ),
        ({"runs": {"a": {}}, "leaderboard": {"reference": "b"}}, r"leaderboard.reference 'b' is not a run"),
    ],
)
def test_bad_runs_are_refused_with_the_name_and_the_reason(config, message):
    with pytest.raises(runs.RunError, match=message):
        got = resolve(**config)
        runs.reference(validate({"archive_catalog": {}, **config}), got)


def test_the_docs_fine_tuning_example_resolves_as_it_says():
    import yaml

    from conftest import REPO

    text = (REPO / "docs/external-validation.md").read_text().split("## Adapting a model to a site: fine-tuning", 1)[1]
    example = yaml.safe_load(text.split("```yaml", 1)[1].split("```", 1)[0])
    got = resolve(**example)
    assert got["densenet_site"].starts_from == "densenet" and got["densenet_site"].train.data == ["site"]
    assert got["densenet_both"].train.data == ["nih", "site"] and got["densenet_site"].train.freeze_epochs == 1
    assert got["densenet_site"].layout == got["densenet"].layout


def test_the_config_that_reproduces_a_run_resolves_to_the_same_run():
    config = {
        "datasets": SITE,
        "runs": {
            "base": {"train": {"backbone": "small_cnn", "learning_rate": 0.01}, "shards": {"image_size": 80}},
            "other": {"repeats": 2},
            "tuned": {"train": {"init": "base", "data": "site"}},
            "ens": {"ensemble": ["tuned", "other"], "weights": [2, 1]},
        },
    }
    got = resolve(**config)
    for name in ("tuned", "ens"):
        again = resolve(**runs.reproducing_config(got, name, validate({"archive_catalog": {}, **config})["datasets"]))
        assert again[name] == got[name]
        assert set(again) == (
            {"base", "tuned"} if name == "tuned" else {"base", "tuned", "other-seed42", "other-seed43", "ens"}
        )
    assert set(runs.reproducing_config(got, "tuned", SITE)["datasets"]) == {"site"}
