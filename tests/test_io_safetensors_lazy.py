"""SafetensorsFile: lazy memory-mapped reads equal eager reads and the safetensors library, for every dtype."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nnforge.io.safetensors_format import SafetensorsFile, read, safe_open, write

safetensors_torch = pytest.importorskip("safetensors.torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
                torch.int8, torch.uint8, torch.bool]


def _torch_tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, dt in enumerate(TORCH_DTYPES):
        shape = [(3, 5), (7,), (2, 3, 4), ()][i % 4]
        if dt.is_floating_point:
            t = torch.randn(shape, generator=g, dtype=torch.float32).to(dt)
        elif dt == torch.bool:
            t = torch.rand(shape, generator=g) > 0.5
        else:
            t = torch.randint(-100 if dt != torch.uint8 else 0, 100, shape, generator=g).to(dt)
        out[f"t_{str(dt).split('.')[-1]}"] = t
    out["empty"] = torch.zeros((0, 4))
    return out


def test_lazy_equals_eager_and_torch_for_all_dtypes(tmp_path):
    path = tmp_path / "all.safetensors"
    tensors = _torch_tensors()
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt", "note": "é"})
    eager, meta = read(path)
    with SafetensorsFile(path) as f:
        assert sorted(f.keys()) == sorted(tensors) and f.metadata() == meta == {"format": "pt", "note": "é"}
        assert len(f) == len(tensors) and "t_bfloat16" in f
        for name, t in tensors.items():
            lazy = f.get_tensor(name)
            want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
            assert lazy.dtype == want.dtype == eager[name].dtype, name
            assert lazy.shape == want.shape
            np.testing.assert_array_equal(lazy, want, err_msg=name)
            np.testing.assert_array_equal(eager[name], want, err_msg=name)
            assert lazy.flags.writeable and lazy.flags.c_contiguous
        assert f.dtype_of("t_bfloat16") == "BF16" and f.shape_of("t_float32") == (3, 5)
        # F16 stays F16 unless asked; dtype= converts floats only
        assert f.get_tensor("t_float16").dtype == np.float16
        assert f.get_tensor("t_float16", dtype=np.float32).dtype == np.float32
        np.testing.assert_array_equal(f.get_tensor("t_float16", dtype=np.float32),
                                      tensors["t_float16"].float().numpy())
        assert f.get_tensor("t_int64", dtype=np.float32).dtype == np.int64
        np.testing.assert_array_equal(f.get_tensor("t_bfloat16", dtype=np.float64),
                                      tensors["t_bfloat16"].double().numpy())
    raw = SafetensorsFile(path, bf16_as_float32=False).get_tensor("t_bfloat16")
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, tensors["t_bfloat16"].view(torch.int16).numpy().view(np.uint16))


def test_zero_copy_view_is_read_only_and_survives_close(tmp_path):
    path = tmp_path / "w.safetensors"
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    write(path, {"a": a})
    f = SafetensorsFile(path)
    view = f.get_tensor("a", copy=False)
    assert not view.flags.writeable
    f.close()
    np.testing.assert_array_equal(view, a)  # the map lives as long as the view
    with pytest.raises(ValueError):
        view[0, 0] = 1


def test_safe_open_reads_library_numpy_files(tmp_path):
    path = tmp_path / "np.safetensors"
    arrays = {"x": np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32),
              "i": np.arange(5, dtype=np.int32)}
    safetensors_numpy.save_file(arrays, str(path))
    with safe_open(path, framework="np") as f:
        for k, v in arrays.items():
            np.testing.assert_array_equal(f.get_tensor(k), v)
    with pytest.raises(ValueError, match="framework"):
        safe_open(path, framework="pt")
    # our writer's files load in the library
    ours = tmp_path / "ours.safetensors"
    write(ours, arrays)
    back = safetensors_numpy.load_file(str(ours))
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    write(path, {"w": np.ones((64, 64), np.float32)})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100])
    with pytest.raises(ValueError, match=r"model\.safetensors.*out of bounds"):
        SafetensorsFile(path)
    path.write_bytes(data[:5])
    with pytest.raises(ValueError, match=r"model\.safetensors.*too short"):
        SafetensorsFile(path)
    path.write_bytes(data[:40])
    with pytest.raises(ValueError, match=r"model\.safetensors.*header length"):
        SafetensorsFile(path)


def test_unknown_tensor_name(tmp_path):
    path = tmp_path / "a.safetensors"
    write(path, {"w": np.zeros(3, np.float32)})
    with SafetensorsFile(path) as f, pytest.raises(KeyError, match="no tensor named 'v'"):
        f.get_tensor("v")
