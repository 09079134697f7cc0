"""BERT (Devlin et al. 2018) with Hugging Face's module and parameter names, so checkpoints load unchanged.

Every ``state_dict`` key equals transformers' (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ..., ``pooler.dense.weight``; heads add ``bert.`` in front
and their own ``classifier.*`` / ``cls.predictions.*``), so there is no key rename and no transpose: a
Hugging Face directory (``config.json`` + weights) loads as is, and ``save_pretrained`` writes one back.

Deviations from transformers (all internal, numerically equivalent up to float rounding):
- self-attention runs the query/key/value projections as one (3E, E) GEMM over the concatenated weights
  and one fused attention kernel (``packed_self_attention``); the three ``nn.Linear`` parameters stay as
  they are in the checkpoint.
- only the encoder (``is_decoder=False``, absolute positions) is implemented: no cross-attention, no KV cache.

>>> model = BertModel.from_pretrained("all-MiniLM-L6-v2")
>>> out = model(input_ids, attention_mask=attention_mask)
>>> out.last_hidden_state.shape      # (B, T, 384)
"""
from __future__ import annotations

from typing import Any, ClassVar

from .. import dtypes as _dt
from ..autograd.grad_mode import no_grad
from ..creation import arange, zeros
from ..nn import init
from ..nn.modules.activation import GELU, ReLU, SiLU, Tanh
from ..nn.modules.container import ModuleList
from ..nn.modules.dropout import Dropout
from ..nn.modules.linear import Linear
from ..nn.modules.module import Module
from ..nn.modules.normalization import LayerNorm
from ..nn.modules.sparse import Embedding
from ..nn.parameter import Parameter
from ..ops.attention import packed_self_attention
from ..ops.join import cat
from ..ops.linear import linear, linear_gelu
from ..ops.loss import binary_cross_entropy_with_logits, cross_entropy, mse_loss
from ..ops.normalization import add_layer_norm
from ..tensor import Tensor
from ..utils.checkpoint import checkpoint
from .configuration import PretrainedConfig
from .modeling_utils import PreTrainedModel
from .outputs import BaseModelOutputWithPooling, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput

__all__ = ["BertConfig", "BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification",
           "BertModel", "BertPreTrainedModel"]


class BertConfig(PretrainedConfig):
    """BERT hyper-parameters; the defaults are transformers' ``BertConfig()`` (bert-base-uncased)."""

    model_type = "bert"
    defaults: ClassVar[dict] = {
        "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "use_cache": True,
        "classifier_dropout": None, "is_decoder": False, "add_cross_attention": False, "bos_token_id": None,
        "eos_token_id": None, "tie_word_embeddings": True, "problem_type": None,
    }


# transformers' ACT2FN names -> modules ("gelu" is the exact erf form; "gelu_new" the tanh approximation)
_ACTIVATIONS = {"gelu": lambda: GELU(), "gelu_new": lambda: GELU("tanh"), "gelu_pytorch_tanh": lambda: GELU("tanh"),
                "relu": ReLU, "silu": SiLU, "swish": SiLU, "tanh": Tanh}


def _activation(name: str) -> Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"BertConfig: hidden_act '{name}' is not supported (supported: "
                         f"{', '.join(sorted(_ACTIVATIONS))})")
    return _ACTIVATIONS[name]()


def _add_norm(norm: Module, x: Tensor, residual: Tensor) -> Tensor:
    """``norm(x + residual)``; for nnforge's own LayerNorm the sum is formed inside its pass."""
    if type(norm) is LayerNorm:
        return add_layer_norm(x, residual, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return norm(x + residual)


def _dense_add_norm(dense: Module, dropout: Dropout, norm: Module, x: Tensor, residual: Tensor) -> Tensor:
    """``norm(dropout(dense(x)) + residual)``. For nnforge's own Linear and LayerNorm with no dropout active
    the dense layer's bias is added inside the normalisation's pass instead of over its output first."""
    if type(dense) is Linear and type(norm) is LayerNorm and dense.bias is not None \
            and (not dropout.training or dropout.p == 0) and x.shape[-1:] == (dense.in_features,):
        return add_layer_norm(linear(x, dense.weight), residual, norm.normalized_shape, norm.weight, norm.bias,
                              norm.eps, input_bias=dense.bias)
    return _add_norm(norm, dropout(dense(x)), residual)


def _as_tensor(x: Any, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x, device=like.device)


class BertEmbeddings(Module):
    """word + token_type + position embeddings, then LayerNorm and dropout. (B, T) ids -> (B, T, H)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        # non-persistent, as in transformers: checkpoints that carry it (MiniLM's) list it as unexpected
        self.register_buffer("position_ids", arange(config.max_position_embeddings, dtype=_dt.int64).reshape(1, -1),
                             persistent=False)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None) -> Tensor:
        B, T = input_ids.shape
        n_pos = self.position_embeddings.num_embeddings
        if T > n_pos:
            raise ValueError(f"BertEmbeddings: sequence length {T} exceeds max_position_embeddings {n_pos}")
        if position_ids is None:
            position_ids = self.position_ids[:, :T]  # (1, T), broadcast over the batch
        if token_type_ids is None:
            token_type_ids = zeros(B, T, dtype=_dt.int64, device=input_ids.device)
        # same addition order as transformers: (word + token_type) + position
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(Module):
    """Multi-head self-attention; ``query``/``key``/``value`` are (E, E) Linears as in the checkpoint."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"BertSelfAttention: hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = config.hidden_size
        self.query = Linear(config.hidden_size, self.all_head_size)
        self.key = Linear(config.hidden_size, self.all_head_size)
        self.value = Linear(config.hidden_size, self.all_head_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        B, T, E = hidden_states.shape
        h, d = self.num_attention_heads, self.attention_head_size
        projections = (self.query, self.key, self.value)
        # a LoRA adapter (nnforge.peft.LoraLinear) keeps the projection as ``base_layer`` and adds its update
        bases = [getattr(m, "base_layer", m) for m in projections]
        if all(type(m) is Linear for m in bases):
            # one GEMM for q, k and v: (B, T, E) @ (E, 3E) -> (B, T, 3E)
            w = cat([m.weight for m in bases])
            b = cat([m.bias for m in bases])
            qkv = linear(hidden_states, w, b)
            if any(m is not base for m, base in zip(projections, bases)):
                parts = qkv.chunk(3, dim=-1)
                qkv = cat([part if m is base else m.adapter_forward(hidden_states, part)
                           for m, base, part in zip(projections, bases, parts)], dim=-1)
        else:  # other wrappers run their own forward
            qkv = cat([m(hidden_states) for m in projections], dim=-1)
        qkv = qkv.reshape(B, T, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, B, h, T, d) as a view
        p = self.dropout.p if self.training else 0.0
        out = packed_self_attention(qkv, attention_mask, p)  # (B, h, T, d), softmax(q k^T / sqrt(d) + mask) v
        return out.permute(0, 2, 1, 3).reshape(B, T, E)


class BertSelfOutput(Module):
    """dense -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return _dense_add_norm(self.dense, self.dropout, self.LayerNorm, hidden_states, input_tensor)


class BertAttention(Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(Module):
    """dense (H -> intermediate_size) -> hidden_act."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = _activation(config.hidden_act)

    def forward(self, hidden_states: Tensor) -> Tensor:
        act = self.intermediate_act_fn
        # nnforge's own Linear and GELU only (not e.g. a LoRA-wrapped layer); a wrong width gets Linear's error
        if type(self.dense) is Linear and type(act) is GELU and hidden_states.shape[-1:] == (self.dense.in_features,):
            return linear_gelu(hidden_states, self.dense.weight, self.dense.bias, act.approximate)
        return act(self.dense(hidden_states))


class BertOutput(Module):
    """dense (intermediate_size -> H) -> dropout -> LayerNorm(x + residual)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        return _dense_add_norm(self.dense, self.dropout, self.LayerNorm, hidden_states, input_tensor)


class BertLayer(Module):
    """Post-LN transformer block: attention (+ residual, LN), then feed-forward (+ residual, LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        attention_output = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False  # set by PreTrainedModel.gradient_checkpointing_enable()

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None,
                output_hidden_states: bool = False) -> tuple:
        """Returns (last hidden state, tuple of the input and every layer's output, or None)."""
        all_hidden = (hidden_states,) if output_hidden_states else None
        for layer in self.layer:
            if self.gradient_checkpointing and self.training:
                hidden_states = checkpoint(layer, hidden_states, attention_mask)
            else:
                hidden_states = layer(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden += (hidden_states,)
        return hidden_states, all_hidden


class BertPooler(Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = Tanh()

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class BertPreTrainedModel(PreTrainedModel):
    """Shared config class, prefix and weight initialisation (transformers' ``_init_weights``)."""

    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig) -> None:
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise NotImplementedError(f"{type(self).__name__}: only the BERT encoder is implemented "
                                      f"(is_decoder and add_cross_attention must be False)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError(f"{type(self).__name__}: position_embedding_type "
                                      f"'{config.position_embedding_type}' is not supported (only 'absolute')")
        super().__init__(config)

    def _init_weights(self, module: Module) -> None:
        """N(0, initializer_range) for Linear and Embedding weights (padding row zeroed), zero biases,
        LayerNorm weight 1 / bias 0, the MLM output bias 0."""
        std = self.config.initializer_range
        if isinstance(module, Linear):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, Embedding):
            init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with no_grad():
                    module.weight[module.padding_idx] = 0
        elif isinstance(module, LayerNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            init.zeros_(module.bias)

    def post_init(self) -> None:
        """Initialise the weights like transformers, then tie shared weights. A nested BERT backbone
        initialised itself already, so a task model initialises only its head."""
        for child in self.children():
            if not isinstance(child, BertPreTrainedModel):
                child.apply(self._init_weights)
        self.tie_weights()


def _extended_attention_mask(attention_mask: Any, like: Tensor) -> Tensor | None:
    """(B, S) mask (1/True = attend, 0/False = padding) -> additive (B, 1, 1, S) float mask of 0 / -inf,
    or None when nothing is masked (the fast path)."""
    B, S = like.shape[:2]
    mask = _as_tensor(attention_mask, like)
    if tuple(mask.shape) != (B, S):
        raise ValueError(f"BertModel: attention_mask must have shape (batch, seq) = {(B, S)}, got "
                         f"{tuple(mask.shape)}")
    xp = like._backend.xp
    keep = mask.data != 0
    if keep.all():
        return None
    add = xp.where(keep, like.dtype.type(0), like.dtype.type(-xp.inf))
    return Tensor._make(add.reshape(B, 1, 1, S), like._device)


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, ``num_hidden_layers`` BertLayers and (optionally) the [CLS] pooler.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
    output_hidden_states=False)`` -> ``BaseModelOutputWithPooling`` with ``last_hidden_state`` (B, T, H),
    ``pooler_output`` (B, H) (None without the pooler) and ``hidden_states`` (embeddings + each layer).
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                position_ids: Any = None, output_hidden_states: bool = False) -> BaseModelOutputWithPooling:
        like = self.embeddings.word_embeddings.weight
        input_ids = _as_tensor(input_ids, like)
        if input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
            raise ValueError(f"BertModel: input_ids must be integer token ids of shape (batch, seq), got "
                             f"{input_ids.dtype} of shape {tuple(input_ids.shape)}")
        if token_type_ids is not None:
            token_type_ids = _as_tensor(token_type_ids, like)
        if position_ids is not None:
            position_ids = _as_tensor(position_ids, like)
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = None if attention_mask is None else _extended_attention_mask(attention_mask, hidden)
        sequence_output, all_hidden = self.encoder(hidden, mask, output_hidden_states)
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled,
                                          hidden_states=all_hidden)


def _classifier_dropout(config: BertConfig) -> float:
    p = config.get("classifier_dropout")
    return config.hidden_dropout_prob if p is None else p


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT + dropout + Linear(H, num_labels) on the pooled [CLS] output.

    With ``labels`` the loss follows ``config.problem_type``; when unset it is chosen as transformers does
    (and stored in the config): num_labels == 1 -> "regression" (MSE), integer labels ->
    "single_label_classification" (cross entropy), otherwise "multi_label_classification" (BCE with logits).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = Dropout(_classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                position_ids: Any = None, labels: Any = None,
                output_hidden_states: bool = False) -> SequenceClassifierOutput:
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, _as_tensor(labels, logits))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.config.get("problem_type") is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype.kind in "iu":
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        problem = self.config.problem_type
        if problem == "regression":
            labels = labels.to(logits.dtype)
            if self.num_labels == 1:
                return mse_loss(logits.squeeze(), labels.squeeze())
            return mse_loss(logits, labels)
        if problem == "single_label_classification":
            return cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1))
        if problem == "multi_label_classification":
            return binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        raise ValueError(f"BertForSequenceClassification: unknown problem_type '{problem}' (expected "
                         f"'regression', 'single_label_classification' or 'multi_label_classification')")


class BertForTokenClassification(BertPreTrainedModel):
    """BERT (no pooler) + dropout + Linear(H, num_labels) per token; loss is cross entropy ignoring -100."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = Dropout(_classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                position_ids: Any = None, labels: Any = None,
                output_hidden_states: bool = False) -> TokenClassifierOutput:
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            labels = _as_tensor(labels, logits)
            loss = cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1), ignore_index=-100)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class BertPredictionHeadTransform(Module):
    """dense -> hidden_act -> LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = _activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(Module):
    """transform, then ``decoder`` (H -> vocab); decoder.weight is tied to the word embeddings and
    decoder.bias is the ``bias`` parameter (the checkpoint's ``cls.predictions.bias``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = Linear(config.hidden_size, config.vocab_size)
        self.bias = Parameter(zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return self.predictions(sequence_output)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT (no pooler) + the masked-language-model head; loss is cross entropy over the vocabulary,
    ignoring label -100 (unmasked positions)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        # shared with other parameters, so not stored in checkpoints (transformers omits them too)
        self._tied_weights_keys = (("cls.predictions.decoder.weight",) if config.tie_word_embeddings else ()) + \
            ("cls.predictions.decoder.bias",)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> Linear:
        return self.cls.predictions.decoder

    def tie_weights(self) -> None:
        """decoder.weight <- word embeddings (when ``tie_word_embeddings``), decoder.bias <- cls.predictions.bias."""
        head = self.cls.predictions
        if self.config.tie_word_embeddings:
            head.decoder.weight = self.bert.embeddings.word_embeddings.weight
        head.decoder.bias = head.bias

    def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                position_ids: Any = None, labels: Any = None, output_hidden_states: bool = False) -> MaskedLMOutput:
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states)
        logits = self.cls(outputs.last_hidden_state)  # (B, T, vocab)
        loss = None
        if labels is not None:
            labels = _as_tensor(labels, logits)
            loss = cross_entropy(logits.reshape(-1, self.config.vocab_size), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
