"""``python -m benchmarks``: the benchmark suite (see ``benchmarks/suite.py``)."""
import nnforge  # noqa: F401  (first, before NumPy loads: nnforge's OpenBLAS thread settings, see nnforge/__init__)

from .suite import main  # noqa: E402

main()
