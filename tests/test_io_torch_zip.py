"""Tests for nnforge.io.torch_zip: torch.save files read without torch, and hostile pickles refused unexecuted."""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnforge.io.torch_zip import bf16_to_float32, load_state_dict_file, load_torch_file


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Embedding(5, 2))
    sd = model.state_dict()  # float32 weights, int64 num_batches_tracked
    base = torch.randn(4, 6)
    sd.update({
        "shared": base,  # shares its storage with the three views below
        "transposed": base.t(),  # non-contiguous
        "window": base[1:, 2:5],  # storage offset + non-contiguous
        "tail": base.view(-1)[7:19],  # storage offset, contiguous
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "bf16_t": torch.randn(5, 3).to(torch.bfloat16).t(),
        "half": torch.randn(7).half(),
        "double": torch.randn(2, 2, dtype=torch.float64),
        "long": torch.arange(-3, 9).reshape(3, 4),
        "int32": torch.arange(5, dtype=torch.int32),
        "int16": torch.arange(5, dtype=torch.int16),
        "int8": torch.arange(-2, 3, dtype=torch.int8),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([[True, False, True], [False, False, True]]),
        "expanded": torch.randn(1, 3).expand(4, 3),  # stride 0
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(3.5),
    })
    return sd


def test_state_dict_matches_torch_load(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save(_state_dict(), path)
    ref = torch.load(path)
    out = load_state_dict_file(path)
    assert list(out) == list(ref)
    for name, tensor in ref.items():
        expected = _as_numpy(tensor)
        got = out[name]
        assert got.shape == tuple(tensor.shape), name
        assert got.dtype == expected.dtype, (name, got.dtype, expected.dtype)
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable, name
    # shared-storage tensors come back as independent arrays
    out["shared"][0, 0] = 1e6
    assert out["transposed"][0, 0] != 1e6


def test_structure_parameters_and_metadata(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 3)
    obj = {"model": model.state_dict(), "param": model.weight, "step": 7, "names": ["a", "b"], "pair": (1.5, None)}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    out = load_torch_file(path)
    assert out["step"] == 7 and out["names"] == ["a", "b"] and out["pair"] == (1.5, None)
    assert isinstance(out["model"], collections.OrderedDict)
    assert out["model"]._metadata == model.state_dict()._metadata  # BUILD of OrderedDict state kept
    np.testing.assert_array_equal(out["param"], model.weight.detach().numpy())  # _rebuild_parameter
    np.testing.assert_array_equal(out["model"]["bias"], model.bias.detach().numpy())
    with pytest.raises(ValueError, match=r"ckpt\.pt.*entry 'model' is a OrderedDict"):
        load_state_dict_file(path)


def test_plain_tensor_and_bf16_raw_bits(tmp_path: Path) -> None:
    t = torch.randn(4, 3).to(torch.bfloat16)
    path = tmp_path / "t.pt"
    torch.save(t, path)
    np.testing.assert_array_equal(load_torch_file(path), t.float().numpy())
    raw = load_torch_file(path, bf16_as_float32=False)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, t.view(torch.int16).numpy().view(np.uint16))
    np.testing.assert_array_equal(bf16_to_float32(raw), t.float().numpy())
    with pytest.raises(ValueError, match="state dict"):
        load_state_dict_file(path)


def test_bf16_to_float32_exact() -> None:
    x = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.0e38, 1e-40, float("inf"), float("-inf")], dtype=torch.bfloat16)
    got = bf16_to_float32(x.view(torch.int16).numpy().view(np.uint16))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.float().numpy())
    assert np.isnan(bf16_to_float32(np.array([0x7FC0], np.uint16)))[0]
    with pytest.raises(TypeError, match="uint16"):
        bf16_to_float32(np.zeros(2, np.float32))


# ---------------------------------------------------------------- hostile and broken files


def _zip_with_pickle(path: Path, payload: bytes, extra: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like torch.save's, with ``payload`` as its data.pkl."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", b"3\n")
        for name, data in (extra or {}).items():
            zf.writestr(f"archive/{name}", data)
    return path


class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_payloads(sentinel: Path) -> dict[str, bytes]:
    import builtins
    import os
    import posix
    import subprocess

    s = str(sentinel)
    code = f"open({s!r}, 'w').close()"
    g = f"c{{}}\n{{}}\n(V{s}\ntR.".format  # GLOBAL module name, call with the sentinel path (protocol 0 text)
    return {
        "os.system": pickle.dumps(_Reduce(os.system, f"touch {s}"), protocol=2).replace(b"cposix\n", b"cos\n"),
        "posix.system": pickle.dumps(_Reduce(posix.system, f"touch {s}"), protocol=2),
        "builtins.eval": pickle.dumps(_Reduce(builtins.eval, code), protocol=2),
        "builtins.exec": pickle.dumps(_Reduce(builtins.exec, code), protocol=4),  # STACK_GLOBAL
        "subprocess.Popen": pickle.dumps(_Reduce(subprocess.Popen, ["touch", s]), protocol=2),
        "builtins.getattr": g("builtins", "getattr").encode(),
        "builtins.open": g("builtins", "open").encode(),
        # a legal global used as a tensor, whose persistent id smuggles a reduce to os.system
        "nested pid": (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((Vstorage\nctorch\nFloatStorage\n"
                       b"cos\nsystem\n(V" + f"touch {s}".encode() + b"\ntRVcpu\nK\x01tQK\x00))tR."),
        # INST opcode: instantiate os.system directly
        "INST": f"(V{s}\nios\nsystem\n.".encode(),
    }


@pytest.mark.parametrize("kind", ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen",
                                  "builtins.getattr", "builtins.open", "nested pid", "INST"])
def test_hostile_pickle_refused_and_not_run(tmp_path: Path, kind: str) -> None:
    sentinel = tmp_path / "pwned"
    payload = _hostile_payloads(sentinel)[kind]
    path = _zip_with_pickle(tmp_path / "pytorch_model.bin", payload)
    with pytest.raises(pickle.UnpicklingError, match=r"pytorch_model\.bin") as e:
        load_torch_file(path)
    assert not sentinel.exists()
    expected = "pickle opcode b'i' is not allowed" if kind == "INST" else "refusing to load"
    assert expected in str(e.value)
    # the stdlib unpickler would have run it: the payload really is hostile (checked for the cheap ones)
    if kind in ("builtins.eval", "builtins.exec"):
        pickle.loads(payload)
        assert sentinel.exists()


def test_os_system_message(tmp_path: Path) -> None:
    import os

    payload = pickle.dumps(_Reduce(os.system, "true"), protocol=2).replace(b"cposix\n", b"cos\n")
    path = _zip_with_pickle(tmp_path / "pytorch_model.bin", payload)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_torch_file(path)
    assert str(e.value) == f"refusing to load os.system from {path}: only tensor data is allowed"


def _tensor_pickle(key: str, numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """data.pkl for one FloatStorage tensor, with the opcodes torch uses (ints as BININT so negatives fit)."""
    def i32(v):
        return v.to_bytes(4, "little", signed=True)

    def tup(values):
        return b"(" + b"".join(b"J" + i32(v) for v in values) + b"t"

    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((Vstorage\nctorch\nFloatStorage\nV" + key.encode()
            + b"\nVcpu\nJ" + i32(numel) + b"tQJ" + i32(offset) + tup(size) + tup(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR.")


@pytest.mark.parametrize("offset,size,stride,numel,entry,match", [
    (0, (2, 3), (3, 1), 6, 24, None),  # valid: the control case
    (5, (2, 3), (3, 1), 6, 24, "reads element 10 of storage '0', which has 6"),
    (0, (4, 3), (3, 1), 6, 24, "reads element 11"),
    (0, (2, 3), (30, 1), 6, 24, "reads element 32"),
    (-1, (2,), (1,), 6, 24, "bad offset/size/stride"),
    (0, (2, -3), (3, 1), 6, 24, "bad offset/size/stride"),
    (0, (2, 3), (3, 1), 600, 24, "claims 600 elements"),
    (0, (1 << 20, 1 << 10), (0, 0), 6, 24, "expands storage"),
])
def test_tensor_geometry_validated(tmp_path: Path, offset, size, stride, numel, entry, match) -> None:
    data = np.arange(entry // 4, dtype="<f4").tobytes()
    path = _zip_with_pickle(tmp_path / "m.bin", _tensor_pickle("0", numel, offset, size, stride), {"data/0": data})
    if match is None:
        np.testing.assert_array_equal(load_torch_file(path), np.arange(6, dtype=np.float32).reshape(2, 3))
        return
    with pytest.raises(pickle.UnpicklingError, match=match) as e:
        load_torch_file(path)
    assert "m.bin" in str(e.value)


def test_storage_key_must_exist(tmp_path: Path) -> None:
    path = _zip_with_pickle(tmp_path / "m.bin", _tensor_pickle("../../etc/passwd", 1, 0, (1,), (1,)))
    with pytest.raises(pickle.UnpicklingError, match=r"m\.bin: storage '\.\./\.\./etc/passwd' has no entry"):
        load_torch_file(path)


@pytest.mark.parametrize("payload,match", [
    (b"\x80\x02ctorch\nFloatStorage\n)R.", "refusing to call torch.FloatStorage"),  # allowed global, not callable
    (b"\x80\x02ccollections\nOrderedDict\n)R}(V__class__\nK\x01ub.", "refusing to set state"),
    (b"\x80\x02ctorch\nfloat32\n)\x81.", "refusing to instantiate"),
    (b"\x80\x02ctorch\nfloat32\nK\x01K\x02s.", "SETITEM on a _TorchDtype"),
    (b"\x80\x02\x82\x01.", "opcode"),  # EXT1: the copyreg extension registry
    (b"\x80\x02K\x01Q.", "unsupported persistent id"),
    (b"\x80\x02(", "malformed"),  # truncated pickle
])
def test_other_pickle_tricks(tmp_path: Path, payload: bytes, match: str) -> None:
    path = _zip_with_pickle(tmp_path / "m.bin", payload)
    with pytest.raises(pickle.UnpicklingError, match=match) as e:
        load_torch_file(path)
    assert "m.bin" in str(e.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, only to write a TorchScript file
def test_truncated_zip_legacy_and_other_formats(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    torch.save({"w": torch.randn(64, 64)}, good)
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"truncated\.bin: truncated or corrupt zip"):
        load_torch_file(truncated)

    legacy = tmp_path / "legacy.bin"
    torch.save({"w": torch.randn(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"legacy\.bin: legacy \(pre-1\.6, non-zip\)"):
        load_torch_file(legacy)

    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: not a PyTorch zip checkpoint"):
        load_torch_file(other)

    script = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(ValueError, match=r"script\.pt: a TorchScript archive"):
        load_torch_file(script)


def test_storage_entry_truncated_inside_zip(tmp_path: Path) -> None:
    # a local header whose extra field runs past the end of the file: caught before reading out of bounds
    path = _zip_with_pickle(tmp_path / "m.bin", _tensor_pickle("0", 6, 0, (6,), (1,)),
                            {"data/0": np.arange(6, dtype="<f4").tobytes()})
    with zipfile.ZipFile(path) as zf:
        head = zf.getinfo("archive/data/0").header_offset
    blob = bytearray(path.read_bytes())
    assert blob[head:head + 4] == b"PK\x03\x04"
    blob[head + 28:head + 30] = (0xFFFF).to_bytes(2, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(pickle.UnpicklingError, match=r"m\.bin: truncated zip: archive/data/0 extends past the end"):
        load_torch_file(path)
