"""Rewards for reinforcement-learning fine-tuning. Each is ``fn(images, prompts, meta) -> Tensor[B]``
with images (B,3,H,W) in [0,1]; ``differentiable`` says whether DRaFT can backpropagate it."""
