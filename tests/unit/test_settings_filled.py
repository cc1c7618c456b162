"""The settings dataclasses objectives, rollouts and the loop take carry no defaults of their own for what
the config says: they are filled by keyword from config sections (training/assembly.settings_from), so a
config field renamed without its settings field (or the reverse) is an error, never a silent default."""

import dataclasses

import pytest

from dreamtune.config import Config
from dreamtune.objectives.adversarial import AdversarialSettings
from dreamtune.objectives.ddpo import DDPOSettings
from dreamtune.objectives.denoising import NoiseSettings
from dreamtune.objectives.draft import DraftSettings
from dreamtune.training.assembly import settings_from
from dreamtune.training.loop import LoopSettings
from dreamtune.training.rollouts import RolloutSettings

C = Config()
# each settings class, the config sections the assembly fills it from, and the values the run supplies itself
FILLED = [
    (NoiseSettings, (C.train,), {"process_index", "num_processes", "groups"}),
    (LoopSettings, (C.train,), {"process_index", "show_progress"}),
    (DDPOSettings, (C.rl, C.data), set()),
    (DraftSettings, (C.rl, C.data), {"prompts"}),
    (RolloutSettings, (C.rl, C.train, C.data), {"prompts", "stream"}),
    (AdversarialSettings, (C.adversarial, C.train), {"augment"}),
]


@pytest.mark.parametrize("cls, sections, runtime", FILLED, ids=lambda v: getattr(v, "__name__", ""))
def test_every_settings_field_comes_from_the_config_or_the_run(cls, sections, runtime):
    named = {f.name for section in sections for f in dataclasses.fields(section)}
    for item in dataclasses.fields(cls):
        assert item.name in named or item.name in runtime, f"{cls.__name__}.{item.name} is in no config section"
        if item.name not in runtime:  # the config holds its default: no second one here
            assert item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING, item.name


def test_a_settings_field_missing_from_the_config_is_an_error_not_a_default():
    with pytest.raises(TypeError, match="missing"):
        settings_from(DDPOSettings, C.rl)  # resolution lives in data, not rl
