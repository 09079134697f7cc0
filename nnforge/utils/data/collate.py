"""Collate functions: turn a list of samples into a batch (``default_collate``, ``PadCollate``).

Host-side code: NumPy is used directly to assemble batches before they become tensors.
"""
from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np

from ...tensor import Tensor


def default_collate(batch: list) -> Any:
    """Stack a list of samples into a batch, recursing into containers like torch's ``default_collate``.

    Tensors and NumPy arrays are stacked along a new dim 0; Python ints become int64 tensors, bools bool
    tensors, floats float32 tensors (torch makes float64: deviation, floats here follow nnforge's default
    dtype); strings and bytes stay lists; dicts collate per key; namedtuples keep their type; other
    sequences (tuples included, as in torch) become lists of collated fields.

    Example:
        >>> default_collate([(nf.zeros(3), 1), (nf.ones(3), 0)])
        [tensor of shape (2, 3), tensor([1, 0])]
    """
    from ...creation import from_numpy
    from ...ops.join import stack

    if not batch:
        raise ValueError("default_collate: received an empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) != 1:
            raise RuntimeError(f"default_collate: tensors in a batch must have equal shapes, got {sorted(shapes)} "
                               f"(pad variable-length samples with PadCollate)")
        return stack(batch, 0)
    if isinstance(elem, (np.ndarray, np.generic)):
        if elem.dtype.kind in "USO":
            if isinstance(elem, np.ndarray):
                raise TypeError(f"default_collate: batch has NumPy arrays of dtype {elem.dtype}; expected numbers")
            return [b.item() for b in batch]
        try:
            return from_numpy(np.stack([np.asarray(b) for b in batch]))
        except ValueError:
            raise RuntimeError(f"default_collate: arrays in a batch must have equal shapes, got "
                               f"{sorted({np.shape(b) for b in batch})} (pad them with PadCollate)") from None
    if isinstance(elem, bool):
        return from_numpy(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return from_numpy(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return from_numpy(np.array(batch, dtype=np.float32))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        keys = list(elem)
        for i, b in enumerate(batch):
            if set(b) != set(keys):
                raise RuntimeError(f"default_collate: sample {i} has keys {sorted(b)} but sample 0 has "
                                   f"{sorted(keys)}")
        return {k: default_collate([b[k] for b in batch]) for k in keys}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError("default_collate: each element in a list batch should be of equal size")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, NumPy arrays, numbers, dicts or lists; "
                    f"found {type(elem).__name__}")


def _is_sequence_field(x: Any) -> bool:
    """True for what PadCollate pads: 1+-d tensors/arrays and lists/tuples of numbers."""
    if isinstance(x, Tensor):
        return x.ndim >= 1
    if isinstance(x, np.ndarray):
        return x.ndim >= 1
    return isinstance(x, (list, tuple)) and all(isinstance(v, (int, float, np.generic)) for v in x)


class PadCollate:
    """Collate samples holding variable-length sequences by right- (or left-) padding them.

    Samples may be dicts, tuples/lists of fields, or bare sequences. The fields padded are those named in
    ``keys`` (dict keys or tuple positions), or by default every field holding 1+-d tensors/arrays or lists
    of numbers; the rest go through ``default_collate``. ``padding_value`` is a number or a dict
    ``{key: value}`` (e.g. ``{"labels": -100}``; missing keys pad with 0).

    Returns (padded tensors are ``(B, T, *)``; ``lengths`` are the true lengths of the first padded field,
    int64 ``(B,)``; ``attention_mask`` is int64 ``(B, T)``, 1 on real positions):
        - dict samples: the collated dict plus ``"lengths"`` and, unless present, ``"attention_mask"``;
        - tuple/list samples: ``[*collated_fields, lengths]``;
        - bare sequences (tensors, arrays, lists of numbers): ``(padded, lengths)``.

    Example:
        >>> loader = DataLoader(ds, batch_size=8, collate_fn=PadCollate(keys=["input_ids"]))
    """

    def __init__(self, padding_value: Any = 0, keys: Any = None, padding_side: str = "right") -> None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"PadCollate: padding_side must be 'left' or 'right', got {padding_side!r}")
        self.padding_value = padding_value
        self.keys = None if keys is None else list(keys)
        self.padding_side = padding_side

    def _value(self, key: Any) -> Any:
        if isinstance(self.padding_value, dict):
            return self.padding_value.get(key, 0)
        return self.padding_value

    def _pad(self, items: list, key: Any) -> tuple:
        from ...creation import as_tensor, from_numpy
        from ...nn.utils.rnn import pad_sequence

        seqs = [x if isinstance(x, Tensor) else as_tensor(x) for x in items]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        padded = pad_sequence(seqs, batch_first=True, padding_value=self._value(key),
                              padding_side=self.padding_side)
        return padded, from_numpy(lengths)

    def _mask(self, lengths: Tensor, total: int) -> Tensor:
        from ...creation import from_numpy

        pos = np.arange(total)[None, :]
        n = lengths.numpy()[:, None]
        real = pos < n if self.padding_side == "right" else pos >= total - n
        return from_numpy(real.astype(np.int64))

    def _selected(self, key: Any, items: list) -> bool:
        return key in self.keys if self.keys is not None else all(_is_sequence_field(x) for x in items)

    def __call__(self, batch: list) -> Any:
        if not batch:
            raise ValueError("PadCollate: received an empty batch")
        elem = batch[0]
        if isinstance(elem, collections.abc.Mapping):
            out: dict = {}
            lengths = None
            for key in elem:
                items = [b[key] for b in batch]
                if self._selected(key, items):
                    out[key], lens = self._pad(items, key)
                    lengths = lens if lengths is None else lengths
                else:
                    out[key] = default_collate(items)
            if lengths is not None:
                out["lengths"] = lengths
                if "attention_mask" not in out:
                    first = next(k for k in elem if self._selected(k, [b[k] for b in batch]))
                    out["attention_mask"] = self._mask(lengths, out[first].shape[1])
            return out
        if isinstance(elem, (Tensor, np.ndarray)) or isinstance(elem, list) and _is_sequence_field(elem):
            return self._pad(list(batch), None)
        if isinstance(elem, (list, tuple)):
            fields, lengths = [], None
            for i, items in enumerate(zip(*batch)):
                items = list(items)
                if self._selected(i, items):
                    padded, lens = self._pad(items, i)
                    fields.append(padded)
                    lengths = lens if lengths is None else lengths
                else:
                    fields.append(default_collate(items))
            return fields + ([lengths] if lengths is not None else [])
        return default_collate(batch)
