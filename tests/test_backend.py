"""Backends and devices: ``nf.device`` values, and a second device added by one class plus
``register_backend`` (a NumPy backend named "fake") on which ops run and differentiate."""
from __future__ import annotations

import numpy as np
import pytest

import nnforge as nf
from nnforge.backend import _BACKENDS, available_devices, get_backend, register_backend
from nnforge.backend.numpy_backend import NumpyBackend


class FakeBackend(NumpyBackend):
    """A second device: the whole definition of a new backend (a GPU one would set xp = cupy)."""

    name = "fake"

    def from_numpy(self, a):
        return np.array(a, copy=True)  # a real device copies on transfer; so do we, to catch aliasing


@pytest.fixture(scope="module", autouse=True)
def fake_device():
    register_backend(FakeBackend())
    yield nf.device("fake")
    _BACKENDS.pop("fake", None)
    nf.device("fake")._backend = None


# -- nf.device -------------------------------------------------------------------------------------------
def test_device_values():
    cpu = nf.device("cpu")
    assert cpu.type == "cpu" and cpu.index is None and str(cpu) == "cpu" and repr(cpu) == "device(type='cpu')"
    assert cpu == "cpu" and cpu == nf.device("cpu:0") and nf.device(cpu) is cpu and nf.device("cpu") is cpu
    c1 = nf.device("cuda:1")
    assert c1.type == "cuda" and c1.index == 1 and str(c1) == "cuda:1" and c1 != "cuda:0"
    assert nf.device("cuda", 1) == c1 and hash(nf.device("cuda", 1)) == hash(c1)
    assert repr(c1) == "device(type='cuda', index=1)"
    assert isinstance(cpu, nf.Device)
    with pytest.raises(TypeError, match="device"):
        nf.device(3)


def test_unregistered_device_error():
    with pytest.raises(RuntimeError, match=r"no backend is registered for device 'cuda'.*cpu"):
        get_backend("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        nf.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        nf.zeros(2, device="cuda")


def test_cpu_backend():
    assert "cpu" in available_devices() and get_backend("cpu").xp is np
    assert nf.ones(2).device.backend is get_backend(nf.device("cpu"))


# -- a second backend ------------------------------------------------------------------------------------
def test_fake_device_is_registered(fake_device):
    assert "fake" in available_devices()
    assert isinstance(fake_device.backend, FakeBackend)


def test_to_fake_and_back():
    x = nf.randn(3, 4)
    f = x.to("fake")
    assert f.device == "fake" and f.device.type == "fake" and f.dtype == x.dtype
    np.testing.assert_array_equal(f.numpy(), x.numpy())
    assert "device='fake'" in repr(f)
    back = f.to("cpu")
    assert back.device == "cpu" and back.cpu() is back
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert f.to("fake") is f and f.to(nf.device("fake")) is f
    g = x.to("fake", nf.float64)
    assert g.device == "fake" and g.dtype == nf.float64
    assert nf.tensor([1.0, 2.0], device="fake").device == "fake"
    assert nf.tensor(f).device == "fake"
    assert nf.zeros(2, device="fake").device == "fake" and nf.randn(2, device="fake").device == "fake"
    assert nf.zeros_like(f).device == "fake" and nf.arange(3, device="fake").device == "fake"


def test_ops_on_fake_tensors_run_and_differentiate():
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)

    def run(dev):
        a = nf.tensor(a_np, device=dev, requires_grad=True)
        b = nf.tensor(b_np, device=dev, requires_grad=True)
        h = (a @ b).tanh() + a[:, :2].exp() * 0.5
        out = nf.cat([h, h.softmax(-1)], 1).sum(0).max(0).values + a.var() + a.amax()
        out.backward()
        return out, a, b

    out_c, a_c, b_c = run("cpu")
    out_f, a_f, b_f = run("fake")
    assert out_f.device == "fake" and a_f.grad.device == "fake" and b_f.grad.device == "fake"
    np.testing.assert_allclose(out_f.item(), out_c.item(), rtol=1e-6)
    np.testing.assert_allclose(a_f.grad.numpy(), a_c.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(b_f.grad.numpy(), b_c.grad.numpy(), rtol=1e-6)


def test_gradient_flows_back_across_devices():
    x = nf.randn(3, requires_grad=True)
    y = (x.to("fake") * 3).sum().to("cpu")
    assert y.device == "cpu"
    y.backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [3.0] * 3
    with nf.no_grad():
        f = x.to("fake")
        f.add_(1.0)
        assert x.tolist() != f.tolist()  # a transfer is a copy


def test_gradcheck_on_fake_device():
    x = nf.randn(2, 3, dtype=nf.float64, device="fake", requires_grad=True)
    assert nf.autograd.gradcheck(lambda t: (t.sigmoid() * t).sum(1), [x])


def test_mixing_devices_raises_naming_both():
    c = nf.ones(3)
    f = nf.ones(3, device="fake")
    for op in (lambda: c + f, lambda: f * c, lambda: nf.matmul(c, f), lambda: nf.where(c > 0, c, f),
               lambda: nf.cat([c, f]), lambda: nf.maximum(f, c)):
        with pytest.raises(RuntimeError, match=r"(cpu.*fake|fake.*cpu)"):
            op()
    with pytest.raises(RuntimeError, match=r"add_.*cpu.*fake"):
        c.add_(f)
    with pytest.raises(RuntimeError, match=r"index.*fake.*cpu"):
        c[nf.tensor([0, 1], device="fake")]
    with pytest.raises(RuntimeError, match=r"gather.*fake.*cpu"):
        c.gather(0, nf.tensor([0], device="fake"))
