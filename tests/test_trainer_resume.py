"""Trainer checkpoint/resume: a run stopped at step N and resumed to M ends bit-identical to an uninterrupted run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import nnforge as nf
import nnforge.nn as nn
import nnforge.nn.functional as F
from nnforge.optim import lr_scheduler as lrs
from nnforge.train import Trainer
from nnforge.train import checkpoint as ckpt
from nnforge.utils.data import TensorDataset

# 70 samples, micro-batches of 8 -> 9 per epoch (the last has 6), accumulation 2 -> 5 steps per epoch (the last
# window holds one micro-batch): stops land mid-epoch, at an epoch's end and across epochs.
N_SAMPLES, BATCH, ACCUM = 70, 8, 2


def _data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N_SAMPLES, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return TensorDataset(x, y)


def _make_trainer(tmp_path, optimizer="adamw", scheduler="linear_warmup", **kw):
    nf.manual_seed(123)  # the same initial weights for every run
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    if optimizer == "adamw":
        opt = nf.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=0.05, amsgrad=True)
    else:
        opt = nf.optim.SGD(model.parameters(), lr=5e-2, momentum=0.9, nesterov=True)
    sched = {"linear_warmup": lambda: lrs.get_linear_schedule_with_warmup(opt, 3, 20),
             "onecycle": lambda: lrs.OneCycleLR(opt, max_lr=0.1, total_steps=30),
             "multistep": lambda: lrs.MultiStepLR(opt, milestones=[4, 4, 9], gamma=0.5),
             "plateau": lambda: lrs.ReduceLROnPlateau(opt, patience=0, factor=0.5),
             None: lambda: None}[scheduler]()
    args = dict(batch_size=BATCH, epochs=100, output_dir=str(tmp_path), save_steps=3, seed=7,
                gradient_accumulation_steps=ACCUM, max_grad_norm=0.5, lr_scheduler=sched, logging_steps=2)
    args.update(kw)
    return Trainer(model, opt, F.cross_entropy, _data(), **args)


def _weights(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def _assert_same_run(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), f"{k} differs after resume"
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for i in sa["state"]:
        for name, v in sa["state"][i].items():
            assert np.array_equal(np.asarray(v.numpy()), np.asarray(sb["state"][i][name].numpy())), (i, name)
    assert sa["param_groups"] == sb["param_groups"]
    assert a.state.global_step == b.state.global_step and a.state.epoch == b.state.epoch
    assert a.log_history == b.log_history
    assert nf.get_rng_state() is not None


@pytest.mark.parametrize("optimizer,scheduler,stop", [
    ("adamw", "linear_warmup", 7),   # mid-epoch (epoch 1, after 4 of 9 micro-batches)
    ("adamw", "onecycle", 5),        # exactly at an epoch's end
    ("sgd", "multistep", 3),
    ("sgd", "plateau", 11),
])
def test_stop_and_resume_is_bit_identical(tmp_path, optimizer, scheduler, stop):
    total = 13
    full = _make_trainer(tmp_path / "full", optimizer, scheduler, eval_dataset=_data(), eval_steps=4)
    full.train(max_steps=total)
    end_rng = nf.get_rng_state()

    first = _make_trainer(tmp_path / "run", optimizer, scheduler, eval_dataset=_data(), eval_steps=4)
    first.train(max_steps=stop)
    assert (tmp_path / "run" / f"checkpoint-{stop}" / ckpt.COMPLETE).is_file()
    nf.manual_seed(999)  # the resumed process's RNG is elsewhere: the checkpoint must restore it
    second = _make_trainer(tmp_path / "run", optimizer, scheduler, eval_dataset=_data(), eval_steps=4)
    second.train(max_steps=total, resume_from_checkpoint=True)
    assert second.resumed_from.name == f"checkpoint-{stop}"
    _assert_same_run(full, second)
    assert nf.get_rng_state() == end_rng
    if second.lr_scheduler is not None:
        assert second.lr_scheduler.state_dict() == full.lr_scheduler.state_dict()


def test_resume_without_checkpoint_would_differ(tmp_path):
    """Control: continuing without the restored state (RNG, data order...) does not reproduce the run."""
    full = _make_trainer(tmp_path / "full")
    full.train(max_steps=9)
    first = _make_trainer(tmp_path / "run")
    first.train(max_steps=4)
    state = {k: v.numpy() for k, v in first.model.state_dict().items()}
    second = _make_trainer(tmp_path / "other")
    second.model.load_state_dict(state)
    second.train(max_steps=5)
    assert not all(np.array_equal(a, b) for a, b in zip(_weights(full).values(), _weights(second).values()))


def test_multiple_resumes_and_explicit_path(tmp_path):
    full = _make_trainer(tmp_path / "full", save_steps=None)
    full.train(max_steps=12)
    run = tmp_path / "run"
    _make_trainer(run).train(max_steps=4)              # checkpoints 3, 4
    _make_trainer(run).train(max_steps=8, resume_from_checkpoint=run / "checkpoint-4")
    last = _make_trainer(run)
    last.train(max_steps=12, resume_from_checkpoint=str(run))  # a folder: its newest checkpoint (8)
    assert last.resumed_from.name == "checkpoint-8"
    _assert_same_run(full, last)


def test_resume_true_picks_newest_and_cleans_leftovers(tmp_path):
    _make_trainer(tmp_path, save_steps=2).train(max_steps=7)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [f"checkpoint-{s}" for s in (2, 4, 6, 7)]
    (tmp_path / "checkpoint-9.tmp-abc").mkdir()     # what a save killed before its rename leaves
    (tmp_path / "checkpoint-9.tmp-abc" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "checkpoint-12").mkdir()            # no COMPLETE marker: never a candidate
    t = _make_trainer(tmp_path, save_steps=2)
    t.train(max_steps=8, resume_from_checkpoint=True)
    assert t.resumed_from.name == "checkpoint-7"
    assert not (tmp_path / "checkpoint-9.tmp-abc").exists()


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "bad_json", "no_marker"])
def test_corrupt_newest_checkpoint_is_skipped(tmp_path, damage):
    full = _make_trainer(tmp_path / "full", save_steps=None)
    full.train(max_steps=10)
    run = tmp_path / "run"
    _make_trainer(run).train(max_steps=7)           # checkpoints 3, 6, 7
    newest = run / "checkpoint-7"
    if damage == "flip_byte":
        data = bytearray((newest / "model.safetensors").read_bytes())
        data[-3] ^= 0x01                            # a weight bit: the file still parses
        (newest / "model.safetensors").write_bytes(bytes(data))
    elif damage == "truncate":
        p = newest / "optimizer.safetensors"
        p.write_bytes(p.read_bytes()[:100])
    elif damage == "delete_file":
        os.remove(newest / "trainer_state.json")
    elif damage == "bad_json":
        (newest / ckpt.COMPLETE).write_text("{not json")
    else:
        os.remove(newest / ckpt.COMPLETE)
    resumed = _make_trainer(run)
    if damage == "no_marker":
        resumed.train(max_steps=10, resume_from_checkpoint=True)
    else:
        with pytest.warns(UserWarning, match="skipping checkpoint .*checkpoint-7"):
            resumed.train(max_steps=10, resume_from_checkpoint=True)
    assert resumed.resumed_from.name == "checkpoint-6"
    _assert_same_run(full, resumed)


def test_explicit_corrupt_checkpoint_raises(tmp_path):
    _make_trainer(tmp_path).train(max_steps=3)
    (tmp_path / "checkpoint-3" / "scheduler.json").write_text("[]")
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        _make_trainer(tmp_path).train(max_steps=4, resume_from_checkpoint=tmp_path / "checkpoint-3")


def test_no_checkpoint_starts_fresh_with_warning(tmp_path):
    fresh = _make_trainer(tmp_path / "a")
    fresh.train(max_steps=4)
    t = _make_trainer(tmp_path / "b")
    with pytest.warns(UserWarning, match="no complete checkpoint"):
        t.train(max_steps=4, resume_from_checkpoint=True)
    assert t.resumed_from is None
    _assert_same_run(fresh, t)


def test_mismatched_config_is_an_error(tmp_path):
    _make_trainer(tmp_path).train(max_steps=3)
    with pytest.raises(ValueError, match="batch_size"):
        _make_trainer(tmp_path, batch_size=4).train(max_steps=5, resume_from_checkpoint=True)


def test_checkpoint_contents_are_json_and_safetensors(tmp_path):
    _make_trainer(tmp_path, scheduler="multistep").train(max_steps=3)
    d = tmp_path / "checkpoint-3"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["COMPLETE", "model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
         "trainer_state.json"])
    manifest = json.loads((d / "COMPLETE").read_text())
    assert manifest["step"] == 3 and set(manifest["files"]) == {p.name for p in d.iterdir()} - {"COMPLETE"}
    state = json.loads((d / "trainer_state.json").read_text())
    assert state["state"]["global_step"] == 3 and state["state"]["batch_in_epoch"] == 6
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert not (d / name).read_bytes().startswith(b"\x80")   # no pickle protocol header
    sched = ckpt.from_json(json.loads((d / "scheduler.json").read_text()))
    assert sched["milestones"] == {4: 2, 9: 1}


def test_json_roundtrip_keeps_types_and_bits():
    from collections import Counter
    obj = {"a": (1, 2.0000000000000004, None), "c": Counter({3: 2}), "d": {1: "x"}, "inf": float("inf"),
           "f": 0.1 + 0.2, "nested": [{"t": (0.1,)}]}
    back = ckpt.from_json(json.loads(json.dumps(ckpt.to_json(obj))))
    assert back == obj and isinstance(back["a"], tuple) and isinstance(back["c"], Counter)
    with pytest.raises(TypeError, match="scheduler.fn is a function"):
        ckpt.to_json({"fn": lambda s: s}, "scheduler")
