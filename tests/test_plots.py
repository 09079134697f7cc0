"""PNG plots: training curves (History.plot) and confusion matrices, via matplotlib's Agg canvas."""
import builtins

import numpy as np
import pytest

import nnforge as nf
from nnforge import metrics, nn
from nnforge.train import History, plot_confusion_matrix

matplotlib = pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_history_plot_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    nf.manual_seed(0)
    model = nn.Linear(4, 2)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=3, validation_split=0.2, verbose=0)
    path = h.plot(tmp_path / "curves.png", title="demo")
    w, hgt = _png_size(tmp_path / "curves.png")
    assert path == str(tmp_path / "curves.png") and w > 600 and hgt > 200  # two panels side by side
    h.plot(tmp_path / "loss.png", metrics=["loss"])
    assert _png_size(tmp_path / "loss.png")[0] < w
    assert list(tmp_path.glob(".*")) == []  # atomic write: no temporary files left
    with pytest.raises(ValueError, match="empty"):
        History().plot(tmp_path / "none.png")


def test_confusion_matrix_png(tmp_path):
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    pred = np.array([0, 2, 2, 2, 1, 0, 1])
    cm = metrics.confusion_matrix(y, pred)
    plot_confusion_matrix(cm, tmp_path / "cm.png", class_names=["cat", "dog", "fox"])
    plot_confusion_matrix(cm, tmp_path / "cm_norm.png", normalize=True)
    assert (tmp_path / "cm.png").stat().st_size > 1000 and _png_size(tmp_path / "cm_norm.png")[0] > 100
    stream = metrics.ConfusionMatrix()
    stream.update(pred, y)
    stream.plot(tmp_path / "cm_stream.png")
    assert (tmp_path / "cm_stream.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="class_names"):
        plot_confusion_matrix(cm, tmp_path / "bad.png", class_names=["a"])


def test_plots_do_not_touch_the_global_backend(tmp_path):
    before = matplotlib.get_backend()
    plot_confusion_matrix(np.eye(2), tmp_path / "cm.png")
    assert matplotlib.get_backend() == before


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match=r"pip install nnforge\[plot\]"):
        plot_confusion_matrix(np.eye(2), tmp_path / "cm.png")
