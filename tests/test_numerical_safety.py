"""Numerical safety: anomaly detection names the op, log-softmax/cross-entropy survive extreme logits, and a loss
that becomes NaN stops training with its step number while the last good checkpoint stays intact."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F
from nnforge import nn
from nnforge.train import Trainer
from nnforge.train import checkpoint as ckpt
from nnforge.train.callbacks import ModelCheckpoint, TerminateOnNaN

pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")]


# ---------------------------------------------------------------- detect_anomaly

def test_detect_anomaly_names_the_forward_op():
    x = nf.tensor([0.0, 1.0], requires_grad=True)
    with nf.autograd.detect_anomaly():
        y = x * 2.0  # fine
        with pytest.raises(FloatingPointError, match=r"op 'Log' produced inf values in its forward"):
            (y - 0.0).log()
    assert (x * 0.0).log().detach().numpy()[0] == -np.inf  # without the mode: no check


def test_detect_anomaly_names_the_backward_op():
    x = nf.tensor([0.0, 4.0], requires_grad=True)
    with nf.autograd.detect_anomaly():
        y = x.sqrt().sum()  # forward is finite: sqrt(0) = 0
        with pytest.raises(FloatingPointError, match=r"op 'Sqrt' produced inf values in its backward"):
            y.backward()


def test_detect_anomaly_nan_in_a_model_forward():
    nf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    x = nf.tensor([[1.0, np.inf, 0.0]])
    with nf.autograd.detect_anomaly(), pytest.raises(FloatingPointError, match=r"op '\w+' produced (nan|inf)"):
        model(x)


# ---------------------------------------------------------------- extreme logits

@pytest.mark.parametrize("big", [1e4, 3e38])
def test_log_softmax_and_cross_entropy_extreme_logits_match_torch(big):
    x = np.array([[big, -big, 0.0], [-big, -big, big], [big, big, -big], [0.0, 0.0, 0.0]], np.float32)
    t = np.array([0, 2, 1, 1])
    ls = F.log_softmax(nf.tensor(x), dim=-1).numpy()
    tls = torch.log_softmax(torch.tensor(x), -1).numpy()
    assert not np.isnan(ls).any()
    np.testing.assert_array_equal(ls, tls)

    a = nf.tensor(x, requires_grad=True)
    loss = F.cross_entropy(a, nf.tensor(t))
    loss.backward()
    ta = torch.tensor(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(ta, torch.tensor(t))
    tloss.backward()
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(tloss.item(), rel=1e-6)
    assert np.isfinite(a.grad.numpy()).all()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), atol=1e-7)


def test_cross_entropy_wrong_class_at_float32_max_is_inf_not_nan():
    """The true loss (6e38) does not fit in float32: inf like torch, and the gradient stays finite."""
    x = np.array([[3e38, -3e38]], np.float32)
    a = nf.tensor(x, requires_grad=True)
    loss = F.cross_entropy(a, nf.tensor([1]))
    loss.backward()
    tloss = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor([1]))
    assert loss.item() == tloss.item() == np.inf
    np.testing.assert_array_equal(a.grad.numpy(), [[1.0, -1.0]])


# ---------------------------------------------------------------- NaN loss stops training

K = 6  # the step whose batch holds an inf


def _data(poison: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    if poison:
        x[4 * (K - 1) + 2, 3] = np.inf  # batch K (batch_size 4, no shuffling)
    return x, y


def _trainer(out, poison: bool, callbacks=()):
    nf.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))  # (tanh would squash the inf to 1)
    opt = nf.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model, opt, F.cross_entropy, _data(poison), batch_size=4, epochs=3, output_dir=out, save_steps=1,
                   seed=0, shuffle=False, callbacks=list(callbacks))


def test_trainer_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, capsys):
    stop = TerminateOnNaN()
    trainer = _trainer(tmp_path / "run", poison=True, callbacks=[stop])
    with pytest.warns(RuntimeWarning, match=f"loss became nan at step {K}"):
        result = trainer.train()
    assert result["global_step"] == K
    assert stop.message is not None and f"global step {K})" in stop.message
    assert f"global step {K}" in capsys.readouterr().out
    found = ckpt.list_checkpoints(tmp_path / "run")
    assert [p.name for p in found][-1] == f"checkpoint-{K - 1}"  # nothing written from step K on
    good = ckpt.read_checkpoint(found[-1])  # verifies the manifest
    for name, value in good["model"].items():
        assert np.isfinite(value.numpy()).all(), name

    clean = _trainer(tmp_path / "clean", poison=False)
    clean.train(max_steps=K - 1)
    for name, value in clean.model.state_dict().items():
        assert np.array_equal(good["model"][name].numpy(), value.numpy()), f"{name}: not the last good state"

    # the run resumes from the last good checkpoint (after the data is fixed)
    fixed = _trainer(tmp_path / "run", poison=False)
    fixed.train(max_steps=K + 1, resume_from_checkpoint=True)
    assert fixed.resumed_from == found[-1]


def test_terminate_on_nan_names_the_global_step_after_resume(tmp_path):
    _trainer(tmp_path / "run", poison=False).train(max_steps=3)
    stop = TerminateOnNaN()
    trainer = _trainer(tmp_path / "run", poison=True, callbacks=[stop])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trainer.train(resume_from_checkpoint=True)
    assert f"(global step {K})" in stop.message


def test_trainer_without_terminate_on_nan_writes_no_poisoned_checkpoint(tmp_path):
    trainer = _trainer(tmp_path / "run", poison=True)
    with pytest.warns(RuntimeWarning, match=f"at step {K}"):
        trainer.train(max_steps=K + 3)
    assert ckpt.list_checkpoints(tmp_path / "run")[-1].name == f"checkpoint-{K - 1}"


class _PoisonOnce(nf.utils.data.Dataset):
    """10 samples; the 25th sample drawn (epoch 3, batch 3 with batch_size 2) holds a NaN."""

    def __init__(self):
        self.x, self.y = _data(poison=False)
        self.draws = 0

    def __len__(self):
        return 10

    def __getitem__(self, i):
        self.draws += 1
        row = self.x[i].copy()
        if self.draws == 25:
            row[1] = np.nan
        return row, self.y[i]


def test_fit_terminate_on_nan_keeps_last_good_model_checkpoint(tmp_path):
    nf.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    stop = TerminateOnNaN()
    saver = ModelCheckpoint(str(tmp_path / "model-{epoch}.safetensors"), monitor="loss")
    with pytest.warns(RuntimeWarning, match="not saving"):
        history = model.fit(_PoisonOnce(), batch_size=2, epochs=5, shuffle=False, verbose=0, callbacks=[stop, saver])
    assert len(history.history["loss"]) == 3 and stop.message is not None
    assert "epoch 3, batch 3 (global step 13)" in stop.message
    assert [p.rsplit("/", 1)[-1] for p in saver.saved] == ["model-1.safetensors", "model-2.safetensors"]
    for value in nf.load(saver.saved[-1]).values():
        assert np.isfinite(value.numpy()).all()
