"""Test session setup: nnforge loads before NumPy, as in the ``nnforge`` command and the benchmarks, so that
its OpenBLAS defaults (``nnforge/_native_env.py``) apply in the test process as in the subprocesses that
tests start (results must be bit-identical between them: test_determinism)."""
import nnforge  # noqa: F401
