"""What the MPI worker and its single-process reference share: the model, the data, the training recipes."""
from __future__ import annotations

import numpy as np

import nnforge as nf
import nnforge.nn.functional as F
from nnforge import nn

BATCH, STEPS, N = 16, 6, 64
TIMEOUT = 3  # seconds, for the "hang" mode


class Net(nn.Module):
    """A small MLP; fc2 is applied twice (a parameter that gets two gradients per backward) and ``unused``
    never takes part (no gradient on any rank)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        h = self.fc1(x).tanh()
        return self.fc2(h) + 0.5 * self.fc2(h * h)


def lora_net() -> nn.Module:
    from nnforge.peft import LoraConfig, get_peft_model
    model = Net()
    return get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["fc1", "fc2"]))


def loss_fn(pred, y):
    return F.mse_loss(pred, y)


def batch(step: int) -> tuple:
    rng = np.random.default_rng(1000 + step)
    return (nf.tensor(rng.standard_normal((BATCH, 8)).astype(np.float32)),
            nf.tensor(rng.standard_normal((BATCH, 4)).astype(np.float32)))


def dataset() -> tuple:
    rng = np.random.default_rng(7)
    return (rng.standard_normal((N, 8)).astype(np.float32), rng.standard_normal((N, 4)).astype(np.float32))


def train_reference(model: nn.Module, params: list | None = None, micro: int = 1) -> nn.Module:
    """Single-process SGD with momentum on the full batch of each step (``micro`` micro-batches)."""
    opt = nf.optim.SGD(params if params is not None else model.parameters(), lr=0.1, momentum=0.9)
    for step in range(STEPS):
        x, y = batch(step)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model


def make_trainer(model: nn.Module, batch_size: int, output_dir, accumulation: int):
    from nnforge.train import Trainer
    x, y = dataset()
    return Trainer(model, nf.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loss_fn, (x, y),
                   batch_size=batch_size, epochs=2, output_dir=str(output_dir), seed=3,
                   gradient_accumulation_steps=accumulation)


def run_fit(model: nn.Module, batch_size: int, verbose: int = 0):
    x, y = dataset()
    model.compile(optimizer=nf.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), loss=loss_fn)
    nf.manual_seed(7)
    return model.fit(x, y, batch_size=batch_size, epochs=2, verbose=verbose)
