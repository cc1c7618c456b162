import pytest

from dreamtune import config
from dreamtune.errors import UserError


def test_defaults_load_and_override_types():
    cfg = config.load(
        None, ["train.lr=3e-5", "train.steps=7", "method.lora.target_modules=[to_q, to_v]", "train.min_snr_gamma=5"]
    )
    assert cfg.train.lr == 3e-5 and cfg.train.steps == 7
    assert cfg.method.lora.target_modules == ("to_q", "to_v")
    assert cfg.train.min_snr_gamma == 5.0 and isinstance(cfg.train.min_snr_gamma, float)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lrr=1", "did you mean 'train.lr'"),
        ("trian.lr=1", "did you mean 'train'"),
        ("method.lora.rnak=4", "did you mean 'method.lora.rank'"),
    ],
)
def test_misspelled_key_names_key_and_closest(override, fragment):
    with pytest.raises(UserError) as error:
        config.load(None, [override])
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.steps=many", "must be int"),
        ("train.mixed_precision=fp8", "choose one of"),
        ("data.flip_p=1.5", "probability"),
        ("train.gradient_checkpointing=maybe", "true or false"),
        ("prior.enabled=true", "class_prompt"),
        ("data.resolution=100", "multiple of 8"),
        ("trainlr", "no '='"),
        ("rl.prompts=[a {subject} dog]", "not valid YAML"),
    ],
)
def test_bad_values_are_one_sentence_errors(override, fragment):
    with pytest.raises(UserError) as error:
        config.load(None, [override])
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_textual_inversion_prompt_must_hold_placeholder():
    with pytest.raises(UserError, match="does not contain it"):
        config.load(None, ["method.kind=textual_inversion", "data.instance_prompt=a photo of sks dog"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(bad)


def test_round_trip_through_dict(tmp_path):
    import yaml

    cfg = config.load(None, ["train.steps=3", "method.kind=dreambooth"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(cfg)))
    assert config.load(path) == cfg
