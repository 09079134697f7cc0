"""High-level training: Keras-style ``compile/fit/evaluate/predict`` on every ``nn.Module``, callbacks, Trainer."""
from . import keras, losses, plots, shortcuts  # importing keras attaches compile/fit/evaluate/predict to nn.Module
from .callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                        ProgressBar, ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from .history import History
from .plots import plot_confusion_matrix, plot_history

# --- Trainer (nnforge/train/trainer.py) ---
from .trainer import Trainer, TrainerState

# --- layer-wise learning-rate decay groups (nnforge/train/param_groups.py) ---
from .param_groups import layerwise_lr_decay_groups
