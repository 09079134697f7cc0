"""RNN, LSTM, GRU and their cells against torch modules holding the same weights: outputs, final states, and
the gradients of every parameter, the input and the initial states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.ops.rnn import GRULayer, LSTMLayer, RNNLayer

ATOL, GTOL = 2e-5, 5e-4
KINDS = {"RNN": (nf.nn.RNN, torch.nn.RNN), "LSTM": (nf.nn.LSTM, torch.nn.LSTM), "GRU": (nf.nn.GRU, torch.nn.GRU)}
CELLS = {"RNNCell": (nf.nn.RNNCell, torch.nn.RNNCell), "LSTMCell": (nf.nn.LSTMCell, torch.nn.LSTMCell),
         "GRUCell": (nf.nn.GRUCell, torch.nn.GRUCell)}


def _pair(nf_cls, torch_cls, *args, **kwargs):
    torch.manual_seed(0)
    tm = torch_cls(*args, **kwargs)
    m = nf_cls(*args, **kwargs)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return m, tm


def _leaf(arr):
    return nf.tensor(arr, requires_grad=True), torch.tensor(arr, requires_grad=True)


def _close(a, b, tol, what):
    np.testing.assert_allclose(np.asarray(a.detach().numpy() if hasattr(a, "detach") else a),
                               b.detach().numpy(), atol=tol, rtol=tol, err_msg=what)


def _flat(out):
    """Tensors of a (output, h_n) or (output, (h_n, c_n)) result, in order."""
    o, s = out
    return [o, *s] if isinstance(s, tuple) else [o, s]


def _check_grads(m, tm, leaves, outs, touts):
    rng = np.random.default_rng(1)
    for o, to in zip(outs, touts):
        assert tuple(o.shape) == tuple(to.shape)
        _close(o, to, ATOL, "forward")
    ws = [rng.standard_normal(tuple(to.shape)).astype(np.float32) for to in touts]
    loss = sum((o * nf.tensor(w)).sum() for o, w in zip(outs, ws))
    tloss = sum((to * torch.tensor(w)).sum() for to, w in zip(touts, ws))
    loss.backward()
    tloss.backward()
    tparams = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        _close(p.grad, tparams[name].grad, GTOL, f"grad of {name}")
    for k, (a, ta) in enumerate(leaves):
        _close(a.grad, ta.grad, GTOL, f"grad of input {k}")


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_torch(kind, num_layers, bidirectional, batch_first, with_state):
    L, N, I, H = 5, 3, 4, 6
    m, tm = _pair(*KINDS[kind], I, H, num_layers=num_layers, bidirectional=bidirectional,
                  batch_first=batch_first)
    rng = np.random.default_rng(0)
    x, tx = _leaf(rng.standard_normal((N, L, I) if batch_first else (L, N, I)).astype(np.float32))
    leaves = [(x, tx)]
    args, targs = [x], [tx]
    if with_state:
        D = 2 if bidirectional else 1
        states = [_leaf(rng.standard_normal((D * num_layers, N, H)).astype(np.float32))
                  for _ in range(2 if kind == "LSTM" else 1)]
        leaves += states
        args.append(tuple(s for s, _ in states) if kind == "LSTM" else states[0][0])
        targs.append(tuple(s for _, s in states) if kind == "LSTM" else states[0][1])
    _check_grads(m, tm, leaves, _flat(m(*args)), _flat(tm(*targs)))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_relu_no_bias(kind):
    kwargs = {"nonlinearity": "relu"} if kind == "RNN" else {}
    m, tm = _pair(*KINDS[kind], 4, 5, num_layers=2, bias=False, bidirectional=True, **kwargs)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    rng = np.random.default_rng(2)
    x, tx = _leaf(rng.standard_normal((6, 4)).astype(np.float32))
    h, th = _leaf(rng.standard_normal((4, 5)).astype(np.float32))
    leaves = [(x, tx), (h, th)]
    if kind == "LSTM":
        c, tc = _leaf(rng.standard_normal((4, 5)).astype(np.float32))
        leaves.append((c, tc))
        out, tout = m(x, (h, c)), tm(tx, (th, tc))
    else:
        out, tout = m(x, h), tm(tx, th)
    _check_grads(m, tm, leaves, _flat(out), _flat(tout))


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_cells_match_torch(kind, batched, with_state):
    m, tm = _pair(*CELLS[kind], 4, 7)
    rng = np.random.default_rng(3)
    lead = (3,) if batched else ()
    x, tx = _leaf(rng.standard_normal(lead + (4,)).astype(np.float32))
    leaves = [(x, tx)]
    if with_state:
        states = [_leaf(rng.standard_normal(lead + (7,)).astype(np.float32))
                  for _ in range(2 if kind == "LSTMCell" else 1)]
        leaves += states
        hx = tuple(s for s, _ in states) if kind == "LSTMCell" else states[0][0]
        thx = tuple(s for _, s in states) if kind == "LSTMCell" else states[0][1]
        out, tout = m(x, hx), tm(tx, thx)
    else:
        out, tout = m(x), tm(tx)
    outs = list(out) if kind == "LSTMCell" else [out]
    touts = list(tout) if kind == "LSTMCell" else [tout]
    _check_grads(m, tm, leaves, outs, touts)


def test_cell_relu_and_repeated_steps():
    m, tm = _pair(nf.nn.RNNCell, torch.nn.RNNCell, 3, 4, nonlinearity="relu")
    rng = np.random.default_rng(4)
    x, tx = _leaf(rng.standard_normal((5, 2, 3)).astype(np.float32))
    h, th = None, None
    for t in range(5):
        h, th = m(x[t], h), tm(tx[t], th)
    _check_grads(m, tm, [(x, tx)], [h], [th])


def test_parameter_names_shapes_and_init():
    nf.manual_seed(0)
    m = nf.nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    tm = torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert list(shapes) == list(tm.state_dict())
    assert shapes == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    bound = 1 / np.sqrt(20)
    allw = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert allw.dtype == np.float32 and np.abs(allw).max() <= bound and np.abs(allw).max() > 0.9 * bound
    nf.manual_seed(0)
    again = nf.nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    assert all(np.array_equal(a.detach().numpy(), b.detach().numpy())
               for a, b in zip(m.parameters(), again.parameters()))


def test_dropout_between_layers():
    nf.manual_seed(0)
    m = nf.nn.GRU(4, 8, num_layers=2, dropout=0.5)
    x = nf.randn(6, 3, 4)
    a, _ = m(x)
    b, _ = m(x)
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())
    m.eval()
    c, _ = m(x)
    d, _ = m(x)
    np.testing.assert_array_equal(c.detach().numpy(), d.detach().numpy())
    single = nf.nn.LSTM(4, 8, num_layers=1, dropout=0.5)  # no dropout after the last layer
    e, _ = single(x)
    f, _ = single(x)
    np.testing.assert_array_equal(e.detach().numpy(), f.detach().numpy())


def test_eval_no_grad_and_float64():
    nf.manual_seed(0)
    m = nf.nn.GRU(3, 4, dtype=nf.float64)
    assert m.weight_ih_l0.dtype == nf.float64
    with nf.no_grad():
        out, h = m(nf.randn(5, 2, 3, dtype=nf.float64))
    assert out.dtype == nf.float64 and not out.requires_grad and tuple(h.shape) == (1, 2, 4)


@pytest.mark.parametrize("fn,gates,extra", [(RNNLayer, 1, {}), (RNNLayer, 1, {"relu": True}), (LSTMLayer, 4, {}),
                                            (GRULayer, 3, {})])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_layer_functions(fn, gates, extra, reverse):
    rng = np.random.default_rng(5)
    T, B, I, H = 3, 2, 3, 2

    def t(*shape):
        return nf.tensor(rng.uniform(-1, 1, shape), dtype=nf.float64, requires_grad=True)

    ins = [t(T, B, I), t(gates * H, I), t(gates * H, H), t(gates * H), t(gates * H), t(B, H)]
    if fn is LSTMLayer:
        ins.append(t(B, H))
    assert nf.autograd.gradcheck(lambda *a: fn.apply(*a, reverse=reverse, **extra), ins)


def test_errors_name_layer_and_shapes():
    m = nf.nn.LSTM(4, 5, num_layers=2)
    with pytest.raises(RuntimeError, match=r"LSTM: input.size\(-1\) must be equal to input_size. Expected 4, got 3"):
        m(nf.randn(2, 3, 3))
    with pytest.raises(ValueError, match=r"LSTM: expected input to be 2-D .* got 4-D"):
        m(nf.randn(1, 2, 3, 4))
    with pytest.raises(RuntimeError, match=r"LSTM: expected h_0 of shape \(2, 3, 5\), got \(1, 3, 5\)"):
        m(nf.randn(2, 3, 4), (nf.zeros(1, 3, 5), nf.zeros(2, 3, 5)))
    with pytest.raises(RuntimeError, match=r"LSTM: expected hx to be a tuple"):
        m(nf.randn(2, 3, 4), nf.zeros(2, 3, 5))
    with pytest.raises(RuntimeError, match=r"GRU: expected hx of shape \(2, 3, 5\), got \(2, 5\)"):
        nf.nn.GRU(4, 5, bidirectional=True)(nf.randn(2, 3, 4), nf.zeros(2, 5))
    with pytest.raises(RuntimeError, match=r"GRUCell: input has inconsistent input_size: got 2 expected 4"):
        nf.nn.GRUCell(4, 5)(nf.randn(3, 2))
    with pytest.raises(RuntimeError, match=r"LSTMCell: expected hidden state of shape \(3, 5\), got \(2, 5\)"):
        nf.nn.LSTMCell(4, 5)(nf.randn(3, 4), (nf.zeros(2, 5), nf.zeros(3, 5)))
    with pytest.raises(RuntimeError, match=r"LSTMLayer: input and weights must have the same dtype"):
        nf.nn.LSTM(4, 5)(nf.randn(2, 3, 4, dtype=nf.float64))
    with pytest.raises(ValueError, match="RNN: unknown nonlinearity"):
        nf.nn.RNN(4, 5, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number"):
        nf.nn.LSTM(4, 5, dropout=1.5)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nf.nn.LSTM(4, 5, proj_size=2)


def test_backward_after_inplace_on_output_raises():
    m = nf.nn.RNN(3, 4)
    out, h = m(nf.randn(2, 1, 3))
    loss = h.sum()
    with nf.no_grad():
        out.mul_(2.0)  # a view of the layer's output, which its backward reads
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()
