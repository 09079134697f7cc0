"""``python -m benchmarks``: the benchmark suite (see ``benchmarks/suite.py``)."""
from .suite import main

main()
