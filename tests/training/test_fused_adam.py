"""The trainer's fused Adam takes the same steps as torch's plain Adam (to float rounding)."""

from __future__ import annotations

import torch

import cliper.testing.backbones as C
from cliper.config.schema import TrainSection
from cliper.evaluation.evaluator import Evaluator
from cliper.training.trainer import Trainer


def test_trainer_adam_is_fused_and_steps_like_plain_adam():
    data = C.data()
    fast = C.build("lightgcn", seed=1)
    plain = C.build("lightgcn", seed=1)
    settings = TrainSection(learning_rate=0.05, weight_decay=1e-3, batch_size=64)
    trainer = Trainer(fast, data, Evaluator(data), settings, progress=False)
    assert trainer.optimizer.defaults["fused"]
    reference = torch.optim.Adam(plain.parameters(), lr=0.05, weight_decay=1e-3)
    for seed in range(5):
        batch = C.make_batch(seed)
        for model, opt in ((fast, trainer.optimizer), (plain, reference)):
            opt.zero_grad()
            model.calculate_loss(batch).backward()
            opt.step()
    moved = (fast.user_embedding.weight - C.build("lightgcn", seed=1).user_embedding.weight).abs().max()
    assert moved > 1e-2  # the steps did something
    for a, b in zip(fast.parameters(), plain.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
