"""LSTM on both of its paths (compiled step kernels and pure NumPy) against torch: outputs, h_n, c_n and the
gradients of the input, the initial states and every parameter; batches large enough for the compiled
path to split the batch across threads, with that split forced on and off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.ops.rnn as rnn_ops
from nnforge.backend import cpu_backend
from nnforge.ops.rnn import LSTMLayer

ATOL, GTOL = 2e-5, 5e-4


@pytest.fixture(params=["fast", "fast-split", "numpy"])
def path(request, monkeypatch):
    """Each test once with the compiled kernels run on one thread, once with the batch split across three
    shares, and once on the pure NumPy path."""
    if request.param != "numpy":
        pytest.importorskip("numba")
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", request.param != "numpy")
    if request.param == "fast-split":
        from nnforge.backend.fast_kernels import FastKernels
        monkeypatch.setattr(cpu_backend, "num_threads", 3)
        monkeypatch.setattr(FastKernels, "blas_thread_limit", lambda self: 3)
        monkeypatch.setattr(rnn_ops, "_MIN_SHARE_ROWS", 2)
    else:
        monkeypatch.setattr(rnn_ops, "_MIN_SHARE_ROWS", 10 ** 9)
    return request.param


class _Spy:
    """Counts calls of LSTMLayer's compiled forward and of the backend's ``parallel_for``, to show which path
    ran and whether the batch was split."""

    def __init__(self, monkeypatch):
        self.calls = self.splits = 0
        real, real_pf = LSTMLayer._forward_fast, cpu_backend.parallel_for

        def spy(fn_self, *args, **kwargs):
            self.calls += 1
            return real(fn_self, *args, **kwargs)

        def pf(*args, **kwargs):
            self.splits += 1
            return real_pf(*args, **kwargs)

        monkeypatch.setattr(LSTMLayer, "_forward_fast", spy)
        monkeypatch.setattr(cpu_backend, "parallel_for", pf)


def _close(a, b, tol, what):
    np.testing.assert_allclose(a.detach().numpy() if hasattr(a, "detach") else a, b.detach().numpy(), atol=tol,
                               rtol=tol, err_msg=what)


def _run(path, monkeypatch, *, L, N, I, H, num_layers=1, bidirectional=False, batch_first=False,
         with_state=False, bias=True, scale=1.0, seed=0):
    spy = _Spy(monkeypatch)
    torch.manual_seed(seed)
    tm = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                       bias=bias)
    m = nf.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(seed)
    xa = (rng.standard_normal((N, L, I) if batch_first else (L, N, I)) * scale).astype(np.float32)
    leaves = [(nf.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True))]
    args, targs = [leaves[0][0]], [leaves[0][1]]
    if with_state:
        D = 2 if bidirectional else 1
        for _ in range(2):
            s = rng.standard_normal((D * num_layers, N, H)).astype(np.float32)
            leaves.append((nf.tensor(s, requires_grad=True), torch.tensor(s, requires_grad=True)))
        args.append((leaves[1][0], leaves[2][0]))
        targs.append((leaves[1][1], leaves[2][1]))
    out, (h, c) = m(*args)
    tout, (th, tc) = tm(*targs)
    layers = num_layers * (2 if bidirectional else 1)
    assert spy.calls == (0 if path == "numpy" else layers)
    assert spy.splits == (layers if path == "fast-split" else 0)  # forward; backward's come below
    for what, a, b in (("output", out, tout), ("h_n", h, th), ("c_n", c, tc)):
        assert tuple(a.shape) == tuple(b.shape), what
        _close(a, b, ATOL, what)
    ws = [rng.standard_normal(tuple(t.shape)).astype(np.float32) for t in (tout, th, tc)]
    (sum((a * nf.tensor(w)).sum() for a, w in zip((out, h, c), ws))).backward()
    (sum((a * torch.tensor(w)).sum() for a, w in zip((tout, th, tc), ws))).backward()
    assert spy.splits == (2 * layers if path == "fast-split" else 0)
    tparams = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        _close(p.grad, tparams[name].grad, GTOL, f"grad of {name}")
    for k, (a, ta) in enumerate(leaves):
        _close(a.grad, ta.grad, GTOL, f"grad of input {k}")


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_both_paths_match_torch(path, monkeypatch, num_layers, bidirectional, batch_first, with_state):
    _run(path, monkeypatch, L=7, N=11, I=5, H=16, num_layers=num_layers, bidirectional=bidirectional,
         batch_first=batch_first, with_state=with_state)


def test_lstm_no_bias_odd_sizes(path, monkeypatch):
    _run(path, monkeypatch, L=4, N=9, I=3, H=7, bias=False, with_state=True, bidirectional=True, seed=3)


def test_lstm_saturated_gates(path, monkeypatch):
    """Large pre-activations: sigmoid and tanh saturate to exactly 0 / +-1 without overflow or NaN."""
    _run(path, monkeypatch, L=6, N=8, I=4, H=8, scale=200.0, seed=4)


def test_lstm_classifier_sizes_one_step(path, monkeypatch):
    """The benchmark's layer shape (H=256), briefly: a batch of 20, 3 steps, gradients included."""
    _run(path, monkeypatch, L=3, N=20, I=32, H=256, batch_first=True, seed=5)


def test_lstm_batch_split_follows_blas_thread_limit(monkeypatch):
    """Under a BLAS limit of one thread (``benchmarks --threads 1``) the time loop stays on one thread."""
    pytest.importorskip("numba")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", True)
    monkeypatch.setattr(cpu_backend, "num_threads", 2)
    spy = _Spy(monkeypatch)
    m = nf.nn.LSTM(4, 8)
    x = nf.randn(3, 32, 4)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        m(x)
    assert spy.calls == 1 and spy.splits == 0
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        two = cpu_backend.kernels_for(x.data).blas_thread_limit() == 2  # not on a one-core machine
        m(x)
    assert spy.calls == 2 and spy.splits == (1 if two else 0)


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_embedding_grad_both_paths_match_torch(path, padding_idx):
    """The embedding in front of the recurrent layer: repeated indices sum their rows (compiled kernel and
    sort + reduceat give the same additions in the same order)."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 12, size=(9, 13))
    torch.manual_seed(0)
    t = torch.nn.Embedding(12, 6, padding_idx=padding_idx)
    m = nf.nn.Embedding(12, 6, padding_idx=padding_idx)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    w = rng.standard_normal((9, 13, 6)).astype(np.float32)
    (m(nf.tensor(ids)).transpose(0, 1) * nf.tensor(w.transpose(1, 0, 2))).sum().backward()
    (t(torch.tensor(ids)).transpose(0, 1) * torch.tensor(w.transpose(1, 0, 2))).sum().backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), t.weight.grad.numpy(), atol=1e-5, rtol=1e-5)
