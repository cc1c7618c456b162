"""The miniature's UNet geometry (dreamtune/miniature/architecture.py): the shipped heads rebuild the shipped
UNet, and the head-dim-32 geometry (issue 34) has the same weights with heads of dim 32."""

from pathlib import Path

from dreamtune.config import load_as
from dreamtune.miniature import architecture
from dreamtune.miniature.assemble import MODEL_DIR
from dreamtune.miniature.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _head_dims(unet) -> set[tuple[int, int]]:
    return {
        (module.heads, module.inner_dim // module.heads)
        for name, module in unet.named_modules()
        if type(module).__name__ == "Attention"
    }


def test_the_shipped_heads_rebuild_the_shipped_unet_and_head_dim_32_keeps_its_weights():
    from diffusers import UNet2DConditionModel

    shipped = UNet2DConditionModel.from_pretrained(str(MODEL_DIR / "unet"))
    rebuilt, wide = architecture.unet(), architecture.unet(architecture.HEAD_DIM_32)
    shapes = {k: v.shape for k, v in shipped.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert {k: v.shape for k, v in wide.state_dict().items()} == shapes  # the same weights, other heads
    assert _head_dims(rebuilt) == _head_dims(shipped) == {(32, 4), (32, 6)}
    assert _head_dims(wide) == {(4, 32), (6, 32)}


def test_the_unet_stage_takes_the_head_geometry_from_its_recipe():
    recipe = ROOT / "configs" / "miniature" / "unet.yaml"
    assert load_as(PretrainConfig, recipe, []).unet_heads == architecture.SHIPPED_HEADS
    assert load_as(PretrainConfig, recipe, ["unet_heads=[2,4,6]"]).unet_heads == architecture.HEAD_DIM_32
    fine_tune = load_as(PretrainConfig, recipe.with_name("unet_head_dim_32.yaml"), [])
    assert fine_tune.stage == "unet" and fine_tune.unet_heads == architecture.HEAD_DIM_32
    assert (ROOT / fine_tune.unet_init / "diffusion_pytorch_model.safetensors").is_file()  # the shipped UNet
