"""Temporary elision (nnforge/ops/elision.py): ``(x * x) * x`` may write into the temporary ``x * x``, and
nothing that anyone can still see is ever overwritten."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.ops import arithmetic, elision

N = 1 << 18  # above the size threshold


@pytest.fixture
def elided(monkeypatch):
    """Counts the results written into a temporary."""
    calls = []
    original = arithmetic._into

    def counting(*args):
        calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(arithmetic, "_into", counting)
    return calls


def _x(seed: int = 0) -> nf.Tensor:
    return nf.from_numpy(np.random.default_rng(seed).standard_normal(N).astype(np.float32))


def test_calibration_found_temporaries_distinguishable_on_this_interpreter():
    assert set(elision._TEMP_COUNT) == {"add", "sub", "mul"}


def test_chains_reuse_the_temporary_and_give_torchs_result(elided):
    x, y = _x(0), _x(1)
    tx, ty = torch.from_numpy(x.numpy().copy()), torch.from_numpy(y.numpy().copy())
    for ours, theirs in ((lambda: x * x * x, lambda: tx * tx * tx), (lambda: x * y + x - 2.0, lambda: tx * ty + tx - 2.0),
                         (lambda: (x + y) * (x - y), lambda: (tx + ty) * (tx - ty))):
        before = len(elided)
        np.testing.assert_allclose(ours().numpy(), theirs().numpy(), rtol=1e-6, atol=1e-6)
        assert len(elided) > before


def test_named_and_shared_operands_are_never_overwritten(elided):
    x = _x(2)
    original = x.numpy().copy()
    t = x * 2.0
    t_before = t.numpy().copy()
    results = [t * 3.0, t + 1.0, t - 1.0, nf.mul(t, 3.0), nf.Tensor.__mul__(t, 3.0), nf.add(x * 2.0, 1.0)]
    holder = [x * 2.0]
    results.append(holder[0] * 3.0)
    results.append(x.detach() * 5.0)  # the detached twin shares x's array
    user = np.ones(N, np.float32)
    results.append(nf.from_numpy(user) * 3.0)  # the caller still holds the array
    view_holder = []

    def keeps_a_view():
        y = x * 2.0
        view_holder.append(y.numpy()[:5])
        return y

    results.append(keeps_a_view() * 3.0)
    np.testing.assert_array_equal(x.numpy(), original)
    np.testing.assert_array_equal(t.numpy(), t_before)
    np.testing.assert_array_equal(holder[0].numpy(), original * 2.0)
    assert user[0] == 1.0 and np.all(view_holder[0] == original[:5] * 2.0)
    assert not elided  # none of these was a bare temporary reached through an operator


def test_no_elision_when_a_graph_is_recorded_or_for_small_ints_broadcast_or_anomaly(elided):
    w = nf.from_numpy(np.random.default_rng(3).standard_normal(N).astype(np.float32)).requires_grad_()
    out = (w * 2.0) * 3.0
    out.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 6.0)
    small = nf.ones(100)
    ints = nf.ones(N, dtype=nf.int64)
    row = nf.ones(1, 512)
    _ = (small * 2.0) * 3.0, (ints * 2) * 3, (row * 2.0) * nf.ones(512, 512)
    with nf.autograd.detect_anomaly():
        _ = (_x() * 2.0) * 3.0
    assert not elided
    with nf.no_grad():
        _ = (w * 2.0) * 3.0  # grad mode off: w's temporary product may be reused
    assert len(elided) == 1
