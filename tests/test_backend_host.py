"""The CPU backend's direct BLAS GEMM (bias inside the GEMM) and its heap setting, against NumPy and torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.backend import blas, cpu_backend
from nnforge.backend.host_memory import keep_large_blocks
from nnforge.backend.worker_pool import CompiledTask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_matmul_nt_adds_the_product_to_c(dtype):
    rng = np.random.default_rng(0)
    a, w, c = (rng.standard_normal(s).astype(dtype) for s in ((37, 19), (23, 19), (37, 23)))
    expected = a.astype(np.float64) @ w.T.astype(np.float64) + c
    assert blas.can_add_matmul_nt(a, w), "NumPy's BLAS GEMM was not found among the loaded libraries"
    blas.add_matmul_nt(a, w, c)
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_add_matmul_nt_refuses_what_it_cannot_serve():
    a = np.ones((4, 3), np.float32)
    assert not blas.can_add_matmul_nt(a.T.copy().T, np.ones((2, 3), np.float32))  # not C-contiguous
    assert not blas.can_add_matmul_nt(a, np.ones((2, 3), np.float64))  # mixed dtypes
    assert not blas.can_add_matmul_nt(a.astype(np.int64), np.ones((2, 3), np.int64))
    assert not blas.can_add_matmul_nt(np.ones((0, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="add_matmul_nt"):
        blas.add_matmul_nt(a, np.ones((2, 3), np.float32), np.ones((4, 3), np.float32))  # wrong c shape


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_on_both_gemm_paths(monkeypatch, direct, bias):
    monkeypatch.setattr(cpu_backend, "use_direct_blas", direct)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)
    w = rng.standard_normal((7, 16)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32) if bias else None
    g = rng.standard_normal((3, 5, 7)).astype(np.float32)
    ins = [nf.from_numpy(a.copy()).requires_grad_() for a in (x, w, b) if a is not None]
    tins = [torch.from_numpy(a).requires_grad_() for a in (x, w, b) if a is not None]
    out = nf.nn.functional.linear(*ins)
    tout = torch.nn.functional.linear(*tins)
    out.backward(nf.from_numpy(g))
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=2e-5)
    for a, ta in zip(ins, tins):
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-5, atol=5e-5)


def test_heap_setting_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    import platform
    monkeypatch.setenv("NNFORGE_HEAP_REUSE", "0")
    assert keep_large_blocks() is False
    monkeypatch.delenv("NNFORGE_HEAP_REUSE")
    assert keep_large_blocks() is (platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_large_binary_ops_split_over_cores_equal_numpy_bit_for_bit(op):
    """Above the size threshold + - * / run in one part per core; the result must be NumPy's exactly
    (elementwise ops do not depend on how the array is split), scalars and the elided form included."""
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal(3 * (1 << 19) + 7).astype(np.float32) for _ in range(2))
    ufunc = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}[op]
    ta, tb = nf.from_numpy(a), nf.from_numpy(b)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y}[op]
    np.testing.assert_array_equal(fn(ta, tb).numpy(), ufunc(a, b))
    np.testing.assert_array_equal(fn(ta, 1.5).numpy(), ufunc(a, np.float32(1.5)))
    np.testing.assert_array_equal(fn(ta * 1.0, tb).numpy(), ufunc(a, b))  # temporary reused
    parts = []  # the per-core calls the op ran

    def recording(calls):
        parts.extend(calls)
        return original(calls)

    cpu_backend.run_parts, original = recording, cpu_backend.run_parts
    try:
        fn(ta, tb)
    finally:
        del cpu_backend.run_parts
    assert len(parts) == cpu_backend.num_threads or cpu_backend.num_threads == 1  # one part per core
    outs = [call.out if isinstance(call, CompiledTask) else call.keywords["out"] for call in parts]
    assert sum(out.size for out in outs) == a.size  # the pieces cover the output once


def test_openblas_defaults_pick_the_avx2_kernels_on_zen4_only():
    from nnforge._native_env import openblas_defaults
    zen4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "flags": "fpu sse avx2 avx512f avx512bw"}
    zen3 = {**zen4, "flags": "fpu sse avx2"}
    zen5 = {**zen4, "cpu family": "26"}
    intel = {**zen4, "vendor_id": "GenuineIntel", "cpu family": "6"}
    assert openblas_defaults(zen4) == {"OPENBLAS_THREAD_TIMEOUT": "4", "OPENBLAS_CORETYPE": "Zen"}
    for other in (zen3, zen5, intel, {}):
        assert openblas_defaults(other) == {"OPENBLAS_THREAD_TIMEOUT": "4"}


def test_openblas_defaults_reach_a_fresh_process_and_a_users_value_wins():
    """In a process that imports nnforge before NumPy, OpenBLAS runs with the defaults; a value set by the
    user is kept (threadpoolctl reports the kernel set OpenBLAS chose)."""
    import os
    import subprocess
    import sys
    pytest.importorskip("threadpoolctl")
    from nnforge._native_env import openblas_defaults
    code = ("import nnforge, os, threadpoolctl; "
            "print(os.environ.get('OPENBLAS_CORETYPE'), os.environ['OPENBLAS_THREAD_TIMEOUT'], "
            "[i.get('architecture') for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'][0])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    core, timeout, arch = out.split()
    assert timeout == "4"
    if openblas_defaults().get("OPENBLAS_CORETYPE") == "Zen":
        assert (core, arch) == ("Zen", "Haswell")  # OpenBLAS serves Zen with its Haswell (AVX2) kernels
    else:
        assert core == "None"
    env["OPENBLAS_THREAD_TIMEOUT"] = "7"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == "7"
