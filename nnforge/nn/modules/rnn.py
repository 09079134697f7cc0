"""Recurrent layers: RNN, LSTM, GRU (multi-layer, bidirectional) and the single-step RNNCell, LSTMCell, GRUCell.

Each layer and direction runs as one fused Function from ``nnforge/ops/rnn.py`` (input projection as one GEMM,
a Python loop over timesteps, hand-written backpropagation through time). Parameter names, shapes, gate order
and initialisation follow torch, so torch state dicts load unchanged.

Not supported (deviations from torch): ``PackedSequence`` inputs (pad and mask instead) and LSTM ``proj_size``.
"""
from __future__ import annotations

import math
from typing import Any

from ... import dtypes as _dt
from ...creation import empty
from ...ops.dropout import dropout as _dropout
from ...ops.join import cat, stack
from ...ops.rnn import GRULayer, LSTMLayer, RNNLayer, unpack
from ...tensor import Tensor
from .. import init
from ..parameter import Parameter
from .module import Module

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _layer_fn(mode: str) -> tuple:
    """(Function, extra keyword arguments) running one layer of ``mode``."""
    if mode == "LSTM":
        return LSTMLayer, {}
    if mode == "GRU":
        return GRULayer, {}
    return RNNLayer, {"relu": mode == "RNN_RELU"}


def _new_param(shape: tuple, dtype: Any, device: Any) -> Parameter:
    dt = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
    return Parameter(empty(*shape, dtype=dt, device=device))


class RNNBase(Module):
    """Shared implementation of RNN, LSTM and GRU (torch.nn.RNNBase)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the probability "
                             f"of an element being zeroed, got {dropout!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive integer, got {num_layers!r}")
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size is not supported by nnforge (got {proj_size})")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        gates = _GATES[mode] * hidden_size
        dirs = 2 if bidirectional else 1
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * dirs
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                setattr(self, "weight_ih" + sfx, _new_param((gates, in_size), dtype, device))
                setattr(self, "weight_hh" + sfx, _new_param((gates, hidden_size), dtype, device))
                if bias:
                    setattr(self, "bias_ih" + sfx, _new_param((gates,), dtype, device))
                    setattr(self, "bias_hh" + sfx, _new_param((gates,), dtype, device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as in torch."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def flatten_parameters(self) -> None:
        """No-op, for compatibility with torch code (weights are never flattened here)."""

    def _weights(self, layer: int, d: int) -> list:
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else ("weight_ih", "weight_hh")
        w = [getattr(self, n + sfx) for n in names]
        return w if self.bias else w + [None, None]

    def _check_input(self, input: Any) -> None:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__} (PackedSequence "
                            f"inputs are not supported; pad the batch instead)")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: expected input to be 2-D (unbatched) or 3-D, got {input.ndim}-D tensor of "
                             f"shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.shape[-1]} (input shape {tuple(input.shape)})")

    def _check_state(self, s: Any, batched: bool, batch: int, what: str) -> None:
        dirs = 2 if self.bidirectional else 1
        expected = (self.num_layers * dirs, batch, self.hidden_size) if batched else \
            (self.num_layers * dirs, self.hidden_size)
        if not isinstance(s, Tensor) or tuple(s.shape) != expected:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise RuntimeError(f"{type(self).__name__}: expected {what} of shape {expected}, got {got}")

    def forward(self, input: Tensor, hx: Any = None) -> tuple:
        """Returns ``(output, h_n)`` (``(output, (h_n, c_n))`` for LSTM).

        Shape: input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or (L, H_in) unbatched;
        output (L, N, D * H), h_n and c_n (D * num_layers, N, H), with D = 2 if bidirectional else 1.
        """
        self._check_input(input)
        lstm = self.mode == "LSTM"
        batched = input.ndim == 3
        if not batched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        T, B = x.shape[0], x.shape[1]
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise RuntimeError("LSTM: expected hx to be a tuple (h_0, c_0)")
                h0, c0 = hx
                self._check_state(h0, batched, B, "h_0")
                self._check_state(c0, batched, B, "c_0")
            else:
                self._check_state(hx, batched, B, "hx")
                h0 = hx
            if not batched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
        fn, kwargs = _layer_fn(self.mode)
        dirs = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                idx = layer * dirs + d
                states = (None if h0 is None else h0[idx],)
                if lstm:
                    states += (None if c0 is None else c0[idx],)
                packed = fn.apply(x, *self._weights(layer, d), *states, reverse=bool(d), **kwargs)
                parts = unpack(packed, T, bool(d), cell=lstm)
                outs.append(parts[0])
                h_n.append(parts[1])
                if lstm:
                    c_n.append(parts[2])
            x = outs[0] if dirs == 1 else cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = _dropout(x, self.dropout, True)
        h = stack(h_n, 0)
        c = stack(c_n, 0) if lstm else None
        if not batched:
            x, h = x.squeeze(1), h.squeeze(1)
            c = c.squeeze(1) if lstm else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        return (x, (h, c)) if lstm else (x, h)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act = tanh or relu.

    >>> rnn = nf.nn.RNN(10, 20, num_layers=2)
    >>> out, h_n = rnn(nf.randn(5, 3, 10))      # out (5, 3, 20), h_n (2, 3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}, expected 'tanh' or 'relu'")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory (torch.nn.LSTM); gates (i, f, g, o) stacked in that order in the weights.

    ``proj_size`` is not supported (raises NotImplementedError when non-zero).

    >>> lstm = nf.nn.LSTM(10, 20, batch_first=True)
    >>> out, (h_n, c_n) = lstm(nf.randn(3, 5, 10))   # out (3, 5, 20), h_n and c_n (1, 3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit (torch.nn.GRU); gates (r, z, n), ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``.

    >>> gru = nf.nn.GRU(10, 20, bidirectional=True)
    >>> out, h_n = gru(nf.randn(5, 3, 10))      # out (5, 3, 40), h_n (2, 3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)


class RNNCellBase(Module):
    """One timestep of a recurrent layer; parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = _GATES[self.mode] * hidden_size
        self.weight_ih = _new_param((gates, input_size), dtype, device)
        self.weight_hh = _new_param((gates, hidden_size), dtype, device)
        if bias:
            self.bias_ih = _new_param((gates,), dtype, device)
            self.bias_hh = _new_param((gates,), dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    reset_parameters = RNNBase.reset_parameters

    def _step(self, input: Tensor, states: tuple) -> tuple:
        """Run one step; returns (h', c') as tensors shaped like the (batched or not) input."""
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            got = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{name}: expected input to be 1-D or 2-D, got {got}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected "
                               f"{self.input_size} (input shape {tuple(input.shape)})")
        batched = input.ndim == 2
        expected = (input.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        for s in states:
            if s is not None and tuple(s.shape) != expected:
                raise RuntimeError(f"{name}: expected hidden state of shape {expected}, got {tuple(s.shape)}")
        x = input[None] if batched else input[None, None]  # (1, B, I)
        if not batched:
            states = tuple(None if s is None else s[None] for s in states)
        fn, kwargs = _layer_fn(self.mode)
        packed = fn.apply(x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, *states, **kwargs)
        out = (packed[1], packed[2]) if self.mode == "LSTM" else (packed[1],)
        return out if batched else tuple(o[0] for o in out)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class RNNCell(RNNCellBase):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``; input (N, H_in) or (H_in), hx (N, H) or (H) -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}, expected 'tanh' or 'relu'")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, (hx,))[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: ``(h', c') = cell(input, (h, c))``; hx defaults to zeros."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Any = None) -> tuple:
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise RuntimeError("LSTMCell: expected hx to be a tuple (h, c)")
        return self._step(input, tuple(hx))


class GRUCell(RNNCellBase):
    """One GRU step: ``h' = cell(input, h)``; hx defaults to zeros."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, (hx,))[0]
