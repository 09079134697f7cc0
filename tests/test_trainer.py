"""nnforge.train.Trainer: training to accuracy, gradient accumulation, clipping, schedulers, evaluation,
checkpoint rotation, callbacks, batch conventions and errors."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import nnforge as nf
import nnforge.nn as nn
import nnforge.nn.functional as F
from nnforge.optim import lr_scheduler as lrs
from nnforge.train import Callback, Trainer
from nnforge.train import checkpoint as ckpt
from nnforge.utils.data import Dataset, IterableDataset, TensorDataset


def _toy(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = (x @ rng.standard_normal(5) > 0).astype(np.int64)
    return x, y


def _mlp(seed=0, dropout=0.0):
    nf.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Dropout(dropout), nn.Linear(12, 2))


def _accuracy(y_true, y_pred):
    return float((y_pred.argmax(-1) == y_true).mean())


def test_trains_mlp_on_digits_to_95_percent():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    train, test = perm[:1500], perm[1500:]
    nf.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    opt = nf.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    trainer = Trainer(model, opt, F.cross_entropy, (x[train], y[train]), eval_dataset=(x[test], y[test]),
                      batch_size=32, epochs=12, metrics=["accuracy", _accuracy],
                      lr_scheduler=lrs.CosineAnnealingLR(opt, T_max=12 * 47))
    out = trainer.train()
    assert out["global_step"] == 12 * 47 and out["epoch"] == 12
    result = trainer.evaluate()
    assert result["eval_accuracy"] >= 0.95, result  # measured 0.966
    assert result["eval__accuracy"] == result["eval_accuracy"]
    assert result["eval_loss"] < 0.2


def test_gradient_accumulation_equals_larger_batch():
    x, y = _toy(96)
    runs = {}
    for bs, accum in ((8, 4), (32, 1), (16, 2)):
        model = _mlp()
        opt = nf.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        t = Trainer(model, opt, F.cross_entropy, TensorDataset(x, y), batch_size=bs, epochs=3,
                    gradient_accumulation_steps=accum, seed=3)
        out = t.train()
        assert out["global_step"] == 9
        runs[(bs, accum)] = [p.detach().numpy().copy() for p in model.parameters()]
    ref = runs[(32, 1)]
    assert not np.array_equal(ref[0], next(_mlp().parameters()).detach().numpy())  # training moved the weights
    for key in ((8, 4), (16, 2)):
        for a, b in zip(runs[key], ref):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_accumulation_window_shorter_at_epoch_end():
    x, y = _toy(40)  # 5 micro-batches of 8, windows of 2: 3 steps per epoch (2 + 2 + 1)
    t = Trainer(_mlp(), nf.optim.SGD(_mlp().parameters(), lr=0.1), F.cross_entropy, (x, y), batch_size=8,
                epochs=2, gradient_accumulation_steps=2)
    assert t.steps_per_epoch == 3
    assert t.train()["global_step"] == 6


def test_max_grad_norm_clips_each_step():
    x, y = _toy(32)
    model = _mlp()
    before = [p.detach().numpy().copy() for p in model.parameters()]
    opt = nf.optim.SGD(model.parameters(), lr=1.0)
    t = Trainer(model, opt, F.cross_entropy, (x, y), batch_size=32, max_grad_norm=1e-3, logging_steps=1)
    t.train(max_steps=1)
    delta = np.sqrt(sum(((p.detach().numpy() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    np.testing.assert_allclose(delta, 1e-3, rtol=1e-3)
    assert t.log_history[0]["grad_norm"] > 1e-2   # the norm before clipping is reported


def test_scheduler_steps_once_per_optimizer_step():
    x, y = _toy(64)
    model = _mlp()
    opt = nf.optim.SGD(model.parameters(), lr=1.0)
    sched = lrs.LambdaLR(opt, lambda s: 0.5 ** s)
    seen = []

    class LR(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["lr"])

    t = Trainer(model, opt, F.cross_entropy, (x, y), batch_size=8, epochs=2, gradient_accumulation_steps=2,
                lr_scheduler=sched, callbacks=[LR()])
    t.train()
    assert sched.last_epoch == 8 and t.state.global_step == 8
    assert seen == [0.5 ** s for s in range(1, 9)]


def test_evaluate_loss_is_sample_weighted_mean_and_restores_mode():
    x, y = _toy(50)
    model = _mlp(dropout=0.5)
    t = Trainer(model, nf.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, (x, y), eval_dataset=(x, y),
                batch_size=16, metrics=["accuracy"])
    model.train()
    result = t.evaluate()
    assert model.training
    model.eval()
    with nf.no_grad():
        logits = model(nf.tensor(x))
        expected = F.cross_entropy(logits, nf.tensor(y)).item()
    assert set(result) == {"eval_loss", "eval_accuracy"}
    np.testing.assert_allclose(result["eval_loss"], expected, rtol=1e-6)
    assert result["eval_accuracy"] == _accuracy(y, logits.numpy())
    with pytest.raises(ValueError, match="no eval_dataset"):
        Trainer(model, nf.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, (x, y)).evaluate()


def test_rotation_keeps_last_n(tmp_path):
    x, y = _toy(64)
    model = _mlp()
    t = Trainer(model, nf.optim.Adam(model.parameters()), F.cross_entropy, (x, y), batch_size=8,
                output_dir=tmp_path, save_steps=2, save_total_limit=2)
    t.train(max_steps=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-8", "checkpoint-9"]
    for p in ckpt.list_checkpoints(tmp_path):
        ckpt.read_checkpoint(p)


class _Recorder(Callback):
    def __init__(self, stop_at=None):
        super().__init__()
        self.calls = []
        self.stop_at = stop_at

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith("on_"):
            def record(*args, **kwargs):
                self.calls.append((name, args))
                return attr(*args, **kwargs)
            return record
        return attr

    def on_train_batch_end(self, batch, logs=None):
        if self.stop_at is not None and len([c for c in self.calls if c[0] == "on_train_batch_end"]) >= self.stop_at:
            self.model.stop_training = True


def test_callbacks_receive_hooks_and_can_stop():
    x, y = _toy(48)
    model = _mlp()
    rec = _Recorder()
    t = Trainer(model, nf.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, (x, y), eval_dataset=(x, y),
                batch_size=16, epochs=2, callbacks=[rec], metrics=["accuracy"])
    t.train()
    names = [c[0] for c in rec.calls]
    assert rec.model is model and rec.params["steps"] == 3 and rec.params["epochs"] == 2
    assert names[0] == "on_train_begin" and names[-1] == "on_train_end"
    assert names.count("on_train_batch_begin") == names.count("on_train_batch_end") == 6
    assert names.count("on_epoch_begin") == names.count("on_epoch_end") == 2
    assert names.count("on_test_begin") == names.count("on_test_end") == 2
    epoch_ends = [c[1] for c in rec.calls if c[0] == "on_epoch_end"]
    assert [e[0] for e in epoch_ends] == [0, 1]
    logs = epoch_ends[0][1]
    assert set(logs) == {"loss", "lr", "val_loss", "val_accuracy"}
    assert all(isinstance(v, float) for v in logs.values())

    stopper = _Recorder(stop_at=2)
    t = Trainer(_mlp(), nf.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, (x, y), batch_size=8,
                epochs=5, callbacks=[stopper])
    assert t.train()["global_step"] == 2


class _DictData(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


class _HFStyle(nn.Module):
    """Returns an object with .loss when labels are given (Hugging Face convention)."""

    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, features, labels=None):
        logits = self.net(features)
        return SimpleNamespace(logits=logits, loss=None if labels is None else F.cross_entropy(logits, labels))


def test_dict_batches_hf_style_and_with_loss_fn():
    x, y = _toy(64)
    results = []
    for loss_fn in (None, lambda out, labels: F.cross_entropy(out.logits, labels)):
        model = _HFStyle()
        t = Trainer(model, nf.optim.SGD(model.parameters(), lr=0.1), loss_fn, _DictData(x, y),
                    eval_dataset=_DictData(x, y), batch_size=16, epochs=2, metrics=["accuracy"])
        t.train()
        results.append(([p.detach().numpy().copy() for p in model.parameters()], t.evaluate()))
    for a, b in zip(results[0][0], results[1][0]):
        assert np.array_equal(a, b)
    assert results[0][1] == results[1][1]


def test_single_input_batches_use_loss_fn_of_outputs():
    x, _ = _toy(32)
    model = nn.Linear(5, 5)
    t = Trainer(model, nf.optim.SGD(model.parameters(), lr=0.1), lambda out: (out ** 2).mean(),
                TensorDataset(x), batch_size=8, epochs=3)
    before = (model(nf.tensor(x)) ** 2).mean().item()
    t.train()
    assert (model(nf.tensor(x)) ** 2).mean().item() < before


def test_errors():
    x, y = _toy(16)
    model = _mlp()
    opt = nf.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="save_steps needs an output_dir"):
        Trainer(model, opt, F.cross_entropy, (x, y), save_steps=5)
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be a positive integer"):
        Trainer(model, opt, F.cross_entropy, (x, y), gradient_accumulation_steps=0)
    with pytest.raises(TypeError, match="map-style Dataset"):
        Trainer(model, opt, F.cross_entropy, IterableDataset())
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(model, opt, F.cross_entropy, (x, y), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match=r"loss must be a 0-d Tensor, got Tensor\(16,\)"):
        Trainer(model, opt, lambda o, t: F.cross_entropy(o, t, reduction="none"), (x, y), batch_size=16).train()
    with pytest.raises(ValueError, match="loss_fn=None works only with dict batches"):
        Trainer(model, opt, None, (x, y)).train()
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        Trainer(model, opt, F.cross_entropy, (x, y), metrics=["nope"])
    with pytest.raises(ValueError, match="resume_from_checkpoint=True needs an output_dir"):
        Trainer(model, opt, F.cross_entropy, (x, y)).train(resume_from_checkpoint=True)


def test_keras_lr_callbacks_reach_the_trainers_optimizer():
    from nnforge.train.callbacks import LearningRateScheduler

    nf.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = nf.optim.SGD(model.parameters(), lr=0.1)
    x = nf.randn(16, 4)
    y = nf.randint(0, 2, (16,))
    trainer = Trainer(model, opt, nf.nn.functional.cross_entropy, (x, y), batch_size=8, epochs=2,
                      callbacks=[LearningRateScheduler(lambda epoch, lr: 0.5 ** (epoch + 1))])
    trainer.train()
    assert opt.param_groups[0]["lr"] == 0.25
