"""``pad_sequence`` (torch.nn.utils.rnn): stack variable-length sequences into one padded tensor."""
from __future__ import annotations

from typing import Any, Sequence

from ...autograd.function import Function
from ...tensor import Tensor

__all__ = ["pad_sequence"]


class PadSequence(Function):
    """Place sequences ``(L_i, *)`` in a ``(B, T, *)`` (or ``(T, B, *)``) array filled with ``padding_value``;
    backward slices each sequence's rows out of the gradient."""

    uses_inputs = False

    def forward(self, *seqs: Any, batch_first: bool, padding_value: float, padding_side: str) -> Any:
        xp = self.backend.xp
        longest = max(s.shape[0] for s in seqs)
        batch = (len(seqs), longest) if batch_first else (longest, len(seqs))
        out = xp.full(batch + seqs[0].shape[1:], padding_value, dtype=seqs[0].dtype)
        self.spans = []
        for i, s in enumerate(seqs):
            start = 0 if padding_side == "right" else longest - s.shape[0]
            span = slice(start, start + s.shape[0])
            self.spans.append(span)
            if batch_first:
                out[i, span] = s
            else:
                out[span, i] = s
        self.batch_first = batch_first
        return out

    def backward(self, g: Any) -> tuple:
        if self.batch_first:
            return tuple(g[i, span] if need else None
                         for i, (span, need) in enumerate(zip(self.spans, self.needs_input_grad)))
        return tuple(g[span, i] if need else None
                     for i, (span, need) in enumerate(zip(self.spans, self.needs_input_grad)))


def pad_sequence(sequences: Sequence[Any], batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Pad a list of tensors of shapes ``(L_i, *)`` to the longest length ``T``.

    Returns ``(B, T, *)`` if ``batch_first`` else ``(T, B, *)``; ``padding_side="left"`` puts the padding
    before each sequence. Differentiable. NumPy arrays and lists are accepted and converted.

    Example:
        >>> pad_sequence([nf.tensor([1, 2, 3]), nf.tensor([4])], batch_first=True)
        tensor([[1, 2, 3],
                [4, 0, 0]])
    """
    from ...creation import as_tensor

    if padding_side not in ("left", "right"):
        raise ValueError(f"pad_sequence: padding_side must be 'left' or 'right', got {padding_side!r}")
    seqs = [s if isinstance(s, Tensor) else as_tensor(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequence: received an empty list of sequences")
    first = seqs[0]
    for i, s in enumerate(seqs):
        if s.ndim == 0:
            raise ValueError(f"pad_sequence: sequence {i} is 0-d; expected tensors of shape (L, *)")
        if s.shape[1:] != first.shape[1:] or s.dtype != first.dtype:
            raise ValueError(f"pad_sequence: sequence {i} has shape {tuple(s.shape)} and dtype {s.dtype}, but "
                             f"sequence 0 has shape {tuple(first.shape)} and dtype {first.dtype}; all must share "
                             f"the trailing dims and the dtype")
    return PadSequence.apply(*seqs, batch_first=batch_first, padding_value=padding_value,
                             padding_side=padding_side)
