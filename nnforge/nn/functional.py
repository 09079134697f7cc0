"""Stateless neural-network functions (``torch.nn.functional`` names)."""
from __future__ import annotations

from ..ops.activation import gelu, log_softmax, silu, softmax
from ..ops.attention import scaled_dot_product_attention
from ..ops.math import relu, sigmoid, tanh
from ..ops.dropout import dropout
from ..ops.embedding import embedding
from ..ops.linear import leaky_relu, linear
from ..ops.loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cosine_similarity, cross_entropy,
                        l1_loss, mse_loss, nll_loss, normalize, one_hot, pad, smooth_l1_loss)
from ..ops.normalization import batch_norm, layer_norm, rms_norm
from ..ops.conv import conv1d, conv2d
from ..ops.pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d,
                           max_pool2d)

__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "log_softmax"]
__all__ += ["scaled_dot_product_attention"]
__all__ += ["linear", "leaky_relu", "dropout", "embedding", "layer_norm", "rms_norm", "batch_norm", "cross_entropy",
            "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
            "smooth_l1_loss", "cosine_similarity", "normalize", "one_hot", "pad"]
__all__ += ["conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
            "adaptive_avg_pool2d"]
