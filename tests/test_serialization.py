"""nf.save / nf.load (safetensors, no pickle): round trips, interop with the safetensors library, validation
of damaged files, atomic writes."""
import json
import os
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as torch_save_file

import nnforge as nf
from nnforge.io import safetensors_format

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


def _arrays():
    rng = np.random.default_rng(0)
    out = {}
    for dt in DTYPES:
        a = rng.standard_normal((3, 4)) * 50
        out[np.dtype(dt).name] = (a > 0) if dt is np.bool_ else a.astype(dt)
    out["scalar"] = np.array(3.5, dtype=np.float32)
    out["empty"] = np.zeros((0, 5), dtype=np.float32)
    out["odd"] = np.arange(7, dtype=np.int8)  # misaligns what follows unless the writer orders by itemsize
    return out


def test_round_trip_all_dtypes(tmp_path):
    arrays = _arrays()
    sd = {k: nf.from_numpy(v) for k, v in arrays.items()}
    sd["plain_numpy"] = np.arange(4, dtype=np.int32)
    sd["note"] = "hello"
    path = tmp_path / "sd.safetensors"
    nf.save(sd, path)
    loaded, meta = nf.load(path, return_metadata=True)
    assert meta == {"note": "hello"}
    assert set(loaded) == set(sd) - {"note"}
    for k, v in loaded.items():
        assert isinstance(v, nf.Tensor)
        expected = np.asarray(sd[k])
        assert v.dtype == expected.dtype and v.shape == expected.shape, k
        np.testing.assert_array_equal(v.numpy(), expected)
    assert "note" not in nf.load(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
    assert n % 8 == 0  # data section 8-byte aligned, header padded with spaces


def test_single_tensor_and_copy_semantics(tmp_path):
    t = nf.randn(4, 5)
    path = tmp_path / "t.safetensors"
    nf.save(t, path)
    back = nf.load(path)
    assert isinstance(back, nf.Tensor)
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    nf.save(nf.zeros(4, 5), path)  # overwriting the file does not change what was loaded
    np.testing.assert_array_equal(back.numpy(), t.numpy())
    back.numpy()[0, 0] = 1.0  # writable, owned array
    assert load_file(str(path))["tensor"].shape == (4, 5)


def test_module_state_dict_round_trip(tmp_path):
    model = nf.nn.Sequential()
    model.w = nf.nn.Parameter(nf.randn(3, 2))
    path = tmp_path / "m.safetensors"
    nf.save(model.state_dict(), path)
    model2 = nf.nn.Sequential()
    model2.w = nf.nn.Parameter(nf.zeros(3, 2))
    model2.load_state_dict(nf.load(path))
    np.testing.assert_array_equal(model2.w.detach().numpy(), model.w.detach().numpy())


def test_safetensors_library_reads_ours(tmp_path):
    arrays = _arrays()
    path = tmp_path / "ours.safetensors"
    nf.save({k: nf.from_numpy(v) for k, v in arrays.items()}, path, metadata={"format": "np"})
    theirs = load_file(str(path))
    assert set(theirs) == set(arrays)
    for k, v in arrays.items():
        assert theirs[k].dtype == v.dtype and theirs[k].shape == v.shape
        np.testing.assert_array_equal(theirs[k], v)


def test_we_read_safetensors_numpy_files(tmp_path):
    arrays = _arrays()
    path = tmp_path / "np.safetensors"
    save_file(arrays, str(path), metadata={"k": "v"})
    loaded, meta = nf.load(path, return_metadata=True)
    assert meta == {"k": "v"}
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded[k].numpy(), v)


def test_we_read_safetensors_torch_files_including_bf16(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(5, 3, generator=g), "b16": torch.randn(4, 4, generator=g).to(torch.bfloat16),
               "h": torch.randn(6, generator=g).half(), "i": torch.arange(5), "m": torch.tensor([True, False])}
    path = tmp_path / "torch.safetensors"
    torch_save_file(tensors, str(path))
    loaded = nf.load(path)
    for k, v in tensors.items():
        expected = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        assert loaded[k].dtype == expected.dtype, k
        np.testing.assert_array_equal(loaded[k].numpy(), expected)


def _write_raw(path, header, data=b"", length=None):
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob) if length is None else length))
        f.write(blob)
        f.write(data)


def _check_error(path, match):
    with pytest.raises(ValueError, match=match) as info:
        nf.load(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "trunc.safetensors"
    nf.save({"a": nf.randn(100)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    _check_error(path, "out of bounds")
    path.write_bytes(data[:5])
    _check_error(path, "too short")


def test_absurd_header_length(tmp_path):
    path = tmp_path / "absurd.safetensors"
    _write_raw(path, {}, length=2 ** 62)
    _check_error(path, "header length")


def test_overlapping_offsets(tmp_path):
    path = tmp_path / "overlap.safetensors"
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    _write_raw(path, header, bytes(24))
    _check_error(path, "overlap")


def test_bad_dtype_shape_and_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    _write_raw(path, {"a": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    _check_error(path, "dtype")
    _write_raw(path, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    _check_error(path, "needs 12 bytes")
    _write_raw(path, {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8))
    _check_error(path, "shape")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 6) + b"{nope}")
    _check_error(path, "JSON")


def test_save_rejects_unsupported_values(tmp_path):
    with pytest.raises(TypeError, match="nested"):
        nf.save({"a": {"b": nf.zeros(2)}}, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="complex"):
        nf.save({"a": np.zeros(2, dtype=np.complex64)}, tmp_path / "x.safetensors")
    assert not os.listdir(tmp_path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    nf.save({"a": nf.ones(1000)}, path)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        raise OSError("disk on fire")

    monkeypatch.setattr(safetensors_format.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        nf.save({"a": nf.zeros(1000), "b": nf.zeros(5)}, path)
    monkeypatch.setattr(safetensors_format.os, "fsync", real_fsync)
    assert calls["n"] == 1
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temp file left behind
    old = nf.load(path)
    assert set(old) == {"a"} and old["a"].numpy().tolist() == [1.0] * 1000


def test_atomic_write_failure_mid_data(tmp_path, monkeypatch):
    """An exception after the header, while tensor bytes are being written (shadows the module's builtin)."""
    path = tmp_path / "ckpt.safetensors"
    nf.save({"a": nf.ones(3)}, path)
    def boom(obj):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(safetensors_format, "memoryview", boom, raising=False)
    with pytest.raises(RuntimeError, match="interrupted"):
        nf.save({"a": nf.zeros(3)}, path)
    monkeypatch.delattr(safetensors_format, "memoryview")
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert nf.load(path)["a"].tolist() == [1.0, 1.0, 1.0]
