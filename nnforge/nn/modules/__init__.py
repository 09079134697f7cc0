"""Layer modules, one family per file (torch.nn.modules layout)."""
from .container import ModuleDict, ModuleList, Sequential
from .module import Module
