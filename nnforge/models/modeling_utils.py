"""``PreTrainedModel``: loading Hugging Face checkpoints into nnforge modules and saving them back.

Architectures subclass it, name their config class and ``base_model_prefix`` (the attribute holding the
backbone, e.g. ``bert``), and may override two hooks that state every key rename and transpose out loud:
``_from_checkpoint_keys`` (checkpoint -> our names/layouts) and ``_to_checkpoint_keys`` (the inverse, used by
``save_pretrained`` so that transformers loads our files).
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..autograd.grad_mode import no_grad
from ..nn.modules.module import Module
from .configuration import PretrainedConfig

_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "xavier_uniform_",
                   "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")


@contextmanager
def no_init_weights():
    """Make ``nnforge.nn.init``'s initialisers no-ops while a model is built only to be overwritten by a
    checkpoint (random init of a 135M-parameter model costs seconds). Parameters keep whatever ``empty`` gave
    them, so use it only when every weight is loaded afterwards (transformers' ``no_init_weights``)."""
    from ..nn import init

    saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS}
    try:
        for name in _INIT_FUNCTIONS:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


class PreTrainedModel(Module):
    config_class: type = PretrainedConfig
    base_model_prefix: str = ""
    _tied_weights_keys: tuple = ()  # our keys that share storage with another parameter (not in checkpoints)

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.config = config

    # -- hooks -------------------------------------------------------------------------------------
    def _from_checkpoint_keys(self, state: dict) -> dict:
        """Rename/transform a checkpoint's arrays to this model's state-dict names and layouts."""
        return state

    def _to_checkpoint_keys(self, state: dict) -> dict:
        """The inverse of ``_from_checkpoint_keys`` (our state dict -> Hugging Face names/layouts)."""
        return state

    def tie_weights(self) -> None:
        """Re-tie shared parameters after loading (e.g. the LM head and the token embedding)."""

    @classmethod
    def _from_gguf(cls, path: Path, **overrides: Any) -> "PreTrainedModel":
        raise ValueError(f"{path}: {cls.__name__} cannot be loaded from a GGUF file")

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        config: PretrainedConfig | None = None, **overrides: Any) -> "PreTrainedModel":
        """Build the model from ``config.json`` (with ``overrides`` such as ``num_labels``) and load the
        checkpoint's weights. Weights the checkpoint lacks (a new task head) are initialised and named in a
        warning; a checkpoint weight whose shape differs from the model's is an error unless
        ``ignore_mismatched_sizes=True`` (then it is re-initialised and reported)."""
        from ..hub import resolve_model_path
        from ..io.checkpoint import load_checkpoint

        path = resolve_model_path(path_or_name)
        if path.is_file() and path.suffix == ".gguf":
            return cls._from_gguf(path, **overrides)
        if config is None:
            config = cls.config_class.from_pretrained(path, **overrides)
        model = cls(config)
        model.load_pretrained_weights(load_checkpoint(path), ignore_mismatched_sizes=ignore_mismatched_sizes,
                                      source=str(path))
        model.eval()
        return model

    def load_pretrained_weights(self, state: dict, ignore_mismatched_sizes: bool = False,
                                source: str = "checkpoint") -> dict:
        """Load a checkpoint's ``{name: array}`` into this model, handling the backbone prefix both ways
        (a bare backbone checkpoint into a model with a head, and a model-with-head checkpoint into a bare
        backbone). Returns ``{"missing_keys", "unexpected_keys", "mismatched_keys"}``."""
        state = self._from_checkpoint_keys(dict(state))
        own = self.state_dict(keep_vars=True)
        prefix = self.base_model_prefix + "." if self.base_model_prefix else ""
        if prefix:
            has_prefix = any(k.startswith(prefix) for k in state)
            expects_prefix = any(k.startswith(prefix) for k in own)
            if expects_prefix and not has_prefix:
                state = {(k if k in own else prefix + k): v for k, v in state.items()}
            elif has_prefix and not expects_prefix:
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        tied = set(self._tied_weights_keys)
        missing = [k for k in own if k not in state and k not in tied]
        unexpected = [k for k in state if k not in own]
        mismatched = []
        for k, target in own.items():
            if k in state and tuple(state[k].shape) != tuple(target.shape):
                mismatched.append((k, tuple(state[k].shape), tuple(target.shape)))
        if mismatched and not ignore_mismatched_sizes:
            detail = "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched)
            raise ValueError(f"{source}: weights of {type(self).__name__} have different shapes in the checkpoint "
                             f"({detail}). Pass ignore_mismatched_sizes=True to re-initialise them (e.g. a "
                             f"classification head with a different num_labels).")
        skip = {k for k, _, _ in mismatched}
        with no_grad():
            for k, target in own.items():
                if k in state and k not in skip:
                    target.copy_(target._backend.asarray(state[k]))
        self.tie_weights()
        fresh = missing + [k for k, _, _ in mismatched]
        if fresh:
            warnings.warn(f"Some weights of {type(self).__name__} were not initialized from {source} and are newly "
                          f"initialized: {fresh}. Train the model on a downstream task before using it for "
                          f"predictions.", stacklevel=3)
        return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}

    # -- saving ------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (Hugging Face names and layouts) atomically."""
        from ..io.safetensors_format import write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tied = set(self._tied_weights_keys)
        state = {k: v.detach().numpy() for k, v in self.state_dict().items() if k not in tied}
        write(directory / "model.safetensors", self._to_checkpoint_keys(state), metadata={"format": "pt"})
        self.config.save_pretrained(directory)
        return directory

    # -- gradient checkpointing --------------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each transformer block's activations during backward instead of storing them
        (``nnforge.utils.checkpoint``), in training mode only: less memory for one extra forward pass per block.
        ``gradient_checkpointing_kwargs`` is accepted for transformers compatibility (ignored)."""
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self._set_gradient_checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def _set_gradient_checkpointing(self, enable: bool) -> None:
        """Set the ``gradient_checkpointing`` flag read by the block loops of the backbones (BertEncoder,
        GPT2Model, LlamaModel)."""
        stacks = [m for m in self.modules() if "gradient_checkpointing" in m.__dict__]
        if not stacks:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing")
        for m in stacks:
            m.gradient_checkpointing = enable

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)
