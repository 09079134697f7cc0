"""Data loading (torch.utils.data): datasets, samplers, ``DataLoader``, collate functions."""
from ...nn.utils.rnn import pad_sequence
from .collate import PadCollate, default_collate
from .dataloader import DataLoader
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .distributed_sampler import DistributedSampler
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "Sampler",
           "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler", "DataLoader",
           "default_collate", "PadCollate", "pad_sequence"]
__all__ += ["DistributedSampler"]
