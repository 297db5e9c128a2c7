import pytest

from ssl_lib._registry import Registry
from ssl_lib.exceptions import ChecksumError, ConfigError, SSLLibError, UnknownNameError
from ssl_lib.models import MINI_MODEL_NAMES, PAPER_MODELS, get_model_cfg, list_models


def test_registry_rejects_duplicates_and_names_close_matches():
    reg = Registry("thing")
    reg.add("byol", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("byol", 2)
    with pytest.raises(UnknownNameError, match=r"Unknown thing 'byl'\. Did you mean 'byol'\?"):
        reg.get("byl")


def test_errors_are_value_errors_with_one_line():
    assert issubclass(UnknownNameError, SSLLibError) and issubclass(SSLLibError, ValueError)
    with pytest.raises(UnknownNameError) as info:
        get_model_cfg("byl")
    assert "\n" not in str(info.value)


def test_model_listing_covers_both_zoos():
    names = list_models()
    assert {f"mini/{n}" for n in MINI_MODEL_NAMES} <= set(names)
    assert {f"paper/{n}" for n in PAPER_MODELS} <= set(names)
    assert len(PAPER_MODELS) == 14
    assert list_models("paper", "pcl-*") == ["paper/pcl-v1", "paper/pcl-v2"]


def test_names_resolve_in_the_study_zoo():
    assert get_model_cfg("byol", zoo="mini").zoo == "mini"
    assert get_model_cfg("byol", zoo="paper").arch == "resnet50"
    assert get_model_cfg("paper/swav").key_prefix == "module."
    with pytest.raises(UnknownNameError, match="Did you mean 'swav'"):
        get_model_cfg("paper/swv")


def test_paper_model_cards_follow_the_official_conversion():
    cards = PAPER_MODELS
    assert cards["moco-v2"].key_prefix == "module.encoder_q."
    assert cards["infomin"].key_prefix == "module.encoder."
    assert cards["supervised"].source_top1 == 77.20
    assert cards["simclr-v1"].mean == (0.0, 0.0, 0.0) and cards["simclr-v2"].std == (1.0, 1.0, 1.0)
    assert cards["byol"].mean == (0.485, 0.456, 0.406)
    assert sorted(cards, key=lambda n: cards[n].source_top1)[0] == "insdis"


def test_file_spec_options_are_checked():
    cfg = get_model_cfg("file:/tmp/x.pth?arch=resnet50&norm=none&prefix=module.")
    assert (cfg.arch, cfg.mean, cfg.key_prefix, cfg.input_size) == ("resnet50", (0.0, 0.0, 0.0), "module.", 224)
    with pytest.raises(ConfigError, match="Unknown option"):
        get_model_cfg("file:/tmp/x.pth?archh=resnet50")
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet50'"):
        get_model_cfg("file:/tmp/x.pth?arch=resnet05")


def test_checksum_error_type():
    assert issubclass(ChecksumError, SSLLibError)


def test_one_dataset_registry_lists_every_task_of_every_zoo():
    from ssl_lib.data import TASKS, get_dataset_spec, list_datasets

    names = list_datasets()
    for name in ("mini-source", "mini-scenes", "mini-normals", "cifar10", "voc2007", "voc07+12", "ade20k", "nyuv2",
                 "cropdiseases", "imagenet-val"):
        assert name in names
    assert set(get_dataset_spec("mini-scenes").tasks) == {"detection", "segmentation"}
    assert list_datasets(task="detection") == ["mini-scenes", "voc07+12"]
    assert list_datasets(task="normals") == ["mini-normals", "nyuv2"]
    assert set(list_datasets(task="few-shot-only")) == {"cropdiseases", "eurosat", "isic", "chestx"}
    assert all(set(get_dataset_spec(n).tasks) <= set(TASKS) for n in names)
    with pytest.raises(UnknownNameError, match="Unknown task 'detect'. Did you mean 'detection'"):
        list_datasets(task="detect")


@pytest.mark.parametrize(("section", "dataset", "usable"), [
    ("linear", "mini-digits", True), ("linear", "cropdiseases", False), ("linear", "mini-scenes", False),
    ("fewshot", "cropdiseases", True), ("fewshot", "mini-multilabel", False), ("detection", "mini-scenes", True),
    ("detection", "ade20k", False), ("dense", "mini-scenes", True), ("dense", "nyuv2", True), ("dense", "cifar10", False),
])
def test_one_validator_says_whether_a_section_can_use_a_dataset(section, dataset, usable):
    from ssl_lib.exceptions import ConfigError
    from ssl_lib.sections import SECTIONS

    if usable:
        assert SECTIONS.get(section).check_dataset(dataset).name == dataset
    else:
        with pytest.raises(ConfigError, match=f"Dataset '{dataset}' serves .*the {section} section takes") as err:
            SECTIONS.get(section).check_dataset(dataset)
        assert "\n" not in str(err.value)
