"""ObjectiveContract: every objective the assembly builds — denoising, prior preservation, the
adversarial game (both discriminators), DDPO, DRaFT, few-step distillation (alone and with LADD's game), a
reward joining part-way (LateStart inside a WeightedSum) and the hand-over — on UNet and flow-transformer
families, built from a config through ``training/assembly.build`` exactly as a run builds it, gives one finite scalar loss per optimizer,
each loss's gradients reach only its own optimizer's parameters, and a fixed step gives the same
result twice (the property bit-identical resume rests on). The miniature's pretraining objectives
(contrastive CLIP, autoencoder) keep the same contract."""

from __future__ import annotations

import pytest
import torch

from dreamtune import config
from dreamtune.models.tiny import build_tiny_feature_models
from dreamtune.training import run_steps
from dreamtune.training.assembly import Ingredients, RunPlan, build, wrap_trainable
from tests.conftest import tiny_overrides

PRIOR = {"prior.enabled": True, "prior.class_prompt": "a dog"}
RL = {"rl.rewards.print_quality": 1, "rl.prompts": "[a dog on the beach]", "rl.sample_steps": 3}
RL.update({"rl.samples_per_round": 2, "rl.images_per_prompt": 2, "train.batch_size": 2})
ADVERSARIAL = {"adversarial.weight": 0.5, "adversarial.r1_gamma": 0}
DISTILL = {"distill.steps": 2, "distill.teacher_steps": 3, "distill.pool": 3, "train.batch_size": 2}
LATE = {**PRIOR, **RL, "rl.algorithm": "draft", "rl.regularize_weight": 1, "rl.start_step": 1}
CASES = {  # id: (family, overrides); the contract runs at micro-step 2, after any late start
    "sd1-lora": ("sd1", {}),
    "sd1-dreambooth-prior": ("sd1", {"method.kind": "dreambooth", **PRIOR}),
    "sd2v-lora-prior-minsnr": ("sd2-v", {**PRIOR, "train.min_snr_gamma": 5.0}),
    "sdxl-textual-inversion-prior": ("sdxl", {"method.kind": "textual_inversion", **PRIOR}),
    "sd1-adversarial-clip": ("sd1", {**ADVERSARIAL, "adversarial.discriminator": "clip"}),
    "sd1-adversarial-denoiser": ("sd1", {**ADVERSARIAL, "adversarial.discriminator": "denoiser"}),
    "sd1-ddpo": ("sd1", {**RL, "rl.algorithm": "ddpo"}),
    "sd1-draft": ("sd1", {**RL, "rl.algorithm": "draft"}),
    "sd1-late-reward": ("sd1", LATE),
    "sd1-handover": ("sd1", {**LATE, "rl.handover": True}),
    "flux-lora-prior": ("flux", PRIOR),
    "sd3-dreambooth": ("sd3", {"method.kind": "dreambooth"}),
    "flux2-klein-ddpo": ("flux2-klein", {**RL, "rl.algorithm": "ddpo"}),
    "z-image-draft": ("z-image", {**RL, "rl.algorithm": "draft"}),
    "sd1-distill": ("sd1", DISTILL),
    "sd1-distill-ladd": ("sd1", {**DISTILL, **ADVERSARIAL, "adversarial.discriminator": "denoiser"}),
    "flux-distill": ("flux", DISTILL),
    "sd1-distill-trajectory": ("sd1", {**DISTILL, "distill.teacher_steps": 4, "distill.trajectory_weight": 1}),
    "flux-distill-trajectory": ("flux", {**DISTILL, "distill.teacher_steps": 4, "distill.trajectory_weight": 1}),
}
STEP = 2


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_feature_models(tmp_path_factory.mktemp("features"))["clip"]


def assembled(tiny_models, clip_dir, case: str, tmp_path, photos):
    """(objective, batch source, components) for ``case``, built the way ``training/run.py`` builds them."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    family, overrides = CASES[case]
    caption = "a photo of <sks> dog" if overrides.get("method.kind") == "textual_inversion" else "a photo of sks dog"
    extra = {"data.instance_prompt": caption, "adversarial.features": str(clip_dir), "rl.clip": str(clip_dir)}
    cfg = config.load(None, tiny_overrides(tiny_models[family], photos, tmp_path / "run", **{**extra, **overrides}))
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    out = tmp_path / "run"
    out.mkdir(parents=True, exist_ok=True)
    plan = RunPlan.of(cfg)
    quiet = run_steps.quiet
    prepared = run_steps.prepare_photos(cfg, plan, accelerator, out, quiet)
    components, parts = run_steps.load_trainable_model(cfg, prepared.captions, accelerator, out, quiet)
    class_dir = run_steps.class_images(cfg, plan, components, accelerator, out, False, quiet)
    images = run_steps.photo_images(prepared.folder)
    trainable = wrap_trainable(components, accelerator)
    ingredients = Ingredients(
        cfg, components, trainable, parts, accelerator, prepared.folder, class_dir, out / "cache", images
    )
    objective, source, _ = build(ingredients, plan)
    return objective, source, components


class ObjectiveContract:
    """The three promises, checked on one objective per case (assembling dominates the time)."""

    @pytest.mark.parametrize("case", list(CASES))
    def test_contract(self, tiny_models, clip_dir, case, tmp_path, photos):
        objective, source, components = assembled(tiny_models, clip_dir, case, tmp_path, photos)
        frozen = [components.denoiser, components.vae, *components.text_encoders]
        self.check(objective, source, frozen)

    @pytest.mark.parametrize("stage", ["contrastive", "autoencoder"])
    def test_pretraining_objectives_keep_the_contract(self, stage, tmp_path):
        """The miniature's pretraining objectives (miniature/pretrain.py builds them the same way)."""
        objective, source = pretraining_objective(stage, tmp_path)
        self.check(objective, source, [])

    def check(self, objective, source, frozen):
        self.one_finite_scalar_loss_per_optimizer(objective, source)
        self.a_fixed_step_gives_the_same_result(objective, source)
        self.each_loss_reaches_only_its_own_optimizers_parameters(objective, source, frozen)

    @staticmethod
    def one_finite_scalar_loss_per_optimizer(objective, source):
        output = objective(source.batch(STEP), STEP)
        assert set(output.losses) == set(objective.trainable_modules())
        for loss in output.losses.values():
            assert loss.ndim == 0 and torch.isfinite(loss)

    @staticmethod
    def a_fixed_step_gives_the_same_result(objective, source):
        first = {k: v.item() for k, v in objective(source.batch(STEP), STEP).losses.items()}
        again = {k: v.item() for k, v in objective(source.batch(STEP), STEP).losses.items()}
        assert first == again

    @staticmethod
    def each_loss_reaches_only_its_own_optimizers_parameters(objective, source, frozen):
        modules = objective.trainable_modules()
        losses = objective(source.batch(STEP), STEP).losses
        everything = {id(p): p for m in [*frozen, *modules.values()] for p in m.parameters()}
        for name, loss in losses.items():
            for parameter in everything.values():
                parameter.grad = None
            loss.backward(retain_graph=True)
            own = {id(p) for p in modules[name].parameters() if p.requires_grad}
            strays = [
                p.shape for key, p in everything.items() if key not in own and p.grad is not None and p.grad.any()
            ]
            assert not strays, f"{name}'s loss reached {len(strays)} parameters of other parts"
            assert any(everything[key].grad is not None and everything[key].grad.any() for key in own), name


def pretraining_objective(stage: str, tmp_path):
    """A pretraining stage's objective and batches on a small pool of world renders."""
    from dreamtune.miniature import architecture
    from dreamtune.miniature.pool import PoolBatches, build_pool
    from dreamtune.miniature.vocabulary import build_tokenizer
    from dreamtune.objectives.autoencoder import AutoencoderObjective
    from dreamtune.objectives.contrastive import ContrastiveObjective

    pool = build_pool(16, 0, show_progress=False, workers=1)
    torch.manual_seed(0)
    if stage == "autoencoder":
        return AutoencoderObjective(architecture.vae(), seed=0, edge_weight=0.5), PoolBatches(pool, 4, 0)
    tokenizer = build_tokenizer(tmp_path / "tokenizer", architecture.MAX_TOKENS)
    model = architecture.clip_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)
    return ContrastiveObjective(model, tokenizer, 1.0), PoolBatches(pool, 4, 0, pairs=True)


class TestEveryAssembledObjective(ObjectiveContract):
    pass


def test_the_cases_cover_every_objective(tiny_models, clip_dir, tmp_path, photos):
    """A new objective class joins the contract: the assembled cases above reach every objective the
    assembly can build, and with the pretraining stages every ``Objective`` subclass in the package."""
    import importlib
    import pkgutil

    import dreamtune.objectives as package
    from dreamtune.objectives import autoencoder, composite, contrastive
    from dreamtune.objectives.base import Objective

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"dreamtune.objectives.{module.name}")
    wanted = set(Objective.__subclasses__())
    seen = {autoencoder.AutoencoderObjective, contrastive.ContrastiveObjective}
    for case in ("sd1-dreambooth-prior", "sd1-adversarial-clip", "sd1-ddpo", "sd1-handover", "sd1-distill-ladd"):
        objective, _, _ = assembled(tiny_models, clip_dir, case, tmp_path / case, photos)
        stack = [objective]
        while stack:
            item = stack.pop()
            seen.add(type(item))
            stack += [v for v in vars(item).values() if isinstance(v, tuple(wanted))]
            stack += [o for _, o in item.parts.values()] if isinstance(item, composite.WeightedSum) else []
    assert wanted <= seen, wanted - seen
