"""Lean updates (issue 32): bitsandbytes' 8-bit AdamW and torch's Adafactor fine-tune a model, keep a
fraction of AdamW's optimizer state, and resume bit-identically like every other run."""
import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import tiny_overrides, train_killed_at
from tests.e2e.test_resume_and_failures import RESUME_SETTINGS


def _state_bytes(optimizer) -> int:
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


@pytest.fixture(scope="module")
def adamw_state(tiny_models, tmp_path_factory):
    from tests.conftest import make_photos

    root = tmp_path_factory.mktemp("adamw")
    cfg = config.load(None, tiny_overrides(tiny_models["sd1"], make_photos(root / "photos"), root / "run",
                                           **{**RESUME_SETTINGS, "method.kind": "dreambooth"}))
    return _state_bytes(train(cfg, show_progress=False, log=lambda *_: None).state.optimizers["model"].optimizer)


@pytest.mark.parametrize("optimizer, share", [("adamw8bit", None), ("adafactor", 0.6)])
def test_lean_optimizer_trains_keeps_less_state_and_resumes_exactly(tiny_models, photos, tmp_path, monkeypatch, adamw_state,
                                                                    optimizer, share):
    if optimizer == "adamw8bit":
        pytest.importorskip("bitsandbytes", reason="pip install 'dreamtune[8bit]' (make test installs it)")
    settings = {**RESUME_SETTINGS, "train.optimizer": optimizer, "method.kind": "dreambooth"}   # a full fine-tune: where the state is big
    full = train(config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **settings)),
                 show_progress=False, log=lambda *_: None)
    losses = [r["loss"] for r in full.history]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    lean = full.state.optimizers["model"].optimizer
    if optimizer == "adamw8bit":       # bitsandbytes keeps tensors of 4,096+ values in 8 bits (smaller ones in fp32)
        big = [state for p, state in lean.state.items() if p.numel() >= 4096]
        assert big and all(state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8 for state in big)
    else:
        assert _state_bytes(lean) < share * adamw_state
    interrupted = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(interrupted, 5, monkeypatch)
    resumed = train(interrupted, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(full.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(str(tiny_models["sd1"] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(a[k], start[k].to(a[k].dtype)) for k in a)            # the weights moved
