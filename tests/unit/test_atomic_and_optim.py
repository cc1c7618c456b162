import errno
import importlib.util

import pytest
import torch

from dreamtune import config
from dreamtune.atomic import atomic_dir, atomic_file
from dreamtune.errors import UserError
from dreamtune.training.optim import build_optimizer


def test_full_disk_is_one_clear_sentence_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(UserError, match="disk holding .* is full"):
        with atomic_file(target) as temp:
            temp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_failed_folder_write_keeps_the_previous_good_one(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as temp:
        (temp / "weights").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as temp:
            (temp / "weights").write_text("half")
            raise RuntimeError("crash while writing")
    assert (final / "weights").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_8bit_adam_without_bitsandbytes_names_the_fix():
    cfg = config.load(None, ["train.optimizer=adamw8bit"])
    with pytest.raises(UserError, match="bitsandbytes"):
        build_optimizer(torch.nn.Linear(2, 2), cfg.train)


def test_text_encoder_parameters_get_their_own_learning_rate():
    cfg = config.load(None, ["train.lr=1e-4", "train.text_encoder_lr=5e-6"])
    module = torch.nn.ModuleDict({"unet": torch.nn.Linear(2, 2), "text_encoder": torch.nn.Linear(2, 2)})
    optimizer = build_optimizer(module, cfg.train)
    assert sorted(g["lr"] for g in optimizer.param_groups) == [5e-6, 1e-4]


@pytest.mark.parametrize(
    "umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664), (0o077, 0o700, 0o600)]
)
def test_outputs_honour_the_umask(tmp_path, umask, dir_mode, file_mode):
    import os

    old = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "model") as temp:
            (temp / "weights").write_text("w")
        with atomic_file(tmp_path / "file.json") as temp:
            temp.write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "model").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "file.json").stat().st_mode & 0o777 == file_mode
