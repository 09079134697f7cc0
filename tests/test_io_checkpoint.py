"""load_checkpoint / save_checkpoint on folders written by transformers and torch: single and sharded
safetensors, pytorch_model.bin (+ sharded index), dtype conversion, clear errors."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch

from nnforge.io.checkpoint import load_checkpoint, save_checkpoint
from nnforge.io.safetensors_format import write

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(cfg).eval()


def _state(model) -> dict:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _assert_state_equal(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_single_safetensors_from_transformers(tiny_bert, tmp_path):
    tiny_bert.save_pretrained(tmp_path)
    state = load_checkpoint(tmp_path)
    want = {k: v for k, v in _state(tiny_bert).items()}
    # transformers may leave buffers (position_ids) out of the file: compare what is there
    assert set(state) <= set(want) and "encoder.layer.0.attention.self.query.weight" in state
    _assert_state_equal(state, {k: want[k] for k in state})
    assert load_checkpoint(tmp_path / "model.safetensors").keys() == state.keys()  # a file path works too


def test_sharded_safetensors_from_transformers(tiny_bert, tmp_path):
    tiny_bert.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    single = tmp_path / "single"
    tiny_bert.save_pretrained(single)
    _assert_state_equal(load_checkpoint(tmp_path), load_checkpoint(single))


def test_missing_shard_and_bad_index(tiny_bert, tmp_path):
    tiny_bert.save_pretrained(tmp_path, max_shard_size="20KB")
    max(tmp_path.glob("model-*-of-*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError, match="shard 'model-.*' is missing"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"w": "../evil.safetensors"}}')
    with pytest.raises(ValueError, match="outside the model directory"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid checkpoint index"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights found"):
        load_checkpoint(tmp_path / "nothing-here")


def test_pytorch_model_bin_equals_torch_state_dict(tiny_bert, tmp_path):
    """``pytorch_model.bin`` as transformers 4 wrote it (``safe_serialization=False`` = ``torch.save`` of the
    state dict, shared storages included), read without torch."""
    want = _state(tiny_bert)
    torch.save(tiny_bert.state_dict(), tmp_path / "pytorch_model.bin")
    _assert_state_equal(load_checkpoint(tmp_path), want)


def test_sharded_pytorch_model_bin(tiny_bert, tmp_path):
    sd = tiny_bert.state_dict()
    names = list(sd)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves, 1):
        fname = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({k: sd[k] for k in part}, tmp_path / fname)
        weight_map.update(dict.fromkeys(part, fname))
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _assert_state_equal(load_checkpoint(tmp_path), _state(tiny_bert))


def test_dtype_conversion(tmp_path):
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(0)
    tensors = {"h": torch.randn(4, 5, generator=g).half(), "b": torch.randn(3, 2, generator=g).bfloat16(),
               "d": torch.randn(2, generator=g).double(), "i": torch.arange(6)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    state = load_checkpoint(tmp_path)  # floats -> float32, ints untouched
    assert {k: v.dtype for k, v in state.items()} == {"h": np.float32, "b": np.float32, "d": np.float32,
                                                      "i": np.int64}
    for k in ("h", "b"):
        np.testing.assert_array_equal(state[k], tensors[k].float().numpy())
    kept = load_checkpoint(tmp_path, dtype=None)
    assert kept["h"].dtype == np.float16 and kept["d"].dtype == np.float64 and kept["b"].dtype == np.float32
    # the same through a .bin file
    (tmp_path / "model.safetensors").unlink()
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    from_bin = load_checkpoint(tmp_path)
    for k in tensors:
        np.testing.assert_array_equal(from_bin[k], state[k])
        assert from_bin[k].dtype == state[k].dtype


def test_truncated_checkpoint_names_the_file(tmp_path):
    write(tmp_path / "model.safetensors", {"w": np.ones((32, 32), np.float32)})
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_checkpoint(tmp_path)


def test_save_checkpoint_sharded_loads_in_transformers(tiny_bert, tmp_path):
    state = _state(tiny_bert)
    files = save_checkpoint(tmp_path, state, max_shard_size="30KB")
    assert len(files) > 2 and files[-1].name == "model.safetensors.index.json"
    _assert_state_equal(load_checkpoint(tmp_path), state)
    tiny_bert.config.save_pretrained(tmp_path)
    reloaded = transformers.BertModel.from_pretrained(str(tmp_path))
    for k, v in reloaded.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    # re-saving as one file removes the stale index (it would otherwise be ambiguous)
    save_checkpoint(tmp_path, state)
    assert not (tmp_path / "model.safetensors.index.json").exists()
    _assert_state_equal(load_checkpoint(tmp_path), state)


def test_peak_memory_is_one_copy(tmp_path):
    """Loading a 16 MB float16 file into float32 allocates about the float32 result, not file + result."""
    rng = np.random.default_rng(0)
    arrays = {f"w{i}": rng.standard_normal((512, 1024)).astype(np.float16) for i in range(16)}
    write(tmp_path / "model.safetensors", arrays)
    del arrays
    tracemalloc.start()
    try:
        state = load_checkpoint(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = sum(v.nbytes for v in state.values())
    assert result == 16 * 512 * 1024 * 4
    assert peak < 1.1 * result, (peak, result)
