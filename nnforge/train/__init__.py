"""High-level training: Keras-style ``compile/fit/evaluate/predict`` on every ``nn.Module``, callbacks, Trainer."""
from .callbacks import Callback, CallbackList

# --- Trainer (nnforge/train/trainer.py) ---
from .trainer import Trainer, TrainerState
