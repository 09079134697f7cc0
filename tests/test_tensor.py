"""Tensor basics: creation functions, dtype inference and conversions, metadata, NumPy interop, in-place
updates, repr, and seeded randomness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf


def _same_dtype(t, ref):
    assert t.dtype.name == str(ref.dtype).removeprefix("torch."), (t.dtype, ref.dtype)


# -- creation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    [1.0, 2.0], [1, 2], [True, False], 3.5, 7, False, [[1, 2.5]], [], [[1, 2], [3, 4]], np.float64(1.5),
    [np.float32(1.0)], np.array([1, 2], dtype=np.int32), np.array([1.0], dtype=np.float64),
    np.array([1.0], dtype=np.float16), np.array(2, dtype=np.int64), np.zeros((2, 0)),
])
def test_tensor_dtype_inference_like_torch(data):
    t, ref = nf.tensor(data), torch.tensor(data)
    _same_dtype(t, ref)
    assert t.shape == tuple(ref.shape)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())


def test_tensor_copies_and_from_numpy_shares():
    a = np.ones(3, dtype=np.float32)
    t, s = nf.tensor(a), nf.from_numpy(a)
    a[0] = 5
    assert t.tolist() == [1.0, 1.0, 1.0] and s.tolist() == [5.0, 1.0, 1.0]
    assert nf.from_numpy(np.ones(2, dtype=np.float64)).dtype == nf.float64
    u = nf.tensor(t)
    t.add_(1)
    assert u.tolist() == [1.0, 1.0, 1.0]
    assert nf.as_tensor(t) is t


def test_tensor_explicit_dtype_and_errors():
    assert nf.tensor([1, 2], dtype=nf.float32).dtype == nf.float32
    assert nf.tensor([1.7, -1.7], dtype=nf.int64).tolist() == [1, -1]
    assert nf.tensor([1], dtype="float64").dtype == nf.float64
    assert nf.tensor([1], dtype=torch.float16).dtype == nf.float16
    assert nf.tensor([1], dtype=float).dtype == nf.float32 and nf.tensor([1.0], dtype=int).dtype == nf.int64
    with pytest.raises(ValueError, match="tensor"):  # ragged: ValueError, like torch
        nf.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="tensor"):
        nf.tensor(["a"])
    with pytest.raises(TypeError, match="dtype"):
        nf.tensor([1], dtype="complex-ish")


SIZE_CASES = [(), (3,), (2, 3), (0, 4)]


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", SIZE_CASES, ids=str)
def test_zeros_ones_empty(name, size):
    for args in ((size,), size) if size else ((size,),):
        t, ref = getattr(nf, name)(*args), getattr(torch, name)(*args)
        _same_dtype(t, ref)
        assert t.shape == tuple(ref.shape) and not t.requires_grad
        if name != "empty":
            np.testing.assert_array_equal(t.numpy(), ref.numpy())
    t = getattr(nf, name)(size, dtype=nf.int32, requires_grad=False)
    assert t.dtype == nf.int32
    assert getattr(nf, name)(2, requires_grad=True).requires_grad


@pytest.mark.parametrize("fill", [1.5, 2, True, -0.0])
def test_full(fill):
    t, ref = nf.full((2, 3), fill), torch.full((2, 3), fill)
    _same_dtype(t, ref)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())
    assert nf.full((2,), 3, dtype=nf.float64).dtype == nf.float64
    assert nf.full([], 1.0).shape == ()


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like", "randn_like", "rand_like"])
def test_like_functions(name):
    for base in (nf.ones(2, 3), nf.ones(4, dtype=nf.float64), nf.tensor([1, 2])):
        if name in ("randn_like", "rand_like") and base.dtype.kind != "f":
            continue
        t = getattr(nf, name)(base)
        assert t.shape == base.shape and t.dtype == base.dtype and t.device == base.device
    t = nf.zeros_like(nf.ones(2), dtype=nf.int64)
    assert t.dtype == nf.int64
    assert nf.full_like(nf.ones(2), 7.0).tolist() == [7.0, 7.0]
    assert nf.full_like(nf.tensor([1, 2]), 7).dtype == nf.int64
    assert nf.ones_like(nf.ones(2), requires_grad=True).requires_grad


@pytest.mark.parametrize("args,kw", [((5,), {}), ((2, 9), {}), ((1, 10, 3), {}), ((0, 1, 0.25), {}),
                                     ((5,), {"dtype": nf.float32}), ((-3, 3), {}), ((3, 0, -1), {}),
                                     ((0.5, 3),  {})], ids=str)
def test_arange(args, kw):
    tkw = {"dtype": torch.float32} if kw else {}
    t, ref = nf.arange(*args, **kw), torch.arange(*args, **tkw)
    _same_dtype(t, ref)
    np.testing.assert_allclose(t.numpy(), ref.numpy())


@pytest.mark.parametrize("args", [(0, 1, 5), (-2, 2, 1), (3, -3, 7), (0, 1, 0)], ids=str)
def test_linspace(args):
    t, ref = nf.linspace(*args), torch.linspace(*args)
    _same_dtype(t, ref)
    np.testing.assert_allclose(t.numpy(), ref.numpy(), atol=1e-6)
    assert nf.linspace(*args, dtype=nf.float64).dtype == nf.float64


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (0,)], ids=str)
def test_eye(args):
    t, ref = nf.eye(*args), torch.eye(*args)
    _same_dtype(t, ref)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())


def test_random_creation_and_seeding():
    nf.manual_seed(123)
    a = (nf.rand(3, 4), nf.randn(2, 3), nf.randint(0, 10, (5,)), nf.randint(5, (2, 2)), nf.randperm(6))
    nf.manual_seed(123)
    b = (nf.rand(3, 4), nf.randn(2, 3), nf.randint(0, 10, (5,)), nf.randint(5, (2, 2)), nf.randperm(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    r, n, i, i2, p = a
    assert r.dtype == nf.float32 and ((r.numpy() >= 0) & (r.numpy() < 1)).all()
    assert n.dtype == nf.float32 and n.shape == (2, 3)
    assert i.dtype == nf.int64 and ((i.numpy() >= 0) & (i.numpy() < 10)).all()
    assert i2.shape == (2, 2) and (i2.numpy() < 5).all()
    assert sorted(p.tolist()) == list(range(6))
    assert nf.randn(3, dtype=nf.float64).dtype == nf.float64
    assert nf.rand((2, 3)).shape == (2, 3) and nf.randn(()).shape == ()
    g = nf.Generator().manual_seed(7)
    x1 = nf.randn(4, generator=g)
    g.manual_seed(7)
    np.testing.assert_array_equal(x1.numpy(), nf.randn(4, generator=g).numpy())
    state = nf.get_rng_state()
    u = nf.rand(3)
    nf.set_rng_state(state)
    np.testing.assert_array_equal(u.numpy(), nf.rand(3).numpy())
    big = nf.randn(20000)
    assert abs(big.mean().item()) < 0.05 and abs(big.std().item() - 1) < 0.05


# -- metadata and conversions ---------------------------------------------------------------------------
def test_metadata():
    t = nf.ones(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3 and t.numel() == 24
    assert t.size() == (2, 3, 4) and t.size(0) == 2 and t.size(-1) == 4
    assert t.dtype == nf.float32 and t.device == nf.device("cpu") and t.device == "cpu"
    assert t.element_size() == 4 and len(t) == 2 and t.is_floating_point()
    assert not nf.tensor([1]).is_floating_point()
    with pytest.raises(IndexError, match=r"size.*dimension 3"):
        t.size(3)
    with pytest.raises(TypeError, match="0-d"):
        len(nf.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(nf.tensor(1.0))


def test_numpy_interop():
    t = nf.tensor([[1.0, 2.0]])
    assert isinstance(t.numpy(), np.ndarray) and t.numpy().dtype == np.float32
    np.testing.assert_array_equal(np.asarray(t), [[1.0, 2.0]])
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    r = nf.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        r.numpy()
    assert r.detach().numpy().shape == (2,)
    out = np.ones((2, 2), dtype=np.float32) + nf.ones(2)  # NumPy defers to our reflected operator
    assert isinstance(out, nf.Tensor) and out.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_item_tolist_and_python_conversions():
    assert nf.tensor(2.5).item() == 2.5 and isinstance(nf.tensor(2.5).item(), float)
    assert nf.tensor([3]).item() == 3 and isinstance(nf.tensor([3]).item(), int)
    assert nf.tensor([[1, 2]]).tolist() == [[1, 2]] and nf.tensor(1.0).tolist() == 1.0
    assert float(nf.tensor(1.5)) == 1.5 and int(nf.tensor(2.7)) == 2 and bool(nf.tensor([1]))
    assert [10, 20, 30][nf.tensor(1)] == 20
    with pytest.raises(RuntimeError, match="2 elements"):
        nf.tensor([1.0, 2.0]).item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(nf.tensor([1, 2]))
    with pytest.raises(TypeError, match="index"):
        [1, 2][nf.tensor(1.0)]


@pytest.mark.parametrize("method,dtype", [("float", "float32"), ("double", "float64"), ("half", "float16"),
                                          ("long", "int64"), ("int", "int32"), ("bool", "bool")])
def test_dtype_conversion_methods(method, dtype):
    x = np.array([-1.5, 0.0, 2.7])
    t, ref = getattr(nf.tensor(x), method)(), getattr(torch.tensor(x), method)()
    assert t.dtype.name == dtype
    _same_dtype(t, ref)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())


def test_dtype_names_and_to():
    assert nf.float32 == np.float32 and nf.float == nf.float32 and nf.double == nf.float64
    assert nf.long == nf.int64 and nf.half == nf.float16 and nf.int == nf.int32 and nf.bool == np.bool_
    assert nf.get_default_dtype() == nf.float32
    t = nf.ones(2)
    assert t.to(nf.float32) is t and t.to("cpu") is t and t.cpu() is t
    assert t.to(nf.float64).dtype == nf.float64 and t.to("float16").dtype == nf.float16
    assert t.to("cpu", nf.int64).dtype == nf.int64 and t.to(dtype=nf.int32).dtype == nf.int32
    assert t.to(nf.tensor([1])).dtype == nf.int64 and t.type_as(nf.ones(1, dtype=nf.float64)).dtype == nf.float64
    assert t.to(nf.device("cpu")) is t


def test_dtype_casts_are_differentiable():
    x = nf.randn(3, requires_grad=True)
    y = x.double()
    assert y.dtype == nf.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == nf.float32
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy(), rtol=1e-6)
    z = x.half().float()
    assert z.requires_grad
    assert not x.long().requires_grad or x.long().dtype == nf.int64


# -- in-place -----------------------------------------------------------------------------------------
def test_inplace_ops_match_torch():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t, ref = nf.tensor(x), torch.tensor(x)
    for name, args in [("add_", (2.0,)), ("mul_", (nf.tensor([1.0, 2.0, 3.0]),)), ("sub_", (1.0,)),
                       ("div_", (2.0,)), ("clamp_", (0.5, 4.0)), ("fill_", (3.0,)), ("zero_", ()),
                       ("copy_", (nf.tensor([[1.0, 2.0, 3.0]]),)), ("add_", (nf.ones(3),))]:
        targs = tuple(torch.tensor(a.numpy()) if isinstance(a, nf.Tensor) else a for a in args)
        assert getattr(t, name)(*args) is t
        getattr(ref, name)(*targs)
        np.testing.assert_array_equal(t.numpy(), ref.numpy(), err_msg=name)
    t.add_(nf.ones(3), alpha=2)
    ref.add_(torch.ones(3), alpha=2)
    np.testing.assert_array_equal(t.numpy(), ref.numpy())
    t.clamp_(max=2.0)
    assert t.max().item() == 2.0
    t.fill_(nf.tensor(4.0))
    assert t.tolist() == [[4.0] * 3] * 2


def test_inplace_bumps_version_and_keeps_identity():
    t = nf.zeros(3)
    data = t.data
    v0 = t._version[0]
    t += 1
    t *= 3
    t -= 1
    t /= 2
    assert t.tolist() == [1.0, 1.0, 1.0] and t.data is data and t._version[0] == v0 + 4
    c = nf.zeros(2, dtype=nf.int64)
    c.copy_(nf.tensor([1.7, 2.2]))
    assert c.tolist() == [1, 2] and c.dtype == nf.int64
    with pytest.raises(RuntimeError, match=r"copy_.*\(3,\).*\(2,\)"):
        c.copy_(nf.ones(3))


def test_inplace_on_parameters_under_no_grad():
    w = nf.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w.mul_(2)
    with pytest.raises(RuntimeError, match="no_grad"):
        w.zero_()
    with nf.no_grad():
        w.mul_(2).add_(1)
        w -= 0.5
    assert w.requires_grad and w.tolist() == [2.5] * 3


def test_clone_is_a_copy_in_the_graph():
    x = nf.ones(3, requires_grad=True)
    c = x.clone()
    assert c.requires_grad and c.data is not x.data
    (c * 2).sum().backward()
    assert x.grad.tolist() == [2.0] * 3


# -- repr -------------------------------------------------------------------------------------------------
def test_repr():
    assert repr(nf.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(nf.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(nf.ones(2, dtype=nf.float64)) == "tensor([1., 1.], dtype=nnforge.float64)"
    assert repr(nf.ones(2, dtype=nf.int32)) == "tensor([1, 1], dtype=nnforge.int32)"
    assert repr(nf.ones(2, requires_grad=True)) == "tensor([1., 1.], requires_grad=True)"
    r = repr(nf.ones(2, requires_grad=True) * 2)
    assert r.startswith("tensor([2., 2.], grad_fn=<Mul") and r.endswith(">)")
    assert repr(nf.tensor(2.0)).startswith("tensor(2")
    big = repr(nf.zeros(100, 100))
    assert "..." in big and len(big) < 2000
    multi = repr(nf.ones(2, 2))
    assert multi == "tensor([[1., 1.],\n        [1., 1.]])"
    assert str(nf.tensor([0.5])) == repr(nf.tensor([0.5]))
    assert "nnforge" not in repr(nf.tensor([True]))


def test_tensor_is_hashable_by_identity():
    a, b = nf.ones(2), nf.ones(2)
    assert len({a, b}) == 2 and {a: 1}[a] == 1


def test_pickling_is_refused():
    import pickle
    with pytest.raises(TypeError, match="nf.save"):
        pickle.dumps(nf.ones(2))
