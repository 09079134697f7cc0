"""nnforge: a deep-learning framework written from scratch on NumPy.

``import nnforge as nf``; the public API follows PyTorch's names and semantics (see shared/API.md).
"""
from ._native_env import apply_openblas_defaults as _apply_openblas_defaults

# before NumPy loads: OpenBLAS reads its settings once, then (see _native_env)
_apply_openblas_defaults()

from .backend.host_memory import keep_large_blocks as _keep_large_blocks  # noqa: E402

_keep_large_blocks()  # large activations reuse heap memory instead of fresh pages (see host_memory)

from . import _methods  # noqa: F401  (attaches ops to Tensor)
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import Device, device
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones,
                       ones_like, rand, rand_like, randint, randn, randn_like, randperm, tensor, zeros, zeros_like)
from .dtypes import (bool_ as bool, double, float, float16, float32, float64, get_default_dtype, half, int,  # noqa: A004
                     int8, int16, int32, int64, long, uint8)
from .ops.activation import log_softmax, softmax
from .ops.arithmetic import add, div, divide, floor_divide, matmul, mul, multiply, neg, pow, remainder, sub, subtract
from .ops.comparison import (all, allclose, any, eq, equal, ge, gt, isfinite, isinf, isnan, le, logical_and,
                             logical_not, logical_or, lt, ne)
from .ops.indexing import gather, index_select, masked_fill, tril, triu, where
from .ops.join import cat, chunk, concat, split, stack, unbind
from .ops.math import (abs, ceil, clamp, clip, cos, erf, exp, floor, log, log1p, maximum, minimum, relu, round,
                       rsqrt, sigmoid, sign, sin, sqrt, tanh, trunc)
from .ops.reduction import (amax, amin, argmax, argmin, cumsum, logsumexp, max, mean, min, norm, prod, std, sum,
                            var)
from .ops.shape import (broadcast_to, clone, contiguous, expand, flatten, permute, reshape, squeeze, t, transpose,
                        unflatten, unsqueeze)
from .random import Generator, get_rng_state, initial_seed, manual_seed, set_rng_state
from .tensor import Tensor
from . import nn  # noqa: E402
from . import optim  # noqa: E402
from . import utils  # noqa: E402
from .serialization import load, save  # noqa: E402
from . import metrics, train  # noqa: E402
from . import distributed  # noqa: E402

__version__ = "0.1.0"
