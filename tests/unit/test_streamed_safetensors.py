"""The full fine-tune's export writes a diffusers model tensor by tensor (models/full_export.py
``write_safetensors``), so no second copy of the model is made; its file is byte for byte the one
safetensors' own ``save_file`` writes from the converted state."""

import pytest
import torch
from safetensors.torch import save_file

from dreamtune.models.full_export import write_safetensors


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_the_streamed_file_is_the_file_safetensors_writes(tmp_path, dtype):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    state = {**unet.state_dict(), "counter": torch.tensor(3, dtype=torch.int64), "mask": torch.tensor([True, False])}
    write_safetensors(state, tmp_path / "streamed.safetensors", dtype, {"format": "pt"})
    converted = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(converted, str(tmp_path / "reference.safetensors"), metadata={"format": "pt"})
    assert (tmp_path / "streamed.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
