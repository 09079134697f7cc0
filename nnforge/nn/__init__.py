"""Neural-network building blocks (``nnforge.nn``)."""
from . import functional
from . import init, utils
from . import parallel
from .modules import *  # noqa: F401,F403
from .modules import Module, ModuleDict, ModuleList, Sequential
from .parameter import Parameter
