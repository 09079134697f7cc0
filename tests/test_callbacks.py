"""Callbacks in Module.fit: early stopping, checkpoints, CSV, TensorBoard, LR control, NaN guard, progress bar."""
import csv
import io
import math

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nnforge as nf
from nnforge import nn
from nnforge.train import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from nnforge.train.tensorboard import crc32c, read_events


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    return (x[perm] / 16.0).astype(np.float32)[:600], y[perm][:600]


def model_and_data(digits, lr=0.01, optimizer="adam"):
    nf.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = nf.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else nf.optim.Adam(model.parameters(), lr=lr)
    model.compile(opt, "sparse_categorical_crossentropy", ["accuracy"])
    return model, digits


class Scripted(Callback):
    """Replaces a monitored value by a scripted sequence (to test monitors deterministically)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def test_callback_list_fans_out_and_sets_model_params():
    seen = []

    class Rec(Callback):
        def on_train_begin(self, logs=None):
            seen.append(("begin", self.model, self.params["epochs"]))

        def on_test_batch_end(self, batch, logs=None):
            seen.append(("test_batch", batch, logs))

    cl = CallbackList([Rec(), Rec()], model="M", params={"epochs": 3, "steps": 2, "verbose": 0})
    cl.on_train_begin()
    cl.on_test_batch_end(4, {"loss": 1.0})
    cl.on_predict_end()  # a hook nobody overrides is a no-op
    assert seen == [("begin", "M", 3)] * 2 + [("test_batch", 4, {"loss": 1.0})] * 2
    with pytest.raises(TypeError, match="Callback"):
        CallbackList([object()])


def test_hook_order_in_fit(digits):
    model, (x, y) = model_and_data(digits)
    events = []

    class Rec(Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *a, **k: events.append(name)
            return object.__getattribute__(self, name)

    rec = Rec()
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, validation_data=(x[:32], y[:32]),
              callbacks=CallbackList([rec]), verbose=0)
    assert rec.model is model and rec.params["steps"] == 2 and rec.params["epochs"] == 1
    assert events == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
                      "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_batch_begin",
                      "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end"]


def test_early_stopping_stops_and_restores_best_weights(digits):
    model, (x, y) = model_and_data(digits)
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model[2].weight.detach().numpy().copy())

    val = [1.0, 0.5, 0.7, 0.6, 0.8, 0.4, 0.3]  # best at epoch 1, then 3 epochs without improvement
    es = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    h = model.fit(x, y, epochs=7, validation_split=0.2, verbose=0, callbacks=[Scripted("val_loss", val), Snap(), es])
    assert h.epoch == [0, 1, 2, 3, 4]  # stopped after epoch 4 (index)
    assert es.stopped_epoch == 4 and es.best_epoch == 1 and es.best == 0.5
    np.testing.assert_array_equal(model[2].weight.detach().numpy(), snapshots[1])
    assert not np.array_equal(snapshots[4], snapshots[1])


def test_early_stopping_mode_max_and_missing_monitor(digits):
    model, (x, y) = model_and_data(digits)
    es = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.05)
    h = model.fit(x, y, epochs=5, validation_split=0.2, verbose=0,
                  callbacks=[Scripted("val_accuracy", [0.5, 0.6, 0.62, 0.9, 0.95]), es])
    assert len(h.epoch) == 3  # 0.62 is not 0.05 better than 0.6
    with pytest.raises(KeyError, match="val_nope"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping(monitor="val_nope")])


def test_model_checkpoint_save_best_only(digits, tmp_path):
    model, (x, y) = model_and_data(digits)
    path = tmp_path / "best.safetensors"
    val = [0.9, 0.8, 0.85, 0.7, 0.75]
    saved = []

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append({k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()})

    ck = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    model.fit(x, y, epochs=5, validation_split=0.2, verbose=0, callbacks=[Scripted("val_loss", val), Snap(), ck])
    assert ck.saved == [str(path)] * 3  # epochs 0, 1, 3 improved
    best = nf.load(path)
    for k, v in best.items():
        np.testing.assert_array_equal(v.numpy(), saved[3][k])
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]  # atomic writes leave no temp files
    # formatted paths, one file per epoch
    ck2 = ModelCheckpoint(tmp_path / "ep{epoch:02d}-{loss:.2f}.safetensors", monitor="loss")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[ck2])
    assert [p.split("/")[-1][:4] for p in ck2.saved] == ["ep01", "ep02"]
    fresh = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fresh.load_state_dict(nf.load(ck2.saved[-1]))
    np.testing.assert_array_equal(fresh[0].weight.detach().numpy(), model[0].weight.detach().numpy())


def test_csv_logger_rows(digits, tmp_path):
    model, (x, y) = model_and_data(digits)
    path = tmp_path / "log.csv"
    h = model.fit(x, y, epochs=3, validation_split=0.2, verbose=0, callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(h.history["val_loss"], rel=1e-12)
    model.fit(x, y, epochs=2, validation_split=0.2, verbose=0, callbacks=[CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3 + 2 and lines.count(lines[0]) == 1


def test_tensorboard_event_files_readable(digits, tmp_path):
    model, (x, y) = model_and_data(digits)
    h = model.fit(x, y, epochs=3, batch_size=100, validation_split=0.2, verbose=0,
                  callbacks=[TensorBoard(tmp_path, update_freq="batch")])
    train_file = next((tmp_path / "train").glob("events.out.tfevents.*"))
    val_file = next((tmp_path / "validation").glob("events.out.tfevents.*"))
    events = read_events(train_file)  # checks every record's CRC
    assert events[0]["file_version"] == "brain.Event:2"
    epoch_loss = [e["scalars"]["epoch_loss"] for e in events if "epoch_loss" in e.get("scalars", {})]
    assert epoch_loss == pytest.approx(h.history["loss"], rel=1e-6)  # stored as float32
    assert sum("batch_loss" in e.get("scalars", {}) for e in events) == 3 * 5
    # TensorBoard's own reader
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(val_file.parent))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    vals = acc.Scalars("epoch_accuracy")
    assert [v.step for v in vals] == [0, 1, 2]
    assert [v.value for v in vals] == pytest.approx(h.history["val_accuracy"], rel=1e-6)
    tr = EventAccumulator(str(train_file.parent))
    tr.Reload()
    assert [v.value for v in tr.Scalars("epoch_learning_rate")] == pytest.approx(h.history["lr"], rel=1e-6)


def test_tensorboard_crc_and_corruption(tmp_path):
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    from nnforge.train.tensorboard import EventFileWriter
    w = EventFileWriter(tmp_path)
    w.add_scalar("x", 1.5, step=7)
    w.close()
    assert read_events(w.path)[1] == {"step": 7, "wall_time": pytest.approx(read_events(w.path)[1]["wall_time"]),
                                      "scalars": {"x": 1.5}}
    data = bytearray(w.path.read_bytes())
    data[-6] ^= 0xFF
    w.path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC"):
        read_events(w.path)


def test_learning_rate_scheduler_changes_optimizer_lr(digits):
    model, (x, y) = model_and_data(digits, lr=0.1, optimizer="sgd")
    seen = []

    class LrSpy(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                seen.append(self.model.optimizer.param_groups[0]["lr"])

    h = model.fit(x, y, epochs=4, verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr), LrSpy()])
    assert seen == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert h.history["lr"] == pytest.approx(seen)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda epoch: 0.001 * (epoch + 1))])
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.002)


def test_reduce_lr_on_plateau(digits):
    model, (x, y) = model_and_data(digits, lr=0.1, optimizer="sgd")
    val = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.5]
    h = model.fit(x, y, epochs=7, validation_split=0.2, verbose=0,
                  callbacks=[Scripted("val_loss", val), ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1,
                                                                          min_lr=0.03)])
    # epochs 2, 3 stall -> halve after epoch 3; cooldown resets the count at epoch 4 (Keras semantics);
    # epochs 4, 5 stall -> halve after epoch 5, clipped at min_lr
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.03])
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.03)
    model.optimizer.param_groups[0]["lr"] = 0.1
    model.fit(x, y, epochs=4, validation_split=0.2, verbose=0,
              callbacks=[Scripted("val_loss", [1, 1, 1, 1]), ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.03)])
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.03)  # clipped at min_lr


def test_terminate_on_nan_names_the_step(digits, capsys):
    model, (x, y) = model_and_data(digits)
    calls = {"n": 0}
    orig = model.compiled_loss

    def loss(pred, target):
        calls["n"] += 1
        out = orig(pred, target)
        return out * float("nan") if calls["n"] == 13 else out

    model.compile(model.optimizer, loss)
    t = TerminateOnNaN()
    h = model.fit(x, y, batch_size=100, epochs=5, verbose=0, callbacks=[t])  # 6 steps per epoch
    out = capsys.readouterr().out
    assert "epoch 3, batch 1 (global step 13)" in out and t.message in out
    assert calls["n"] == 13 and len(h.epoch) == 3
    assert math.isnan(h.history["loss"][-1])


def test_progress_bar_plain_lines_when_not_a_tty(digits, capsys):
    model, (x, y) = model_and_data(digits)
    model.fit(x, y, batch_size=100, epochs=2, validation_split=0.2, verbose=0,
              callbacks=[ProgressBar(log_interval=0)])
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 2 * 5 + 2  # a line per step (log_interval=0) plus one per epoch
    assert lines[0].startswith("Epoch 1/2 step 1/5") and "samples/s" in lines[0] and "ETA" in lines[0]
    assert "loss:" in lines[0] and "accuracy:" in lines[0]
    assert lines[5].startswith("Epoch 1/2 5/5") and "val_accuracy:" in lines[5]
    model.fit(x, y, batch_size=100, epochs=2, verbose=1)  # default bar: stdout is not a TTY under capsys
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"Epoch {i + 1}/2 6/6") for i, line in enumerate(lines))
    model.fit(x, y, batch_size=100, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_redraws_in_place_on_a_tty(digits):
    model, (x, y) = model_and_data(digits)
    stream = io.StringIO()
    model.fit(x, y, batch_size=100, epochs=1, verbose=0, callbacks=[ProgressBar(stream=stream, tty=True, refresh=0)])
    out = stream.getvalue()
    frames = out.split("\r")[1:]
    assert len(frames) == 6 + 1 and out.endswith("\n")
    assert "[" in frames[0] and ">" in frames[0] and "1/6" in frames[0] and "ETA" in frames[0]
    assert "6/6 [" + "=" * 30 + "]" in frames[5]
    assert "samples/s" in frames[2] and "loss:" in frames[2]
    assert all(len(f.rstrip("\n")) >= len(frames[0].rstrip()) for f in frames[1:])  # longer frames overwrite
