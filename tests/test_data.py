"""nnforge.utils.data: datasets, samplers, DataLoader, collate functions, pad_sequence."""
from collections import namedtuple

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.nn.utils.rnn import pad_sequence as nn_pad_sequence
from nnforge.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, PadCollate,
                                RandomSampler, SequentialSampler, Subset, TensorDataset, default_collate,
                                pad_sequence, random_split)


def _ds(n=10):
    return TensorDataset(nf.arange(n * 2, dtype=nf.float32).reshape(n, 2), nf.arange(n))


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(3, i, dtype=np.float32), "y": i * i, "name": f"s{i}"}


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter((float(i), i) for i in range(self.n))


def test_batching_and_len():
    loader = DataLoader(_ds(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    x, y = batches[-1]
    assert x.shape == (2, 2) and y.tolist() == [8, 9] and y.dtype == nf.int64
    assert batches[0][0].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_drop_last():
    loader = DataLoader(_ds(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [b[1].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_tensor_fast_path_equals_generic_collate():
    ds = _ds(9)
    fast = list(DataLoader(ds, batch_size=4))
    slow = list(DataLoader(ds, batch_size=4, collate_fn=lambda b: default_collate(b)))
    for (a, b), (c, d) in zip(fast, slow):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())


def _epoch(loader):
    return [i for _, y in loader for i in y.tolist()]


def test_shuffle_every_sample_once_and_reproducible_with_manual_seed():
    loader = DataLoader(_ds(23), batch_size=5, shuffle=True)
    nf.manual_seed(0)
    e1, e2 = _epoch(loader), _epoch(loader)
    assert sorted(e1) == list(range(23)) and sorted(e2) == list(range(23))
    assert e1 != e2 and e1 != list(range(23))  # a new order each epoch
    nf.manual_seed(0)
    assert _epoch(loader) == e1 and _epoch(loader) == e2
    nf.manual_seed(1)
    assert _epoch(loader) != e1


def test_shuffle_reproducible_with_generator():
    ds = _ds(17)
    a = _epoch(DataLoader(ds, batch_size=3, shuffle=True, generator=nf.Generator().manual_seed(5)))
    nf.manual_seed(123)  # the global generator does not matter when one is given
    b = _epoch(DataLoader(ds, batch_size=3, shuffle=True, generator=nf.Generator().manual_seed(5)))
    c = _epoch(DataLoader(ds, batch_size=3, shuffle=True, generator=nf.Generator().manual_seed(6)))
    assert a == b and a != c and sorted(a) == list(range(17))


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = nf.Generator().manual_seed(0)
    perm = list(RandomSampler(range(6), generator=g))
    assert sorted(perm) == list(range(6))
    draws = list(RandomSampler(range(3), replacement=True, num_samples=20, generator=g))
    assert len(draws) == 20 and set(draws) <= {0, 1, 2}
    more = list(RandomSampler(range(4), num_samples=10, generator=g))  # two full permutations + 2 draws
    assert len(more) == 10 and sorted(more[:8]) == sorted(list(range(4)) * 2) and len(set(more[8:])) == 2
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2
    loader = DataLoader(_ds(7), batch_sampler=bs)
    assert [y.tolist() for _, y in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(_ds(7), batch_sampler=bs, batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(_ds(7), sampler=SequentialSampler(range(7)), shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_ds(7), batch_size=0)


def test_collate_dicts_arrays_numbers_strings():
    batch = next(iter(DataLoader(Squares(5), batch_size=3)))
    assert set(batch) == {"x", "y", "name"}
    assert batch["x"].shape == (3, 3) and batch["x"].dtype == nf.float32
    assert batch["y"].tolist() == [0, 1, 4] and batch["y"].dtype == nf.int64
    assert batch["name"] == ["s0", "s1", "s2"]
    out = default_collate([(1.5, True, np.int32(3), "a"), (2.5, False, np.int32(4), "b")])
    assert isinstance(out, list) and out[0].dtype == nf.float32 and out[1].dtype == nf.bool
    assert out[2].dtype == nf.int32 and out[3] == ["a", "b"]
    Point = namedtuple("Point", "x y")
    p = default_collate([Point(nf.zeros(2), 1), Point(nf.ones(2), 2)])
    assert isinstance(p, Point) and p.x.shape == (2, 2) and p.y.tolist() == [1, 2]
    nested = default_collate([[nf.zeros(2), {"a": 1}], [nf.ones(2), {"a": 2}]])
    assert nested[0].shape == (2, 2) and nested[1]["a"].tolist() == [1, 2]


def test_collate_matches_torch_structure():
    samples = [(np.arange(3, dtype=np.float32) + i, i) for i in range(4)]
    ours = default_collate(samples)
    theirs = torch.utils.data.default_collate(samples)
    assert type(ours) is type(theirs)
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0].numpy())
    np.testing.assert_array_equal(ours[1].numpy(), theirs[1].numpy())


def test_collate_errors():
    with pytest.raises(RuntimeError, match="equal shapes"):
        default_collate([nf.zeros(2), nf.zeros(3)])
    with pytest.raises(RuntimeError, match="keys"):
        default_collate([{"a": 1}, {"b": 2}])
    with pytest.raises(TypeError, match="object"):
        default_collate([object(), object()])


def test_pad_sequence_matches_torch():
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, 3)).astype(np.float32) for n in (4, 1, 6)]
    for batch_first in (False, True):
        for side in ("right", "left"):
            ours = pad_sequence([nf.tensor(s) for s in seqs], batch_first=batch_first, padding_value=-1.0,
                                padding_side=side)
            theirs = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=batch_first,
                                                     padding_value=-1.0, padding_side=side)
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert nn_pad_sequence is pad_sequence


def test_pad_sequence_grad():
    a = nf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = nf.tensor([4.0], requires_grad=True)
    out = pad_sequence([a, b], batch_first=False, padding_side="left")  # (3, 2)
    (out * nf.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    assert a.grad.tolist() == [1.0, 3.0, 5.0] and b.grad.tolist() == [6.0]
    with pytest.raises(ValueError, match="trailing dims"):
        pad_sequence([nf.zeros(2, 3), nf.zeros(2, 4)])


def test_pad_collate():
    samples = [{"input_ids": [5, 6, 7], "labels": [1, 1, 1], "y": 0},
               {"input_ids": [8], "labels": [2], "y": 1}]
    out = PadCollate(padding_value={"labels": -100})(samples)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and out["input_ids"].dtype == nf.int64
    assert out["labels"].tolist() == [[1, 1, 1], [2, -100, -100]]
    assert out["y"].tolist() == [0, 1] and out["lengths"].tolist() == [3, 1]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = PadCollate(keys=["input_ids"], padding_side="left")([{"input_ids": s["input_ids"], "y": s["y"]}
                                                                for s in samples])
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]] and left["y"].tolist() == [0, 1]
    with pytest.raises(RuntimeError, match="equal size"):  # ragged labels not selected for padding
        PadCollate(keys=["input_ids"])(samples)
    seqs, labels, lengths = PadCollate()([(nf.tensor([1.0, 2.0]), 3), (nf.tensor([4.0]), 5)])
    assert seqs.tolist() == [[1.0, 2.0], [4.0, 0.0]] and labels.tolist() == [3, 5] and lengths.tolist() == [2, 1]
    padded, lengths = PadCollate(padding_value=9)([np.array([1, 2]), np.array([3, 4, 5])])
    assert padded.tolist() == [[1, 2, 9], [3, 4, 5]] and lengths.tolist() == [2, 3]
    loader = DataLoader([[1.5, 2.5], [3.5]], batch_size=2, collate_fn=PadCollate())
    padded, lengths = next(iter(loader))
    assert padded.dtype == nf.float32 and padded.tolist() == [[1.5, 2.5], [3.5, 0.0]]


def test_random_split():
    ds = _ds(10)
    a, b, c = random_split(ds, [5, 3, 2], generator=nf.Generator().manual_seed(0))
    assert (len(a), len(b), len(c)) == (5, 3, 2)
    got = sorted(a.indices + b.indices + c.indices)
    assert got == list(range(10))
    fa, fb = random_split(range(11), [0.7, 0.3], generator=nf.Generator().manual_seed(0))
    assert (len(fa), len(fb)) == (8, 3)  # floor(7.7)=7, floor(3.3)=3, the leftover goes to the first
    again = random_split(ds, [5, 3, 2], generator=nf.Generator().manual_seed(0))
    assert again[0].indices == a.indices
    with pytest.raises(ValueError, match="summing"):
        random_split(ds, [5, 6])


def test_subset_and_concat():
    ds = _ds(6)
    sub = Subset(ds, [4, 0, 2])
    assert len(sub) == 3 and sub[0][1].item() == 4 and sub[2][1].item() == 2
    assert [y.tolist() for _, y in DataLoader(sub, batch_size=2)] == [[4, 0], [2]]
    cat = ConcatDataset([Subset(ds, [1, 2]), ds])
    assert len(cat) == 8 and cat[1][1].item() == 2 and cat[2][1].item() == 0 and cat[-1][1].item() == 5
    assert len(Subset(ds, [0]) + ds) == 7
    with pytest.raises(IndexError):
        cat[8]


def test_iterable_dataset():
    loader = DataLoader(Stream(7), batch_size=3)
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches[0][0].dtype == nf.float32
    assert [b[1].tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert list(DataLoader(Stream(2), batch_size=None)) == [(0.0, 0), (1.0, 1)]
    with pytest.raises(ValueError, match="IterableDataset"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(TypeError):
        len(DataLoader(Stream(3), batch_size=2))


def test_tensor_dataset_checks():
    with pytest.raises(ValueError, match="same size in dim 0"):
        TensorDataset(nf.zeros(3, 2), nf.zeros(4))
    ds = TensorDataset(np.arange(6).reshape(3, 2), nf.zeros(3))
    assert ds[1][0].tolist() == [2, 3] and len(ds) == 3
