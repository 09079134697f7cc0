"""Shape, view, join and split ops vs PyTorch (forward + grad, negative dims, 0-d, zero-size,
non-contiguous), views sharing version counters, errors, and float64 gradchecks."""
from __future__ import annotations

import pytest
import torch

import nnforge as nf
from helpers import check_op, gradcheck

SHAPE_CASES = [
    ("reshape(-1)", lambda a: a.reshape(-1), (3, 4)),
    ("reshape(4,3)", lambda a: a.reshape(4, 3), (3, 4)),
    ("reshape([2,-1,2])", lambda a: a.reshape([2, -1, 2]), (3, 4)),
    ("reshape(())", lambda a: a.reshape(()), (1, 1)),
    ("reshape 0-d", lambda a: a.reshape(1, 1), ()),
    ("reshape zero", lambda a: a.reshape(3, 0, 5), (0, 6)),
    ("reshape zero -1", lambda a: a.reshape(-1, 3), (0, 6)),
    ("view", lambda a: a.view(2, 6), (3, 4)),
    ("view(-1)", lambda a: a.view(-1), (2, 3, 2)),
    ("view_as", lambda a: a.view_as(a.reshape(4, 3)), (3, 4)),
    ("flatten", lambda a: a.flatten(), (2, 3, 4)),
    ("flatten(1)", lambda a: a.flatten(1), (2, 3, 4)),
    ("flatten(0,1)", lambda a: a.flatten(0, 1), (2, 3, 4)),
    ("flatten(-2,-1)", lambda a: a.flatten(-2, -1), (2, 3, 4)),
    ("flatten 0-d", lambda a: a.flatten(), ()),
    ("unflatten", lambda a: a.unflatten(1, (2, 2)), (3, 4)),
    ("unflatten(-1,-1)", lambda a: a.unflatten(-1, (-1, 2)), (3, 4)),
    ("transpose", lambda a: a.transpose(0, 1), (3, 4)),
    ("transpose(-1,-3)", lambda a: a.transpose(-1, -3), (2, 3, 4)),
    ("transpose 1d", lambda a: a.transpose(0, -1), (3,)),
    ("permute", lambda a: a.permute(2, 0, 1), (2, 3, 4)),
    ("permute tuple neg", lambda a: a.permute((-1, 0, 1)), (2, 3, 4)),
    ("t", lambda a: a.t(), (3, 4)),
    ("t 1d", lambda a: a.t(), (3,)),
    ("T", lambda a: a.T, (3, 4)),
    ("T 1d", lambda a: a.T, (3,)),
    ("mT", lambda a: a.mT, (2, 3, 4)),
    ("unsqueeze(0)", lambda a: a.unsqueeze(0), (3, 4)),
    ("unsqueeze(-1)", lambda a: a.unsqueeze(-1), (3, 4)),
    ("unsqueeze(1)", lambda a: a.unsqueeze(1), (3, 4)),
    ("unsqueeze 0-d", lambda a: a.unsqueeze(0), ()),
    ("squeeze", lambda a: a.squeeze(), (1, 3, 1, 4)),
    ("squeeze(0)", lambda a: a.squeeze(0), (1, 3, 1, 4)),
    ("squeeze(-2)", lambda a: a.squeeze(-2), (1, 3, 1, 4)),
    ("squeeze(1) noop", lambda a: a.squeeze(1), (1, 3, 1, 4)),
    ("squeeze tuple", lambda a: a.squeeze((0, 2)), (1, 3, 1, 4)),
    ("squeeze 0-d", lambda a: a.squeeze(), ()),
    ("expand", lambda a: a.expand(2, 3, 4), (3, 1)),
    ("expand -1", lambda a: a.expand(-1, 5), (3, 1)),
    ("expand 0-d", lambda a: a.expand(2, 3), ()),
    ("expand_as", lambda a: a.expand_as(a.reshape(1, 3, 1).expand(2, 3, 4)), (3, 1)),
    ("broadcast_to", lambda a: a.broadcast_to((4, 3, 2)), (3, 1)),
    ("expand zero", lambda a: a.expand(0, 3), (1, 3)),
    ("repeat", lambda a: a.repeat(2, 3), (3, 4)),
    ("repeat new dims", lambda a: a.repeat(2, 1, 3), (3, 4)),
    ("repeat 0-d", lambda a: a.repeat(3), ()),
    ("contiguous", lambda a: a.t().contiguous(), (3, 4)),
    ("clone", lambda a: a.clone() * 2, (3, 4)),
    ("tril", lambda a: a.tril(), (4, 5)),
    ("tril(1)", lambda a: a.tril(1), (4, 5)),
    ("triu(-1)", lambda a: a.triu(-1), (4, 5)),
    ("triu batched", lambda a: a.triu(), (2, 3, 3)),
]


@pytest.mark.filterwarnings("ignore:The use of `x.T`")  # torch deprecates .T on 1-D; it still reverses dims
@pytest.mark.parametrize("name,fn,shape", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_ops(name, fn, shape):
    check_op(fn, fn, [shape])


@pytest.mark.parametrize("name,fn,shape", [c for c in SHAPE_CASES if len(c[2]) >= 2 and "view" not in c[0]],
                         ids=[c[0] for c in SHAPE_CASES if len(c[2]) >= 2 and "view" not in c[0]])
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_shape_ops_noncontiguous(name, fn, shape, layout):
    check_op(fn, fn, [shape], layout=layout)


def test_functional_forms():
    check_op(lambda a: nf.reshape(a, (4, 3)), lambda a: torch.reshape(a, (4, 3)), [(3, 4)])
    check_op(lambda a: nf.flatten(a, 1), lambda a: torch.flatten(a, 1), [(2, 3, 4)])
    check_op(lambda a: nf.unflatten(a, 0, (1, 3)), lambda a: torch.unflatten(a, 0, (1, 3)), [(3, 4)])
    check_op(lambda a: nf.transpose(a, 1, 0), lambda a: torch.transpose(a, 1, 0), [(3, 4)])
    check_op(lambda a: nf.permute(a, (1, 0)), lambda a: torch.permute(a, (1, 0)), [(3, 4)])
    check_op(lambda a: nf.t(a), lambda a: torch.t(a), [(3, 4)])
    check_op(lambda a: nf.squeeze(a, 0), lambda a: torch.squeeze(a, 0), [(1, 4)])
    check_op(lambda a: nf.unsqueeze(a, -1), lambda a: torch.unsqueeze(a, -1), [(3, 4)])
    check_op(lambda a: nf.tril(a, -1), lambda a: torch.tril(a, -1), [(3, 4)])
    check_op(lambda a: nf.triu(a, 2), lambda a: torch.triu(a, 2), [(3, 4)])
    check_op(lambda a: nf.contiguous(a.T), lambda a: a.T.contiguous(), [(3, 4)])
    check_op(lambda a: nf.clone(a), lambda a: torch.clone(a), [(3, 4)])


def test_view_of_noncontiguous_raises_reshape_copies():
    x = nf.randn(3, 4).t()
    with pytest.raises(RuntimeError, match=r"view.*reshape"):
        x.view(12)
    assert x.reshape(12).shape == (12,)
    assert x.view(4, 3).shape == (4, 3)  # same shape is always a view


def test_contiguous_returns_self_when_contiguous():
    x = nf.randn(3, 4)
    assert x.contiguous() is x
    y = x.t().contiguous()
    assert y.data.flags.c_contiguous and y is not x


def test_views_share_memory_and_version():
    x = nf.zeros(3, 4)
    v = x.view(12)
    x.add_(1.0)
    assert v.tolist() == [1.0] * 12
    assert v._version is x._version
    r = x.t()
    assert r._version is x._version


def test_shape_errors():
    x = nf.ones(3, 4)
    with pytest.raises(RuntimeError, match=r"reshape.*\(5, -1\)|reshape.*\(3, 4\)"):
        x.reshape(5, -1)
    with pytest.raises(RuntimeError, match="reshape"):
        x.reshape(5, 3)
    with pytest.raises(RuntimeError, match="one dimension"):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError, match="expand"):
        x.expand(3, 5)
    with pytest.raises(RuntimeError, match="permute"):
        x.permute(0, 0)
    with pytest.raises(RuntimeError, match="permute"):
        x.permute(0)
    with pytest.raises(IndexError, match="transpose.*dimension 2"):
        x.transpose(0, 2)
    with pytest.raises(RuntimeError, match="t\\(\\)"):
        nf.ones(2, 3, 4).t()
    with pytest.raises(RuntimeError, match="repeat"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="flatten"):
        nf.ones(2, 3, 4).flatten(2, 1)


# -- join / split --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_cat(dim):
    shapes = [(2, 3), (2, 3), (2, 3)]
    check_op(lambda *xs: nf.cat(xs, dim), lambda *xs: torch.cat(xs, dim), shapes)
    check_op(lambda *xs: nf.cat(list(xs), dim=dim), lambda *xs: torch.cat(list(xs), dim=dim), shapes,
             layout="transposed")


def test_cat_uneven_and_zero_size():
    check_op(lambda a, b: nf.cat([a, b], 1), lambda a, b: torch.cat([a, b], 1), [(2, 3), (2, 5)])
    check_op(lambda a, b: nf.cat([a, b], 0), lambda a, b: torch.cat([a, b], 0), [(0, 3), (2, 3)])
    check_op(lambda a, b: nf.cat([a, b]), lambda a, b: torch.cat([a, b]), [(0,), (2, 3)])  # legacy 1-D empty
    check_op(lambda a, b: nf.concat([a, b], -1), lambda a, b: torch.concat([a, b], -1), [(2, 3), (2, 0)])


def test_cat_mixed_dtypes_and_errors():
    out = nf.cat([nf.ones(2), nf.ones(2, dtype=nf.float64)])
    assert out.dtype == nf.float64
    assert nf.cat([nf.tensor([1, 2]), nf.tensor([0.5])]).dtype == nf.float32
    with pytest.raises(RuntimeError, match=r"cat.*\(2, 3\).*\(3, 3\)"):
        nf.cat([nf.ones(2, 3), nf.ones(3, 3)], 1)
    with pytest.raises(RuntimeError, match="cat"):
        nf.cat([nf.ones(2, 3), nf.ones(3)])
    with pytest.raises(RuntimeError, match="cat"):
        nf.cat([])
    with pytest.raises(RuntimeError, match="zero-dim"):
        nf.cat([nf.tensor(1.0), nf.tensor(2.0)])


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack(dim):
    check_op(lambda *xs: nf.stack(xs, dim), lambda *xs: torch.stack(xs, dim), [(2, 3), (2, 3)])


def test_stack_0d_and_errors():
    check_op(lambda a, b: nf.stack([a, b]), lambda a, b: torch.stack([a, b]), [(), ()])
    with pytest.raises(RuntimeError, match=r"stack.*\(2,\).*\(3,\)"):
        nf.stack([nf.ones(2), nf.ones(3)])
    with pytest.raises(IndexError, match="stack"):
        nf.stack([nf.ones(2), nf.ones(2)], 2)


@pytest.mark.parametrize("arg,dim", [(2, 0), (3, 1), (4, -1), ([1, 3], 1), ([2, 0, 2], -1), (5, 0)])
def test_split(arg, dim):
    check_op(lambda a: a.split(arg, dim), lambda a: a.split(arg, dim), [(4, 4)])
    check_op(lambda a: nf.split(a, arg, dim), lambda a: torch.split(a, arg, dim), [(4, 4)], layout="transposed")


@pytest.mark.parametrize("chunks,dim", [(2, 0), (3, 1), (4, -1), (1, 0), (6, 1)])
def test_chunk(chunks, dim):
    check_op(lambda a: a.chunk(chunks, dim), lambda a: a.chunk(chunks, dim), [(4, 5)])
    check_op(lambda a: nf.chunk(a, chunks, dim), lambda a: torch.chunk(a, chunks, dim), [(4, 5)])


def test_split_chunk_grads_through_several_pieces():
    def fn(x):
        a, b, c = x.chunk(3, 1)
        return a * 2 + b * c

    check_op(fn, fn, [(2, 6)])

    def fn2(x):
        p, q = x.split([1, 3], 0)
        return (p.sum() + q.prod()).reshape(1)

    check_op(fn2, fn2, [(4, 2)])


def test_unbind():
    check_op(lambda a: a.unbind(1), lambda a: a.unbind(1), [(2, 3)])
    check_op(lambda a: nf.unbind(a, -1), lambda a: torch.unbind(a, -1), [(2, 3)])


def test_split_errors():
    with pytest.raises(RuntimeError, match=r"split.*sum to 5.*size 4"):
        nf.ones(4).split([2, 3])
    with pytest.raises(RuntimeError, match="chunk"):
        nf.ones(4).chunk(0)


@pytest.mark.parametrize("fn", [
    lambda a: a.reshape(4, 3), lambda a: a.view(2, 6), lambda a: a.transpose(0, 1), lambda a: a.permute(1, 0),
    lambda a: a.t(), lambda a: a.T, lambda a: a.unsqueeze(1), lambda a: a.unsqueeze(0).squeeze(0),
    lambda a: a.flatten(), lambda a: a.unflatten(1, (2, 2)), lambda a: a.unsqueeze(1).expand(3, 2, 4),
    lambda a: a.repeat(2, 3), lambda a: a.t().contiguous(), lambda a: a.tril(), lambda a: a.triu(1),
    lambda a: nf.cat([a, a * 2], 1), lambda a: nf.stack([a, a], -1), lambda a: a.chunk(2, 1)[1],
    lambda a: a.split([1, 2], 0)[1], lambda a: a.clone(),
])
def test_gradcheck_shape(fn):
    gradcheck(fn, [(3, 4)])
