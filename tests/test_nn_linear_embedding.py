"""Linear, Identity, Embedding, Dropout, activations, Flatten: outputs and gradients vs PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F

OUT_TOL, GRAD_TOL = 2e-5, 5e-4


def _copy_weights(nf_mod: nf.nn.Module, t_mod: torch.nn.Module) -> None:
    nf_mod.load_state_dict({k: v.detach().numpy() for k, v in t_mod.state_dict().items()})


def _compare(nf_mod, t_mod, x: np.ndarray, grad_input: bool = True) -> None:
    """Same input through both modules; compare outputs, input grads and every parameter grad."""
    xn = nf.tensor(x, requires_grad=grad_input and x.dtype.kind == "f")
    xt = torch.tensor(x, requires_grad=grad_input and x.dtype.kind == "f")
    yn, yt = nf_mod(xn), t_mod(xt)
    np.testing.assert_allclose(yn.detach().numpy(), yt.detach().numpy(), atol=OUT_TOL, rtol=OUT_TOL)
    g = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    yn.backward(nf.tensor(g))
    yt.backward(torch.tensor(g))
    if xt.requires_grad:
        np.testing.assert_allclose(xn.grad.numpy(), xt.grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL)
    tp = dict(t_mod.named_parameters())
    for name, p in nf_mod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL,
                                   err_msg=name)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8), (8,)])
def test_linear_matches_torch(bias, shape):
    t = torch.nn.Linear(8, 6, bias=bias)
    n = nf.nn.Linear(8, 6, bias=bias)
    _copy_weights(n, t)
    _compare(n, t, np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def test_linear_frozen_weight_skips_weight_grad():
    n = nf.nn.Linear(4, 3)
    n.freeze("weight")
    x = nf.randn(2, 4, requires_grad=True)
    n(x).sum().backward()
    assert n.weight.grad is None and n.bias.grad is not None and x.grad is not None


def test_linear_shape_error_names_layer_and_shapes():
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=4, out_features=3\): expected input with last "
                                           r"dimension 4, got shape \(2, 5\)"):
        nf.nn.Linear(4, 3)(nf.randn(2, 5))
    with pytest.raises(RuntimeError, match="linear"):
        F.linear(nf.randn(2, 5), nf.randn(3, 4))


def test_linear_default_init_statistics():
    nf.manual_seed(0)
    lin = nf.nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = lin.weight.detach().numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    assert np.abs(lin.bias.detach().numpy()).max() <= bound
    nf.manual_seed(0)
    assert np.array_equal(nf.nn.Linear(400, 300).weight.detach().numpy(), w)


def test_linear_gradcheck():
    x = nf.randn(3, 4, dtype=nf.float64, requires_grad=True)
    w = nf.randn(2, 4, dtype=nf.float64, requires_grad=True)
    b = nf.randn(2, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(F.linear, (x, w, b))
    x3 = nf.randn(2, 2, 4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a, c: F.linear(a, c), (x3, w))


def test_identity():
    x = nf.randn(3, 2)
    assert nf.nn.Identity(5, foo=1)(x) is x


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_torch(padding_idx):
    t = torch.nn.Embedding(10, 5, padding_idx=padding_idx)
    n = nf.nn.Embedding(10, 5, padding_idx=padding_idx)
    _copy_weights(n, t)
    idx = np.array([[0, 3, 3, 9], [1, 0, 3, 2]], dtype=np.int64)
    _compare(n, t, idx, grad_input=False)
    if padding_idx is not None:
        assert not n.weight.grad.numpy()[padding_idx].any()


def test_embedding_init_and_padding_row():
    nf.manual_seed(3)
    e = nf.nn.Embedding(1000, 16, padding_idx=2)
    w = e.weight.detach().numpy()
    assert not w[2].any()
    assert abs(w.std() - 1.0) < 0.02 and abs(w.mean()) < 0.02


def test_embedding_errors():
    e = nf.nn.Embedding(10, 4)
    with pytest.raises(IndexError, match="index 10 is out of range.*10 rows"):
        e(nf.tensor([1, 10]))
    with pytest.raises(RuntimeError, match="integer"):
        e(nf.tensor([1.0, 2.0]))


def test_embedding_from_pretrained():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    e = nf.nn.Embedding.from_pretrained(nf.tensor(w))
    assert not e.weight.requires_grad
    np.testing.assert_array_equal(e(nf.tensor([3, 1])).numpy(), w[[3, 1]])
    e2 = nf.nn.Embedding.from_pretrained(nf.tensor(w), freeze=False, padding_idx=1)
    assert e2.weight.requires_grad and e2.padding_idx == 1


def test_embedding_gradcheck():
    w = nf.randn(5, 3, dtype=nf.float64, requires_grad=True)
    idx = nf.tensor([[0, 4, 4], [2, 0, 1]])
    assert nf.autograd.gradcheck(lambda a: F.embedding(idx, a), (w,))  # padding rows get no grad by design


def test_dropout_train_eval_and_scale():
    nf.manual_seed(0)
    d = nf.nn.Dropout(0.25)
    x = nf.ones(200, 200, requires_grad=True)
    y = d(x)
    vals = np.unique(y.detach().numpy())
    np.testing.assert_allclose(vals, [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((y.detach().numpy() == 0).mean() - 0.25) < 0.01
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())  # grad = mask * scale
    d.eval()
    assert d(x) is x
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x
    assert not F.dropout(nf.ones(10), 1.0).numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nf.nn.Dropout(1.5)


def test_dropout_reproducible_with_seed():
    nf.manual_seed(7)
    a = F.dropout(nf.ones(50), 0.5).numpy()
    nf.manual_seed(7)
    b = F.dropout(nf.ones(50), 0.5).numpy()
    assert np.array_equal(a, b)
    g = nf.Generator().manual_seed(7)
    assert np.array_equal(F.dropout(nf.ones(50), 0.5, generator=g).numpy(), a)


def test_dropout_gradcheck():
    x = nf.randn(4, 5, dtype=nf.float64, requires_grad=True)

    def fn(a):
        nf.manual_seed(11)
        return F.dropout(a, 0.3)
    assert nf.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("nf_cls,t_cls,kwargs", [
    (nf.nn.ReLU, torch.nn.ReLU, {}),
    (nf.nn.GELU, torch.nn.GELU, {}),
    (nf.nn.GELU, torch.nn.GELU, {"approximate": "tanh"}),
    (nf.nn.SiLU, torch.nn.SiLU, {}),
    (nf.nn.Tanh, torch.nn.Tanh, {}),
    (nf.nn.Sigmoid, torch.nn.Sigmoid, {}),
    (nf.nn.Softmax, torch.nn.Softmax, {"dim": 1}),
    (nf.nn.LogSoftmax, torch.nn.LogSoftmax, {"dim": -1}),
    (nf.nn.LeakyReLU, torch.nn.LeakyReLU, {}),
    (nf.nn.LeakyReLU, torch.nn.LeakyReLU, {"negative_slope": 0.2}),
    (nf.nn.Flatten, torch.nn.Flatten, {}),
    (nf.nn.Flatten, torch.nn.Flatten, {"start_dim": 0, "end_dim": 1}),
    (nf.nn.Unflatten, torch.nn.Unflatten, {"dim": 2, "unflattened_size": (2, 2)}),
])
def test_activation_and_shape_modules(nf_cls, t_cls, kwargs):
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    _compare(nf_cls(**kwargs), t_cls(**kwargs), x)


def test_leaky_relu_gradcheck():
    x = nf.randn(3, 4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a: F.leaky_relu(a, 0.1), (x,))
