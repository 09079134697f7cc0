"""The compiled float32 kernels (numba) against PyTorch and against nnforge's own NumPy path: both paths of
every op that has a fast kernel must give torch's result, including NaN/inf inputs and masked rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F
from nnforge.backend import cpu_backend

pytest.importorskip("numba", reason="the compiled kernels need numba (pip install -e '.[fast]')")


@pytest.fixture(params=["fast", "numpy"])
def path(request, monkeypatch):
    """Run the test once with the compiled kernels and once with the pure NumPy path."""
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", request.param == "fast")
    return request.param


def _special(n: int, rng: np.random.Generator, scale: float = 3.0) -> np.ndarray:
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[:10] = [np.nan, np.inf, -np.inf, 1e4, -1e4, 0.0, -0.0, 3.95, -3.95, 1e-30]
    return x


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float = 1e-5) -> None:
    np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), atol=atol, rtol=rtol, equal_nan=True)


def _assert_grads_match(ours: list, theirs: list, atol: float, rtol: float = 1e-4) -> None:
    """Each tensor's gradient equals torch's; where torch's tensor needs none, ours has none either."""
    for a, ta in zip(ours, theirs):
        if ta.requires_grad:
            _close(a.grad.numpy(), ta.grad.numpy(), atol=atol, rtol=rtol)
        else:
            assert a.grad is None


def test_kernels_offered_only_for_float32_contiguous(monkeypatch):
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", True)
    x32 = np.ones((4, 5), np.float32)
    assert cpu_backend.kernels_for(x32) is not None
    assert cpu_backend.kernels_for(x32.astype(np.float64)) is None
    assert cpu_backend.kernels_for(x32.T) is None
    assert cpu_backend.kernels_for(x32, None) is not None
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", False)
    assert cpu_backend.kernels_for(x32) is None


def test_exp_kernel_matches_numpy_including_edges():
    kernels = cpu_backend.kernels_for(np.ones(1, np.float32))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * 30).astype(np.float32)
    edges = np.array([np.nan, np.inf, -np.inf, 88.7, 88.8, 100.0, -87.3, -87.4, -104.0, 0.0], np.float32)
    x = np.concatenate([edges, x])
    with np.errstate(over="ignore"):
        ref = np.exp(x.astype(np.float64))
    got = kernels.exp(x)
    finite = (ref < np.finfo(np.float32).max) & (ref > 1.2e-38)  # float32 normal range; below it we flush to 0
    np.testing.assert_allclose(got[finite], ref[finite], rtol=3e-7)
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == 0 and got[5] == np.inf and got[8] == 0
    assert np.all(got[ref >= np.finfo(np.float32).max] == np.inf)


def test_erf_matches_torch(path):
    rng = np.random.default_rng(1)
    x = _special(200_000, rng)
    got = nf.from_numpy(x).erf().numpy()
    ref = torch.erf(torch.from_numpy(x).double()).numpy()
    _close(got, ref, atol=4e-7, rtol=0)
    assert got[3] == 1.0 and got[4] == -1.0  # saturates exactly, as float32 erf does


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_forward_backward_match_torch(path, approximate):
    rng = np.random.default_rng(2)
    x = _special(100_000, rng)
    g = rng.standard_normal(x.size).astype(np.float32)
    a = nf.from_numpy(x.copy()).requires_grad_()
    out = F.gelu(a, approximate=approximate)
    out.backward(nf.from_numpy(g))
    ta = torch.from_numpy(x).double().requires_grad_()
    tout = torch.nn.functional.gelu(ta, approximate=approximate)
    tout.backward(torch.from_numpy(g).double())
    ok = np.isfinite(x)  # torch itself gives NaN at -inf (-inf * 0) and differs in the sign of 0 there
    _close(out.detach().numpy()[ok], tout.detach().numpy()[ok], atol=2e-6)
    _close(a.grad.numpy()[ok], ta.grad.numpy()[ok], atol=5e-6)
    assert np.isnan(out.detach().numpy()[0])


def test_softmax_matches_torch_with_inf_rows(path):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 300)) * 10).astype(np.float32)
    x[1] = -np.inf  # torch gives NaN for an all -inf row
    x[2, :5] = -np.inf
    x[3, 7] = np.nan
    negative_nan = np.array([0xFFC00000], np.uint32).view(np.float32)[0]  # x86's NaN from inf - inf
    x[4, 9] = negative_nan
    x[5] = -np.inf
    x[5, 100] = negative_nan
    x[6, 0] = np.inf
    x[7, :2] = [-0.0, 0.0]
    x[7, 2:] = -1e30
    g = rng.standard_normal(x.shape).astype(np.float32)
    a = nf.from_numpy(x.copy()).requires_grad_()
    out = nf.softmax(a, dim=-1)
    out.backward(nf.from_numpy(g))
    ta = torch.from_numpy(x).requires_grad_()
    tout = torch.softmax(ta, -1)
    tout.backward(torch.from_numpy(g))
    _close(out.detach().numpy(), tout.detach().numpy(), atol=1e-7, rtol=1e-5)
    _close(a.grad.numpy(), ta.grad.numpy(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(path, affine):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 50, 96)) * 4 + 100).astype(np.float32)  # large mean: needs a centred variance
    g = rng.standard_normal(x.shape).astype(np.float32)
    ln, tln = nf.nn.LayerNorm(96, elementwise_affine=affine), torch.nn.LayerNorm(96, elementwise_affine=affine)
    if affine:
        w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
        with nf.no_grad():
            ln.weight.copy_(nf.from_numpy(w))
            ln.bias.copy_(nf.from_numpy(b))
        with torch.no_grad():
            tln.weight.copy_(torch.from_numpy(w))
            tln.bias.copy_(torch.from_numpy(b))
    a = nf.from_numpy(x.copy()).requires_grad_()
    ta = torch.from_numpy(x).requires_grad_()
    out, tout = ln(a), tln(ta)
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g))
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-5)
    _close(a.grad.numpy(), ta.grad.numpy(), atol=5e-5)
    if affine:
        _close(ln.weight.grad.numpy(), tln.weight.grad.numpy(), atol=5e-4, rtol=1e-4)
        _close(ln.bias.grad.numpy(), tln.bias.grad.numpy(), atol=5e-4, rtol=1e-4)


def test_attention_masked_rows_and_grads(path):
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 3, 7, 8)).astype(np.float32) for _ in range(3))
    mask = rng.random((2, 1, 7, 7)) > 0.3
    mask[0, 0, 2] = False  # a query row that sees no key: zero output, like torch
    g = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    ins = [nf.from_numpy(a.copy()).requires_grad_() for a in (q, k, v)]
    tins = [torch.from_numpy(a).requires_grad_() for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ins, attn_mask=nf.from_numpy(mask))
    tout = torch.nn.functional.scaled_dot_product_attention(*tins, attn_mask=torch.from_numpy(mask))
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g))
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-6)
    for a, ta in zip(ins, tins):
        _close(a.grad.numpy(), ta.grad.numpy(), atol=2e-5)


def _tiny_bert(layers: int):
    """A small random BertModel in eval mode and a (2, 16) batch of token ids for it."""
    from nnforge.models.bert import BertConfig, BertModel
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=16)
    nf.manual_seed(0)
    return BertModel(cfg).eval(), np.random.default_rng(6).integers(0, 50, size=(2, 16))


def _hidden_and_grads(model, ids, loss) -> tuple:
    """last_hidden_state and every parameter gradient after ``loss(last_hidden_state).backward()``."""
    model.zero_grad()
    out = model(ids).last_hidden_state
    loss(out).backward()
    return out.detach().numpy(), [p.grad.numpy().copy() for p in model.parameters() if p.grad is not None]


def _assert_same_results(a: tuple, b: tuple, min_grads: int) -> None:
    _close(a[0], b[0], atol=1e-5)
    assert len(a[1]) == len(b[1]) > min_grads
    for ga, gb in zip(a[1], b[1]):
        _close(ga, gb, atol=1e-4, rtol=1e-4)


def test_fast_and_numpy_paths_agree_on_a_bert_layer(monkeypatch):
    """A whole encoder layer (GELU, softmax in attention, layer norms) forward and backward on both paths."""
    model, ids = _tiny_bert(layers=1)
    results = []
    for fast in (True, False):
        monkeypatch.setattr(cpu_backend, "use_fast_kernels", fast)
        results.append(_hidden_and_grads(model, ids, lambda out: out.sum()))
    _assert_same_results(*results, min_grads=10)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(path, smoothing):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((40, 1000)) * 5).astype(np.float32)
    x[3] *= 2000  # large logits: lse - x[t] must keep its digits
    t = rng.integers(0, 1000, 40)
    t[5] = -100  # ignored
    a = nf.from_numpy(x.copy()).requires_grad_()
    ta = torch.from_numpy(x).requires_grad_()
    loss = F.cross_entropy(a, nf.from_numpy(t), label_smoothing=smoothing)
    tloss = torch.nn.functional.cross_entropy(ta, torch.from_numpy(t), label_smoothing=smoothing)
    loss.backward()
    tloss.backward()
    _close(loss.detach().numpy(), tloss.detach().numpy(), atol=1e-5, rtol=1e-5)
    _close(a.grad.numpy(), ta.grad.numpy(), atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("name,kw", [("AdamW", dict(weight_decay=0.01)), ("Adam", dict(weight_decay=0.1)),
                                     ("Adam", dict(maximize=True))])
def test_adam_steps_match_torch(path, name, kw):
    rng = np.random.default_rng(8)
    shapes = [(300, 200), (7,)]  # one above the threshold for threads, one below
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ps = [nf.nn.Parameter(nf.from_numpy(a.copy())) for a in init]
    tps = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    opt = getattr(nf.optim, name)(ps, lr=1e-2, **kw)
    topt = getattr(torch.optim, name)(tps, lr=1e-2, **kw)
    for step in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, tp, gr in zip(ps, tps, grads):
            p.grad = nf.from_numpy(gr.copy())
            tp.grad = torch.from_numpy(gr.copy())
        opt.step()
        topt.step()
    for p, tp in zip(ps, tps):
        _close(p.detach().numpy(), tp.detach().numpy(), atol=1e-6, rtol=1e-5)


def test_cube_kernel_equals_numpy_bit_for_bit(monkeypatch):
    """x ** 3 on a large float32 array takes the one-pass kernel; its result must be NumPy's a * a * a."""
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", True)
    a = np.random.default_rng(9).standard_normal(1 << 17).astype(np.float32)
    a[:3] = [np.nan, np.inf, -0.0]
    np.testing.assert_array_equal((nf.from_numpy(a) ** 3).numpy(), a * a * a)


def test_parallel_for_covers_every_item_once_propagates_errors_and_works_after_fork():
    import multiprocessing as mp
    seen = np.zeros(1000, np.int64)

    def mark(sl):
        seen[sl] += 1

    cpu_backend.parallel_for(1000, mark, grain=7)
    assert (seen == 1).all()

    def boom(sl):
        raise ValueError("bad chunk")

    with pytest.raises(ValueError, match="bad chunk"):
        cpu_backend.parallel_for(10, boom)
    # a forked child (DataLoader workers) must not wait on its parent's pool threads
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_sum_in_child).get(timeout=30) == 1000  # a hang fails here, not forever


def _sum_in_child() -> int:
    out = np.zeros(1000, np.int64)

    def mark(sl):
        out[sl] += 1

    cpu_backend.parallel_for(1000, mark)
    return int(out.sum())


def test_attention_mask_with_extra_batch_dims_zeroes_fully_masked_rows(path):
    """A mask that adds batch dims to the scores takes the unchunked path; fully masked rows still give 0."""
    rng = np.random.default_rng(10)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((3, 5, 8), (3, 7, 8), (3, 7, 4)))
    mask = rng.random((2, 3, 5, 7)) > 0.3
    mask[..., 0] = True
    mask[1, 2, 4] = False  # one query row that sees no key
    out = F.scaled_dot_product_attention(nf.from_numpy(q), nf.from_numpy(k), nf.from_numpy(v),
                                         attn_mask=nf.from_numpy(mask)).numpy()
    # torch refuses a mask larger than the scores: give it q, k, v expanded to the mask's batch dims instead
    tq, tk, tv = (torch.from_numpy(a).expand(2, *a.shape) for a in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(mask))
    assert np.isfinite(out).all() and not out[1, 2, 4].any()
    _close(out, torch.nan_to_num(ref).numpy(), atol=2e-6)


def _padding_mask(lengths: list, S: int, kind: str) -> np.ndarray:
    """(B, 1, 1, S) key-padding mask: bool (True = attend) or additive float with transformers' finfo.min."""
    keep = np.arange(S)[None, :] < np.array(lengths)[:, None]
    if kind == "bool":
        return keep[:, None, None, :]
    return np.where(keep, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("gqa", [False, True])
def test_attention_with_key_padding_mask_skips_padded_keys_exactly(path, kind, gqa):
    """A key-padding mask lets each item attend over its own prefix of keys only (no work on padded keys);
    outputs and all gradients, padded keys' included (zero), must still equal torch's."""
    rng = np.random.default_rng(11)
    B, H, L, S, E = 4, 4, 6, 9, 8
    hk = 2 if gqa else H
    q = rng.standard_normal((B, H, L, E)).astype(np.float32)
    k, v = (rng.standard_normal((B, hk, S, E)).astype(np.float32) for _ in range(2))
    mask = _padding_mask([9, 3, 1, 7], S, kind)
    g = rng.standard_normal((B, H, L, E)).astype(np.float32)
    ins = [nf.from_numpy(a.copy()).requires_grad_() for a in (q, k, v)]
    tins = [torch.from_numpy(a).requires_grad_() for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ins, attn_mask=nf.from_numpy(mask), enable_gqa=gqa)
    tout = torch.nn.functional.scaled_dot_product_attention(*tins, attn_mask=torch.from_numpy(mask),
                                                            enable_gqa=gqa)
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g))
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-6)
    for a, ta in zip(ins, tins):
        _close(a.grad.numpy(), ta.grad.numpy(), atol=2e-5)
    assert not ins[1].grad.numpy()[2, :, 1:].any() and not ins[2].grad.numpy()[1, :, 3:].any()
    with nf.no_grad():  # no graph: the items share one scratch block of probabilities per thread
        out = F.scaled_dot_product_attention(*ins, attn_mask=nf.from_numpy(mask), enable_gqa=gqa)
    _close(out.numpy(), tout.detach().numpy(), atol=2e-6)


def test_packed_attention_with_padding_mask_matches_unpacked_and_mask_grad(path):
    """packed_self_attention takes the key-trimmed path too; a float mask that needs a gradient does not (the
    gradient needs every score), and both agree with torch."""
    from nnforge.ops.attention import packed_self_attention
    rng = np.random.default_rng(12)
    B, H, L, E = 3, 2, 8, 4
    qkv = rng.standard_normal((3, B, H, L, E)).astype(np.float32)
    mask = _padding_mask([8, 5, 2], L, "float")
    g = rng.standard_normal((B, H, L, E)).astype(np.float32)
    x = nf.from_numpy(qkv.copy()).requires_grad_()
    m = nf.from_numpy(mask.copy()).requires_grad_()
    tx = torch.from_numpy(qkv).requires_grad_()
    tm = torch.from_numpy(mask).requires_grad_()
    for mask_arg, tmask in ((nf.from_numpy(mask), torch.from_numpy(mask)), (m, tm)):
        x.grad, tx.grad = None, None
        out = packed_self_attention(x, mask_arg)
        tout = torch.nn.functional.scaled_dot_product_attention(tx[0], tx[1], tx[2], attn_mask=tmask)
        out.backward(nf.from_numpy(g))
        tout.backward(torch.from_numpy(g))
        _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-6)
        _close(x.grad.numpy(), tx.grad.numpy(), atol=2e-5)
    _close(m.grad.numpy(), tm.grad.numpy(), atol=2e-5)


def test_attention_dropout_with_padding_mask_keeps_padded_keys_out(path):
    """Training with dropout on the key-trimmed path: padded keys get no probability and no gradient, and the
    backward uses the forward's dropout mask. With v = identity the output is the dropped probabilities P_d
    themselves, and with an all-ones upstream gradient dv[j, :] = sum over queries of P_d[:, j]."""
    nf.manual_seed(0)
    rng = np.random.default_rng(13)
    B, H, L = 2, 2, 6
    q, k = (nf.from_numpy(rng.standard_normal((B, H, L, 4)).astype(np.float32)) for _ in range(2))
    v = nf.from_numpy(np.broadcast_to(np.eye(L, dtype=np.float32), (B, H, L, L)).copy()).requires_grad_()
    mask = nf.from_numpy(_padding_mask([6, 2], L, "bool"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.5)
    out.sum().backward()
    p_dropped = out.detach().numpy()
    assert not p_dropped[1, :, :, 2:].any() and (p_dropped == 0).any() and (p_dropped > 1).any()  # dropped, rescaled
    expected = np.broadcast_to(p_dropped.sum(axis=-2)[..., None], (B, H, L, L))
    np.testing.assert_allclose(v.grad.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["both", "input", "residual"])
def test_add_layer_norm_matches_torch_layer_norm_of_the_sum(path, which):
    """The post-LN residual + LayerNorm in one pass: output and gradients of input, residual, weight and
    bias equal torch's layer_norm(x + r); under no_grad (nothing saved for backward) the output is the same."""
    from nnforge.ops.normalization import add_layer_norm
    rng = np.random.default_rng(14)
    x, r = (rng.standard_normal((3, 5, 24)).astype(np.float32) * 3 + 2 for _ in range(2))
    w, b = rng.standard_normal(24).astype(np.float32), rng.standard_normal(24).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    grads = {"both": (True, True), "input": (True, False), "residual": (False, True)}[which]
    ins = [nf.from_numpy(a.copy()).requires_grad_(need) for a, need in zip((x, r), grads)]
    params = [nf.from_numpy(a.copy()).requires_grad_() for a in (w, b)]
    tins = [torch.from_numpy(a).requires_grad_(need) for a, need in zip((x, r), grads)]
    tparams = [torch.from_numpy(a).requires_grad_() for a in (w, b)]
    out = add_layer_norm(ins[0], ins[1], 24, *params, eps=1e-12)
    tout = torch.nn.functional.layer_norm(tins[0] + tins[1], (24,), *tparams, eps=1e-12)
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g))
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-5)
    _assert_grads_match(ins + params, tins + tparams, atol=5e-4)
    with nf.no_grad():
        again = add_layer_norm(nf.from_numpy(x), nf.from_numpy(r), 24, *params, eps=1e-12)
    np.testing.assert_array_equal(again.numpy(), out.detach().numpy())
    with pytest.raises(RuntimeError, match="add_layer_norm: residual of shape"):
        add_layer_norm(nf.from_numpy(x), nf.from_numpy(r[:, :2]), 24)


def test_attention_dropout_draws_the_same_mask_with_and_without_key_trimming(path):
    """Skipping padded keys must not change which attention weights a seed drops: the trimmed path (a mask
    that does not need grad) and the full path (the same mask requiring grad) give the same output."""
    rng = np.random.default_rng(15)
    q, k, v = (nf.from_numpy(rng.standard_normal((3, 2, 6, 4)).astype(np.float32)) for _ in range(3))
    mask = _padding_mask([6, 4, 2], 6, "float")
    outs = []
    for needs_grad in (False, True):
        nf.manual_seed(7)
        m = nf.from_numpy(mask.copy()).requires_grad_(needs_grad)
        outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=0.3).detach().numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(300_007,), (517, 1031), (3, 70_001), (200, 3, 111)])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_large_sums_on_both_paths_match_torch(path, shape, op):
    """Sums of all elements and over the last axis (the compiled kernel adds float32 blocks into float64):
    torch's values and shapes, keepdim, gradients; a NaN or inf propagates as in torch."""
    rng = np.random.default_rng(7)
    a = (rng.standard_normal(shape) + 0.25).astype(np.float32)
    for dim, keepdim in ((None, False), (-1, False), (-1, True), (a.ndim - 1, True)):
        x, t = nf.from_numpy(a).requires_grad_(), torch.from_numpy(a).requires_grad_()
        kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
        out, tout = getattr(x, op)(**kw), getattr(t, op)(**kw)
        assert out.shape == tuple(tout.shape) and out.dtype == nf.float32
        _close(out.detach().numpy(), tout.detach().numpy(), atol=1e-5 * max(1.0, float(np.abs(a).sum() ** 0.5)))
        out.backward(nf.ones_like(out))
        tout.backward(torch.ones_like(tout))
        _close(x.grad.numpy(), t.grad.numpy(), atol=1e-7)
    bad = a.copy().reshape(-1, shape[-1])
    bad[0, 5], bad[-1, -1] = np.nan, np.inf
    bad = bad.reshape(shape)
    _close(getattr(nf.from_numpy(bad), op)().numpy(), getattr(torch.from_numpy(bad), op)().numpy(), atol=0)
    _close(getattr(nf.from_numpy(bad), op)(-1).numpy(), getattr(torch.from_numpy(bad), op)(-1).numpy(), atol=1e-3)


@pytest.mark.parametrize("shape", [(300_007,), (517, 1031), (3, 70_001), (200, 3, 111)])
@pytest.mark.parametrize("op", ["amax", "amin"])
def test_large_amax_amin_on_both_paths_match_torch(path, shape, op):
    """amax/amin of all elements and over the last axis (the compiled kernel compares ordered integer keys):
    torch's values exactly, shapes, keepdim, gradients with ties shared; NaN wins over inf in a row, as in
    torch, and rows without it keep their own extreme."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal(shape).astype(np.float32)
    flat = a.reshape(-1, shape[-1])
    flat[1 % flat.shape[0], :3] = 7.5 if op == "amax" else -7.5  # a tie in one row (or in the whole array)
    flat[0, -1] = -0.0
    for dim, keepdim in ((None, False), (-1, False), (-1, True), (a.ndim - 1, True)):
        x, t = nf.from_numpy(a).requires_grad_(), torch.from_numpy(a).requires_grad_()
        kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
        out, tout = getattr(x, op)(**kw), getattr(t, op)(**kw)
        assert out.shape == tuple(tout.shape) and out.dtype == nf.float32
        np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
        out.backward(nf.ones_like(out))
        tout.backward(torch.ones_like(tout))
        _close(x.grad.numpy(), t.grad.numpy(), atol=1e-7)
    bad = a.copy().reshape(-1, shape[-1])
    # a NaN with its sign bit set (x86's inf - inf) orders below every number as a key, a positive one above
    bad[0, 5], bad[0, 6], bad[-1, -1] = np.negative(np.float32(np.nan)), np.inf, -np.inf
    bad[-1, 7] = np.nan
    bad = bad.reshape(shape)
    for args in ((), (-1,)):
        np.testing.assert_array_equal(getattr(nf.from_numpy(bad), op)(*args).numpy(),
                                      getattr(torch.from_numpy(bad), op)(*args).numpy())


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("grad", [True, False])
def test_linear_gelu_matches_torch_linear_then_gelu(path, approximate, grad):
    """The feed-forward op (bias added in GELU's pass, in place without a graph) on both paths: torch's
    output and all three gradients; the inputs are left untouched."""
    from nnforge.ops.linear import linear_gelu
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 700, 48)).astype(np.float32)
    w = (rng.standard_normal((96, 48)) * 0.3).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    g = rng.standard_normal((3, 700, 96)).astype(np.float32)
    ins = [nf.from_numpy(a.copy()).requires_grad_(grad) for a in (x, w, b)]
    tins = [torch.from_numpy(a).double().requires_grad_(grad) for a in (x, w, b)]
    out = linear_gelu(*ins, approximate=approximate)
    tout = torch.nn.functional.gelu(torch.nn.functional.linear(*tins), approximate=approximate)
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-5)
    for a, orig in zip(ins, (x, w, b)):
        np.testing.assert_array_equal(a.detach().numpy(), orig)
    if grad:
        out.backward(nf.from_numpy(g))
        tout.backward(torch.from_numpy(g).double())
        for a, ta in zip(ins, tins):
            _close(a.grad.numpy(), ta.grad.numpy(), atol=2e-4, rtol=1e-4)
    else:
        with nf.no_grad():
            _close(linear_gelu(*ins, approximate=approximate).numpy(), tout.detach().numpy(), atol=2e-5)


def test_linear_gelu_bad_input_raises_linears_errors():
    from nnforge.ops.linear import linear_gelu
    x, w, b = nf.ones(2, 5), nf.ones(4, 6), nf.ones(4)
    with pytest.raises(RuntimeError, match=r"linear: input of shape \(2, 5\)"):
        linear_gelu(x, w, b)
    with pytest.raises(RuntimeError, match="bias of shape"):
        linear_gelu(nf.ones(2, 6), w, nf.ones(3))
    with pytest.raises(ValueError, match="approximate"):
        linear_gelu(nf.ones(2, 6), w, b, approximate="fast")


@pytest.mark.parametrize("which", ["all", "bias_only", "input_only"])
def test_add_layer_norm_with_input_bias_matches_torch(path, which):
    """layer_norm(x + r + c) for a bias row c (a linear layer's bias left out of its GEMM): output and the
    gradients of x, r, c, weight and bias equal torch's on both paths, with and without a graph."""
    from nnforge.ops.normalization import add_layer_norm
    rng = np.random.default_rng(15)
    x, r = (rng.standard_normal((4, 300, 24)).astype(np.float32) * 3 + 2 for _ in range(2))
    c, w, b = (rng.standard_normal(24).astype(np.float32) for _ in range(3))
    g = rng.standard_normal(x.shape).astype(np.float32)
    need = {"all": (True, True, True), "bias_only": (False, False, True), "input_only": (True, False, False)}[which]
    ins = [nf.from_numpy(a.copy()).requires_grad_(n) for a, n in zip((x, r, c), need)]
    params = [nf.from_numpy(a.copy()).requires_grad_() for a in (w, b)]
    tins = [torch.from_numpy(a).double().requires_grad_(n) for a, n in zip((x, r, c), need)]
    tparams = [torch.from_numpy(a).double().requires_grad_() for a in (w, b)]
    out = add_layer_norm(ins[0], ins[1], 24, *params, eps=1e-12, input_bias=ins[2])
    tout = torch.nn.functional.layer_norm(tins[0] + tins[1] + tins[2], (24,), *tparams, eps=1e-12)
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g).double())
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-5)
    _assert_grads_match(ins + params, tins + tparams, atol=2e-3)
    with nf.no_grad():
        again = add_layer_norm(*(nf.from_numpy(a) for a in (x, r)), 24, *params, eps=1e-12,
                               input_bias=nf.from_numpy(c))
    _close(again.numpy(), tout.detach().numpy(), atol=2e-5)
    with pytest.raises(RuntimeError, match="input_bias of shape"):
        add_layer_norm(nf.from_numpy(x), nf.from_numpy(r), 24, input_bias=nf.ones(23))
    with pytest.raises(RuntimeError, match="input_bias dtype"):
        add_layer_norm(nf.from_numpy(x), nf.from_numpy(r), 24, input_bias=nf.ones(24, dtype=nf.float64))


def test_bert_layer_output_equals_the_unfused_modules(monkeypatch):
    """BERT's dense -> dropout -> LayerNorm(x + residual) and dense -> GELU, fused (the dense biases inside
    the following pass) in eval mode, must equal running the modules one by one, gradients included."""
    from nnforge.models import bert
    model, ids = _tiny_bert(layers=2)
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(bert, "_dense_add_norm",
                                lambda dense, drop, norm, x, res: bert._add_norm(norm, drop(dense(x)), res))
            monkeypatch.setattr(bert.BertIntermediate, "forward",
                                lambda self, h: self.intermediate_act_fn(self.dense(h)))
        results.append(_hidden_and_grads(model, ids, lambda out: (out * out).sum()))
    _assert_same_results(*results, min_grads=20)


def test_add_layer_norm_input_bias_over_two_normalized_dims(path):
    """normalized_shape (4, 5): the input bias has that shape and its gradient sums over the rows only."""
    from nnforge.ops.normalization import add_layer_norm
    rng = np.random.default_rng(16)
    x, r = (rng.standard_normal((3, 4, 5)).astype(np.float32) for _ in range(2))
    c = rng.standard_normal((4, 5)).astype(np.float32)
    ins = [nf.from_numpy(a.copy()).requires_grad_() for a in (x, r, c)]
    tins = [torch.from_numpy(a).double().requires_grad_() for a in (x, r, c)]
    out = add_layer_norm(ins[0], ins[1], (4, 5), input_bias=ins[2])
    tout = torch.nn.functional.layer_norm(tins[0] + tins[1] + tins[2], (4, 5))
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    _close(out.detach().numpy(), tout.detach().numpy(), atol=2e-6)
    for a, ta in zip(ins, tins):
        assert a.grad.shape == tuple(ta.shape)
        _close(a.grad.numpy(), ta.grad.numpy(), atol=2e-5)


def test_kernels_serve_every_contiguous_float32_array_and_no_other():
    import pickle

    unpickled = pickle.loads(pickle.dumps(np.zeros(8, np.float32)))
    assert unpickled.dtype is not np.dtype(np.float32)  # a dtype object of its own (e.g. a DataLoader batch)
    assert cpu_backend.kernels_for(unpickled) is not None
    assert cpu_backend.kernels_for(np.zeros(8, np.float32), None) is not None
    assert cpu_backend.kernels_for(np.zeros(8, np.float64)) is None
    assert cpu_backend.kernels_for(np.zeros(8, ">f4")) is None  # not native byte order
    assert cpu_backend.kernels_for(np.zeros((4, 4), np.float32).T) is None  # not C-contiguous
