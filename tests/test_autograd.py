"""The autograd engine: graph order, accumulation, retain_graph, grad modes, detach, autograd.grad, gradcheck,
anomaly detection, version counters, hooks and error messages."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.autograd import Function, GradcheckError


def _pair(shape=(3, 4), seed=0, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return nf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), atol=tol, rtol=tol)


# -- graph traversal -----------------------------------------------------------------------------------
class CountingIdentity(Function):
    """Identity whose backward counts its calls (each node must run once, after all its consumers)."""

    calls = 0
    uses_inputs = False

    def forward(self, a):
        return a.copy()

    def backward(self, g):
        CountingIdentity.calls += 1
        return g


def test_diamond_graph_runs_each_node_once_in_topological_order():
    CountingIdentity.calls = 0
    x, tx = _pair()
    f = CountingIdentity.apply(x)
    a, b = f * 2.0, f.exp()
    c = a * b + a.sin() - (b / 3.0).tanh()
    c.sum().backward()
    tf_ = tx * 1.0
    ta, tb = tf_ * 2.0, tf_.exp()
    (ta * tb + ta.sin() - (tb / 3.0).tanh()).sum().backward()
    assert CountingIdentity.calls == 1
    _close(x.grad, tx.grad, 1e-4)


def test_same_input_used_many_times_and_deep_chain():
    x, tx = _pair((5,))
    y, ty = x, tx
    for _ in range(300):  # deeper than a recursive engine would like, in one go
        y = y * 0.99 + x * 0.01
        ty = ty * 0.99 + tx * 0.01
    y.sum().backward()
    ty.sum().backward()
    _close(x.grad, tx.grad, 1e-4)


def test_gradient_accumulates_over_two_backward_calls():
    x, tx = _pair()
    for _ in range(2):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    _close(x.grad, tx.grad)
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0)


def test_leaf_grad_does_not_alias_user_gradient():
    x = nf.zeros(3, requires_grad=True)
    g = nf.ones(3)
    (x + 1).backward(g)
    g.mul_(5.0)
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_retain_graph():
    x, tx = _pair()
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    ty = (tx.exp() * tx).sum()
    ty.backward(retain_graph=True)
    ty.backward()
    _close(x.grad, tx.grad, 1e-4)


def test_second_backward_without_retain_graph_raises_clearly():
    x = nf.randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()
    z = (x + 1).sum()  # ops that save nothing must raise too
    z.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()


def test_backward_errors():
    x = nf.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\).*\(2, 3\)"):
        (x * 2).backward(nf.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        nf.ones(3).sum().backward()
    (x * 2).backward(nf.ones(2, 3))
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_backward_with_numpy_gradient_and_on_leaf():
    x = nf.randn(3, requires_grad=True)
    (x * 2).backward(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    x.grad = None
    x.backward(nf.tensor([1.0, 1.0, 1.0]))
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_backward_keeps_the_callers_gradient_apart_from_the_grads():
    """The gradient passed to backward is not copied up front; it reaches leaves unchanged through a leaf root,
    an add (whose backward hands the same array to both inputs) and a reshape view, and a later backward
    accumulates into the leaves' .grad, never into the caller's array. Accumulation into a leaf whose .grad was
    set to that very array makes a new array too."""
    g = np.arange(6, dtype=np.float32).reshape(2, 3).copy()  # an array of its own (a view would be copied anyway)
    expected = g.copy()
    x, y = nf.randn(2, 3, requires_grad=True), nf.randn(2, 3, requires_grad=True)
    v = nf.randn(6, requires_grad=True)
    for _ in range(2):
        x.backward(g)
        (x + y).backward(g)
        v.reshape(2, 3).backward(g)
    np.testing.assert_array_equal(g, expected)
    for t, scale in ((x, 4), (y, 2), (v, 2)):
        np.testing.assert_array_equal(t.grad.numpy().reshape(2, 3), scale * expected)
        assert not np.shares_memory(t.grad.numpy(), g)
    w = nf.randn(2, 3, requires_grad=True)
    w.grad = nf.from_numpy(g)
    (w * 1).backward(g)
    np.testing.assert_array_equal(g, expected)
    np.testing.assert_array_equal(w.grad.numpy(), 2 * expected)


def test_leaf_and_nonleaf_attributes():
    x = nf.randn(3, requires_grad=True)
    y = x * 2
    assert x.is_leaf and x.grad_fn is None and not y.is_leaf and y.grad_fn is not None
    assert "Mul" in repr(y.grad_fn)
    y.sum().backward()
    assert y.grad is None  # non-leaf grads are not kept unless retain_grad()
    c = nf.ones(3)
    assert c.is_leaf and not (c * 2).requires_grad and (c * 2).grad_fn is None
    assert (c * x).requires_grad


def test_unused_inputs_get_no_grad():
    x = nf.randn(3, requires_grad=True)
    w = nf.randn(3, requires_grad=True)
    (x * 2).sum().backward()
    assert w.grad is None and x.grad is not None


# -- grad mode -----------------------------------------------------------------------------------------
def test_no_grad_and_enable_grad():
    x = nf.randn(3, requires_grad=True)
    assert nf.is_grad_enabled()
    with nf.no_grad():
        assert not nf.is_grad_enabled()
        y = x * 2
        with nf.enable_grad():
            assert nf.is_grad_enabled()
            z = x * 2
        assert not nf.is_grad_enabled()
    assert nf.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    with nf.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert nf.is_grad_enabled()


def test_grad_modes_as_decorators_and_restore_on_error():
    @nf.no_grad()
    def infer(t):
        return t * 2

    @nf.enable_grad()
    def train(t):
        return t * 2

    x = nf.randn(3, requires_grad=True)
    assert not infer(x).requires_grad
    with nf.no_grad():
        assert train(x).requires_grad
    assert infer.__name__ == "infer"
    with pytest.raises(ValueError):
        with nf.no_grad():
            raise ValueError
    assert nf.is_grad_enabled()


def test_detach():
    x = nf.randn(3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert d.data is y.data or np.shares_memory(d.data, y.data)
    (y * d).sum().backward()  # d is a constant
    np.testing.assert_allclose(x.grad.numpy(), 2 * d.numpy(), rtol=1e-6)
    e = y.detach_()
    assert e is y and y.grad_fn is None and not y.requires_grad


def test_requires_grad_():
    x = nf.ones(3)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    with pytest.raises(RuntimeError, match="floating point.*int64"):
        nf.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="floating point"):
        nf.tensor([1, 2], requires_grad=True)
    y = nf.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad_(False)


# -- autograd.grad -------------------------------------------------------------------------------------
def test_autograd_grad_does_not_touch_dot_grad():
    x, tx = _pair()
    w, tw = _pair((4,), seed=1)
    y = (x * w).sin().sum()
    gx, gw = nf.autograd.grad(y, [x, w])
    tgx, tgw = torch.autograd.grad((tx * tw).sin().sum(), [tx, tw])
    assert x.grad is None and w.grad is None
    _close(gx, tgx)
    _close(gw, tgw)
    assert gx.shape == x.shape and not gx.requires_grad


def test_autograd_grad_options():
    x = nf.randn(3, requires_grad=True)
    u = nf.randn(3, requires_grad=True)
    y = x * 3
    (g,) = nf.autograd.grad(y, x, grad_outputs=nf.tensor([1.0, 2.0, 3.0]), retain_graph=True)
    assert g.tolist() == [3.0, 6.0, 9.0]
    (g,) = nf.autograd.grad([y], [x], grad_outputs=[nf.ones(3)])
    assert g.tolist() == [3.0, 3.0, 3.0]
    z = (x * 2).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        nf.autograd.grad(z, [x, u], retain_graph=True)
    gx, gu = nf.autograd.grad(z, [x, u], allow_unused=True)
    assert gu is None and gx.tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(RuntimeError, match="scalar"):
        nf.autograd.grad(x * 2, x)
    with pytest.raises(NotImplementedError, match="create_graph"):
        nf.autograd.grad((x * 2).sum(), x, create_graph=True)


def test_autograd_grad_wrt_intermediate():
    x, tx = _pair((3,))
    h = x.exp()
    y = (h * h).sum()
    th = tx.exp()
    (gh,) = nf.autograd.grad(y, h)
    (tgh,) = torch.autograd.grad((th * th).sum(), th)
    _close(gh, tgh)


# -- gradcheck -----------------------------------------------------------------------------------------
class BrokenSquare(Function):
    def forward(self, a):
        self.saved = a
        return a * a

    def backward(self, g):
        return g * self.saved  # wrong: misses the factor 2


class GoodSquare(BrokenSquare):
    def backward(self, g):
        return 2 * g * self.saved


def test_gradcheck_catches_wrong_backward():
    x = nf.randn(4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(GoodSquare.apply, [x])
    with pytest.raises(GradcheckError, match=r"mismatch.*input 0"):
        nf.autograd.gradcheck(BrokenSquare.apply, [x])
    assert nf.autograd.gradcheck(BrokenSquare.apply, [x], raise_exception=False) is False


def test_gradcheck_requires_float64():
    with pytest.raises(GradcheckError, match="float64"):
        nf.autograd.gradcheck(nf.exp, [nf.randn(3, requires_grad=True)])


class ScaleBy(Function):
    """A Function with a non-tensor positional argument and a keyword parameter."""

    def forward(self, a, b, factor, *, offset=0.0):
        self.saved = (a, b)
        self.factor = factor
        return a * b * factor + offset

    def backward(self, g):
        a, b = self.saved
        need_a, need_b, _ = self.needs_input_grad
        return (g * b * self.factor if need_a else None, g * a * self.factor if need_b else None, None)


def test_custom_function_with_extra_args():
    a = nf.randn(3, dtype=nf.float64, requires_grad=True)
    b = nf.randn(3, dtype=nf.float64)
    out = ScaleBy.apply(a, b, 2.0, offset=1.0)
    assert out.grad_fn.needs_input_grad == (True, False, False)
    out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * b.numpy())
    b.requires_grad_()
    assert nf.autograd.gradcheck(lambda x, y: ScaleBy.apply(x, y, 3.0), [a, b])


# -- anomaly detection ---------------------------------------------------------------------------------
def test_detect_anomaly_names_op_in_forward():
    x = nf.tensor([1.0, -1.0], requires_grad=True)
    with nf.autograd.detect_anomaly():
        assert nf.autograd.is_anomaly_enabled()
        with pytest.raises(FloatingPointError, match=r"'Log'.*nan.*forward"), np.errstate(invalid="ignore"):
            nf.log(x)
    assert not nf.autograd.is_anomaly_enabled()
    with np.errstate(invalid="ignore"):
        assert np.isnan(nf.log(x).detach().numpy()[1])  # off: no check


def test_detect_anomaly_names_op_in_backward():
    x = nf.tensor([0.0, 4.0], requires_grad=True)
    with nf.autograd.detect_anomaly():
        y = nf.sqrt(x).sum()
        with pytest.raises(FloatingPointError, match=r"'Sqrt'.*inf.*backward"), np.errstate(divide="ignore"):
            y.backward()


# -- version counters ----------------------------------------------------------------------------------
def test_modifying_saved_input_raises_at_backward():
    x = nf.randn(3, requires_grad=True)
    w = nf.randn(3, requires_grad=True)
    y = (x * w).sum()
    with nf.no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation.*Mul.*version 0.*version 1"):
        y.backward()


def test_modifying_input_not_needed_by_backward_is_fine():
    x = nf.randn(3, requires_grad=True)
    w = nf.randn(3, requires_grad=True)
    y = (x + w).sum()
    with nf.no_grad():
        w.mul_(2.0)
        x.zero_()
    y.backward()
    assert x.grad.tolist() == [1.0] * 3 and w.grad.tolist() == [1.0] * 3


def test_modifying_saved_output_raises():
    x = nf.randn(3, requires_grad=True)
    e = x.exp()
    y = e.sum()
    with nf.no_grad():
        e.mul_(2.0)
    with pytest.raises(RuntimeError, match="Exp"):
        y.backward()


def test_modifying_through_detached_alias_or_view_raises():
    x = nf.randn(3, requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    h.detach().add_(1.0)  # shares data and version counter with h
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()
    base = nf.randn(2, 3)
    w = nf.randn(3, requires_grad=True)
    z = (w * base[0]).sum()
    base[1, 0] = 5.0  # writes into the base of the saved view
    with pytest.raises(RuntimeError, match="in-place"):
        z.backward()


def test_inplace_on_graph_tensors_is_refused():
    x = nf.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf.*no_grad"):
        x.add_(1.0)
    y = x * 2
    with pytest.raises(RuntimeError, match="in-place"):
        y.mul_(2.0)
    y += 1  # augmented assignment on graph tensors rebinds instead
    assert y.grad_fn is not None and "Add" in repr(y.grad_fn)


# -- hooks ---------------------------------------------------------------------------------------------
def test_hooks_on_leaf_and_nonleaf():
    x, tx = _pair((3,))
    seen = []
    h = x.register_hook(lambda g: g * 2)
    y = x * 3
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6.0)
    np.testing.assert_allclose(seen[0], 1.0)
    h.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0)
    with pytest.raises(RuntimeError, match="register_hook"):
        nf.ones(2).register_hook(lambda g: g)


def test_nonleaf_hook_replaces_gradient():
    x = nf.ones(3, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 10 * 2 * 2.0)


def test_retain_grad():
    x, tx = _pair()
    h = x.tanh()
    h.retain_grad()
    (h * h).sum().backward()
    th = tx.tanh()
    th.retain_grad()
    (th * th).sum().backward()
    _close(h.grad, th.grad)
    _close(x.grad, tx.grad)
    x.retain_grad()  # no-op on leaves


def test_hooks_on_0d():
    x = nf.tensor(2.0, requires_grad=True)
    got = []
    y = x * 3
    y.register_hook(lambda g: got.append(g))
    x.register_hook(lambda g: g + 1)
    y.backward()
    assert isinstance(got[0], nf.Tensor) and got[0].shape == () and x.grad.item() == 4.0


@pytest.mark.parametrize("order", range(6))
def test_leaf_accumulation_never_changes_a_gradient_still_pending_elsewhere(order):
    # Add's backward hands one array to both inputs; x's .grad must not alias the array that y's node (which
    # also waits for c's gradient) still has to use, whatever order the nodes run in
    import itertools
    x = nf.tensor([1.0, 2.0], requires_grad=True)
    w = nf.tensor([3.0, 4.0], requires_grad=True)
    y = w * 1.0
    terms = [x + y, x * 2.0, y * 3.0]
    a, b, c = list(itertools.permutations(terms))[order]
    (((a + b) + c) * 2.0).sum().backward()  # * 2.0: the gradient flowing down is a fresh array
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    np.testing.assert_allclose(w.grad.numpy(), [8.0, 8.0])
    (x * 1.0).sum().backward()  # a later pass accumulates (in place) without touching the other leaf
    np.testing.assert_allclose(x.grad.numpy(), [7.0, 7.0])
    np.testing.assert_allclose(w.grad.numpy(), [8.0, 8.0])
