"""Defaults for NumPy's OpenBLAS, which reads them from the environment once, when NumPy loads: so they take
effect only when nnforge is imported before NumPy (the ``nnforge`` command always is). A value the user set
always wins. No NumPy here: importing it would load OpenBLAS before the defaults are in place.
"""
from __future__ import annotations

import os


def _cpu_info() -> dict:
    """vendor_id, cpu family and flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    info: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _is_zen4(info: dict) -> bool:
    """AMD family 25 (Zen 3 and Zen 4) with AVX-512, which only Zen 4 has."""
    return (info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
            and "avx512f" in info.get("flags", "").split())


def openblas_defaults(info: dict | None = None) -> dict[str, str]:
    """The OpenBLAS settings nnforge defaults to on this CPU:

    - ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's threads otherwise spin for ~0.1 s after every GEMM and take
      the cores from the threaded kernels and attention that follow (MiniLM inference measured 10-15% slower,
      its attention 8.5 -> 16-19 ms per layer right after a GEMM).
    - ``OPENBLAS_CORETYPE=Zen`` on Zen 4: OpenBLAS picks its AVX-512 (SkylakeX) kernels there, but Zen 4
      executes AVX-512 as two 256-bit halves and OpenBLAS's AVX2 (Haswell) sgemm kernel measured faster on
      MiniLM's shapes: 203-208 vs 194-201 GFLOP/s (median, 2 cores), 2-3% off MiniLM inference.
    """
    defaults = {"OPENBLAS_THREAD_TIMEOUT": "4"}
    if _is_zen4(_cpu_info() if info is None else info):
        defaults["OPENBLAS_CORETYPE"] = "Zen"
    return defaults


def apply_openblas_defaults() -> None:
    for key, value in openblas_defaults().items():
        os.environ.setdefault(key, value)
