"""Indexing and selection vs PyTorch: t[...] with ints, slices, None, Ellipsis, int lists/arrays/tensors
(repeated indices accumulate), bool masks; gather, index_select, masked_fill; __setitem__; errors;
float64 gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from helpers import check_op, gradcheck

IDX = np.array([0, 2, 2, -1])  # repeated and negative: gradients must accumulate
MASK = np.array([True, False, True, True])

# (id, index applied to nf tensor, index applied to torch tensor)
INDEX_CASES = [
    ("int", 1, 1),
    ("neg int", -1, -1),
    ("int,int", (1, 2), (1, 2)),
    ("slice", slice(1, 3), slice(1, 3)),
    ("slice step", slice(None, None, 2), slice(None, None, 2)),
    ("neg slice", slice(-3, -1), slice(-3, -1)),
    ("empty slice", slice(2, 2), slice(2, 2)),
    ("slice out of bounds", slice(1, 100), slice(1, 100)),
    ("None", None, None),
    ("None mid", (slice(None), None, 1), (slice(None), None, 1)),
    ("ellipsis", (Ellipsis, 1), (Ellipsis, 1)),
    ("ellipsis None", (0, Ellipsis, None), (0, Ellipsis, None)),
    ("int list", [0, 2, 2], [0, 2, 2]),
    ("int array", IDX, torch.tensor(IDX)),
    ("int tensor", nf.tensor(IDX), torch.tensor(IDX)),
    ("2d int tensor", nf.tensor([[0, 1], [3, 3]]), torch.tensor([[0, 1], [3, 3]])),
    ("int tensor + slice", (nf.tensor([1, 1]), slice(1, None)), (torch.tensor([1, 1]), slice(1, None))),
    ("slice + int list", (slice(None), [0, 4, 0]), (slice(None), [0, 4, 0])),
    ("two int arrays", (np.array([0, 1, 1]), np.array([2, 3, 3])), (torch.tensor([0, 1, 1]), torch.tensor([2, 3, 3]))),
    ("broadcast int arrays", (np.array([[0], [3]]), np.array([1, 2])),
     (torch.tensor([[0], [3]]), torch.tensor([1, 2]))),
    ("bool mask rows", MASK, torch.tensor(MASK)),
    ("bool mask tensor", nf.tensor(MASK), torch.tensor(MASK)),
    ("bool mask + slice", (slice(None), np.array([True, False, False, True, True])),
     (slice(None), torch.tensor([True, False, False, True, True]))),
    ("empty int list", [], []),
    ("0-d int tensor", nf.tensor(2), torch.tensor(2)),
    ("ellipsis int array", (Ellipsis, np.array([4, 0])), (Ellipsis, torch.tensor([4, 0]))),
]


@pytest.mark.parametrize("case", INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_getitem(case):
    _, nf_idx, torch_idx = case
    check_op(lambda a: a[nf_idx], lambda a: a[torch_idx], [(4, 5)])
    check_op(lambda a: a[nf_idx], lambda a: a[torch_idx], [(4, 5)], layout="transposed")


def test_getitem_full_bool_mask():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    check_op(lambda a: a[a > 0], lambda a: a[a > 0], [x])
    m = x > 0
    check_op(lambda a: a[nf.tensor(m)], lambda a: a[torch.tensor(m)], [x])
    check_op(lambda a: a[m], lambda a: a[torch.tensor(m)], [x])


def test_getitem_0d_and_zero_size():
    check_op(lambda a: a[...], lambda a: a[...], [()])
    check_op(lambda a: a[None], lambda a: a[None], [()])
    check_op(lambda a: a[0], lambda a: a[0], [(2, 0)])
    check_op(lambda a: a[:, 1], lambda a: a[:, 1], [(0, 3)])
    check_op(lambda a: a[nf.tensor([], dtype=nf.int64)], lambda a: a[torch.tensor([], dtype=torch.int64)],
             [(3, 2)])


def test_getitem_3d_mixed():
    idx = np.array([1, 0, 1])
    check_op(lambda a: a[1:, idx, ::2], lambda a: a[1:, torch.tensor(idx), ::2], [(3, 2, 5)])
    check_op(lambda a: a[..., None, 0], lambda a: a[..., None, 0], [(3, 2, 5)])
    check_op(lambda a: a[idx, :, idx], lambda a: a[torch.tensor(idx), :, torch.tensor(idx)], [(3, 2, 5)])


def test_repeated_index_accumulates():
    x = nf.zeros(3, requires_grad=True)
    x[nf.tensor([0, 0, 2, 0])].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


def test_getitem_is_view_and_iter():
    x = nf.arange(6).reshape(2, 3)
    row = x[1]
    x[1, 0] = 10
    assert row.tolist() == [10, 4, 5]
    assert [r.tolist() for r in x] == [[0, 1, 2], [10, 4, 5]]


def test_getitem_errors():
    x = nf.ones(3, 4)
    with pytest.raises(IndexError, match=r"index.*\(3, 4\)"):
        x[3]
    with pytest.raises(IndexError, match=r"index"):
        x[:, 4]
    with pytest.raises(IndexError, match=r"index"):
        x[nf.tensor([0, 5])]
    with pytest.raises(IndexError, match="integer or bool"):
        x[nf.tensor([0.0, 1.0])]
    with pytest.raises(IndexError):
        x[0, 0, 0]
    with pytest.raises(IndexError):
        x[nf.tensor([True, False])]


def test_setitem():
    x = nf.zeros(3, 4)
    t = torch.zeros(3, 4)
    for idx, v in [((0, 1), 5.0), ((slice(None), 2), nf.tensor([1.0, 2.0, 3.0])), (nf.tensor([True, False, True]), 7.0),
                   (nf.tensor([2, 0]), nf.tensor(-1.0)), ((Ellipsis, -1), 9.0)]:
        x[idx] = v
        tidx = tuple(torch.tensor(i.numpy()) if isinstance(i, nf.Tensor) else i for i in idx) \
            if isinstance(idx, tuple) else torch.tensor(idx.numpy())
        t[tidx] = torch.tensor(v.numpy()) if isinstance(v, nf.Tensor) else v
        np.testing.assert_array_equal(x.numpy(), t.numpy())
    assert x._version[0] == 5


def test_setitem_on_leaf_requiring_grad_raises_unless_no_grad():
    w = nf.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w[0] = 1.0
    with nf.no_grad():
        w[0] = 1.0
    assert w.tolist() == [1.0, 0.0, 0.0]


# -- gather / index_select / masked_fill -----------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather(dim):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 4, (3, 4))
    check_op(lambda a: nf.gather(a, dim, nf.tensor(idx)), lambda a: torch.gather(a, dim, torch.tensor(idx)),
             [(4, 4)])
    small = rng.integers(0, 4, (2, 3))  # index smaller than input in the other dims
    check_op(lambda a: a.gather(dim, nf.tensor(small)), lambda a: a.gather(dim, torch.tensor(small)), [(4, 4)],
             layout="transposed")


def test_gather_3d_and_errors():
    idx = np.array([[[0, 2]], [[1, 1]]])
    check_op(lambda a: a.gather(2, nf.tensor(idx)), lambda a: a.gather(2, torch.tensor(idx)), [(2, 3, 4)])
    x = nf.ones(2, 3)
    with pytest.raises(IndexError, match="gather.*range"):
        x.gather(1, nf.tensor([[0, 3]]))
    with pytest.raises(RuntimeError, match="gather.*dims"):
        x.gather(1, nf.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="gather.*integer"):
        x.gather(1, nf.tensor([[0.0]]))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(dim):
    idx = np.array([2, 0, 2, 1])
    check_op(lambda a: nf.index_select(a, dim, nf.tensor(idx)),
             lambda a: torch.index_select(a, dim, torch.tensor(idx)), [(3, 3, 3)])
    check_op(lambda a: a.index_select(dim, nf.tensor(idx)), lambda a: a.index_select(dim, torch.tensor(idx)),
             [(3, 3, 3)], layout="sliced")


def test_index_select_0d_index_and_errors():
    check_op(lambda a: a.index_select(0, nf.tensor(1)), lambda a: a.index_select(0, torch.tensor(1)), [(3, 2)])
    with pytest.raises(IndexError, match="index_select.*range"):
        nf.ones(3).index_select(0, nf.tensor([3]))
    with pytest.raises(RuntimeError, match="index_select.*1-D"):
        nf.ones(3).index_select(0, nf.tensor([[0]]))


@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (3, 1), ()], ids=str)
def test_masked_fill(mask_shape):
    mask = np.random.default_rng(1).random(mask_shape) > 0.5
    check_op(lambda a: a.masked_fill(nf.tensor(mask), -1e9), lambda a: a.masked_fill(torch.tensor(mask), -1e9),
             [(3, 4)], atol=0)
    check_op(lambda a: nf.masked_fill(a, nf.tensor(mask), nf.tensor(2.5)),
             lambda a: torch.masked_fill(a, torch.tensor(mask), torch.tensor(2.5)), [(3, 4)], layout="transposed")


def test_masked_fill_errors_and_ints():
    x = nf.tensor([[1, 2], [3, 4]])
    out = x.masked_fill(nf.tensor([True, False]), 0)
    assert out.tolist() == [[0, 2], [0, 4]] and out.dtype == nf.int64
    with pytest.raises(RuntimeError, match="masked_fill.*bool"):
        x.masked_fill(nf.tensor([1, 0]), 0)
    with pytest.raises(RuntimeError, match=r"masked_fill.*\(3,\).*\(2, 2\)"):
        x.masked_fill(nf.tensor([True, False, True]), 0)
    with pytest.raises(RuntimeError, match=r"masked_fill.*\(2, 2, 2\)"):
        x.masked_fill(nf.ones(2, 2, 2).bool(), 0)


@pytest.mark.parametrize("fn", [
    lambda a: a[1], lambda a: a[:, 1:3], lambda a: a[::2, None, -1], lambda a: a[..., [0, 0, 3]],
    lambda a: a[nf.tensor([2, 2, 0])], lambda a: a[a > 0], lambda a: a[nf.tensor([True, False, True])],
    lambda a: a.gather(1, nf.tensor([[0, 0], [3, 1], [2, 2]])), lambda a: a.index_select(1, nf.tensor([1, 1, 3])),
    lambda a: a.masked_fill(nf.tensor([True, False, False, True]), 0.5),
])
def test_gradcheck_indexing(fn):
    gradcheck(fn, [(3, 4)])
