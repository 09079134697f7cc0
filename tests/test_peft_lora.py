"""LoRA (nnforge.peft) against Hugging Face PEFT: the same trainable parameters, exact no-op at start, only
adapters (and modules_to_save) train, merge_and_unload keeps outputs, and adapter directories move both ways
between nnforge and ``peft`` (BERT, GPT-2 with fan_in_fan_out, Llama, real all-MiniLM-L6-v2)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import nnforge as nf
from nnforge.models.bert import BertForSequenceClassification
from nnforge.models.gpt2 import GPT2LMHeadModel
from nnforge.models.llama import LlamaForCausalLM
from nnforge.peft import LoraConfig, LoraLinear, PeftModel, get_peft_model
from nnforge.peft.lora import _LoraLinearFn

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
transformers.logging.set_verbosity_error()

VOCAB = 61
HF = {  # name -> (transformers class, config class, config kwargs, nnforge class, default LoRA targets)
    "bert": ("BertForSequenceClassification", "BertConfig",
             {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 48, "max_position_embeddings": 32, "num_labels": 3}, BertForSequenceClassification),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config",
             {"vocab_size": VOCAB, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4, "bos_token_id": 0,
              "eos_token_id": 0}, GPT2LMHeadModel),
    "llama": ("LlamaForCausalLM", "LlamaConfig",
              {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
               "bos_token_id": 0, "eos_token_id": 1}, LlamaForCausalLM),
}
TARGETS = {"bert": ["query", "value"], "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"]}
IDS = np.random.default_rng(0).integers(0, VOCAB, (3, 9))


def write_hf(tmp_path, name):
    """A tiny random transformers model saved to disk; returns its directory."""
    cls, cfg_cls, kw, _ = HF[name]
    torch.manual_seed(0)
    model = getattr(transformers, cls)(getattr(transformers, cfg_cls)(**kw))
    path = tmp_path / f"hf-{name}"
    model.save_pretrained(path)
    return path


def load_hf(path, name):
    return getattr(transformers, HF[name][0]).from_pretrained(path).eval()


def load_ours(path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HF[name][3].from_pretrained(path)


def our_logits(model, ids=IDS):
    """Logits and last hidden state, flattened (BERT's classifier logits alone are ~0.01 and would hide
    small errors in the adapted encoder)."""
    with nf.no_grad():
        out = model(nf.tensor(ids), output_hidden_states=True)
        return np.concatenate([out.logits.numpy().ravel(), out.hidden_states[-1].numpy().ravel()])


def hf_logits(model, ids=IDS):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), output_hidden_states=True)
        return np.concatenate([out.logits.numpy().ravel(), out.hidden_states[-1].numpy().ravel()])


def config_for(name, **kw):
    kw.setdefault("target_modules", TARGETS[name])
    if name == "bert":
        kw.setdefault("modules_to_save", ["classifier"])
    return {"r": 4, "lora_alpha": 8, **kw}


def train_steps(model, name, steps=3, lr=1e-2):
    """A few Adam steps on random data (labels for the classifier, next tokens for the LMs)."""
    model.train()
    opt = nf.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    labels = np.array([0, 2, 1]) if name == "bert" else IDS
    for _ in range(steps):
        loss = model(nf.tensor(IDS), labels=nf.tensor(labels)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


# -- the layer ------------------------------------------------------------------------------------------
def test_fused_lora_function_gradcheck():
    nf.manual_seed(0)
    x, xd = (nf.randn(3, 2, 5, dtype=nf.float64, requires_grad=True) for _ in range(2))
    w, b = nf.randn(4, 5, dtype=nf.float64, requires_grad=True), nf.randn(4, dtype=nf.float64, requires_grad=True)
    a, bm = nf.randn(2, 5, dtype=nf.float64, requires_grad=True), nf.randn(4, 2, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda *t: _LoraLinearFn.apply(*t, 1.5), (x, xd, w, b, a, bm))
    # one tensor feeding both paths (no dropout) and no bias
    assert nf.autograd.gradcheck(lambda x, w, a, bm: _LoraLinearFn.apply(x, x, w, None, a, bm, 0.5), (x, w, a, bm))


def test_lora_linear_matches_torch_formula_and_grads():
    nf.manual_seed(0)
    layer = LoraLinear(nf.nn.Linear(6, 5), r=3, lora_alpha=6, init_lora_weights=False)
    layer.base_layer.requires_grad_(False)
    x = nf.randn(4, 6, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    t = {n: torch.tensor(p.detach().numpy(), requires_grad=True) for n, p in layer.named_parameters()}
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    ref = tx @ t["base_layer.weight"].T + t["base_layer.bias"]
    ref = ref + 2.0 * (tx @ t["lora_A.weight"].T) @ t["lora_B.weight"].T
    ref.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=5e-4, atol=5e-4)
    for n in ("lora_A.weight", "lora_B.weight"):
        np.testing.assert_allclose(layer.get_parameter(n).grad.numpy(), t[n].grad.numpy(), rtol=5e-4, atol=5e-4)
    assert layer.base_layer.weight.grad is None
    assert layer.scaling == 2.0
    assert tuple(layer.lora_A.weight.shape) == (3, 6) and tuple(layer.lora_B.weight.shape) == (5, 3)


def test_lora_linear_init_dropout_merge_unmerge():
    nf.manual_seed(0)
    layer = LoraLinear(nf.nn.Linear(8, 8), r=2, lora_alpha=4, lora_dropout=0.5)
    assert not layer.lora_B.weight.detach().numpy().any()
    bound = np.sqrt(6 / ((1 + 5) * 8))  # kaiming_uniform(a=sqrt(5)) on (r, in)
    assert 0 < np.abs(layer.lora_A.weight.detach().numpy()).max() <= bound
    with nf.no_grad():
        layer.lora_B.weight.copy_(nf.randn(8, 2))
    x = nf.randn(5, 8)
    layer.eval()
    ref = layer(x).detach().numpy()
    layer.train()
    assert not np.allclose(layer(x).detach().numpy(), ref)  # dropout on the adapter input is active while training
    layer.eval()
    w0 = layer.base_layer.weight.detach().numpy().copy()
    layer.merge()
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    np.testing.assert_allclose(layer.base_layer.weight.detach().numpy(), w0, atol=1e-6)


# -- injection ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(HF))
def test_no_op_at_start_is_bit_equal(tmp_path, name):
    model = load_ours(write_hf(tmp_path, name), name)
    before = our_logits(model)
    pm = get_peft_model(model, LoraConfig(**config_for(name)))
    assert np.array_equal(our_logits(pm), before)


@pytest.mark.parametrize("name,kw", [
    ("bert", {}),
    ("bert", {"bias": "lora_only", "modules_to_save": None, "target_modules": ["query", "key", "dense"]}),
    ("bert", {"bias": "all", "r": 2}),
    ("bert", {"target_modules": r".*\.layer\.0\..*\.(query|value)"}),
    ("gpt2", {}),
    ("llama", {"target_modules": None}),
])
def test_trainable_parameter_count_matches_peft(tmp_path, name, kw):
    path = write_hf(tmp_path, name)
    cfg = config_for(name, **kw)
    pm = get_peft_model(load_ours(path, name), LoraConfig(**cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(load_hf(path, name), peft.LoraConfig(**cfg))
    ours_trainable, ours_total = pm.get_nb_trainable_parameters()
    their_trainable, their_total = theirs.get_nb_trainable_parameters()
    assert ours_trainable == their_trainable
    copies = sum(p.numel() for n, p in theirs.named_parameters() if ".modules_to_save." in n)
    assert ours_total == their_total - copies  # PEFT also counts its trainable copy of modules_to_save
    ours_names = {n for n, p in pm.named_parameters() if p.requires_grad}
    theirs_names = {n.replace(".default", "").replace(".modules_to_save", "")
                    for n, p in theirs.named_parameters() if p.requires_grad}
    assert ours_names == theirs_names


def test_training_changes_only_adapters_and_modules_to_save(tmp_path):
    model = load_ours(write_hf(tmp_path, "bert"), "bert")
    pm = get_peft_model(model, LoraConfig(**config_for("bert", lora_dropout=0.1)))
    before = {k: v.numpy().copy() for k, v in pm.state_dict().items()}
    train_steps(pm, "bert")
    changed = {k for k, v in pm.state_dict().items() if not np.array_equal(v.numpy(), before[k])}
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert changed == trainable
    assert all(".lora_" in k or ".classifier." in k for k in changed)
    assert len([k for k in changed if "lora_B" in k]) == 4  # 2 layers x (query, value)


@pytest.mark.parametrize("name", sorted(HF))
def test_merge_and_unload_keeps_outputs_and_returns_plain_linears(tmp_path, name):
    path = write_hf(tmp_path, name)
    plain_keys = list(load_ours(path, name).state_dict())
    pm = train_steps(get_peft_model(load_ours(path, name), LoraConfig(**config_for(name))), name)
    adapted = our_logits(pm)
    merged = pm.merge_and_unload()
    assert not any(isinstance(m, LoraLinear) for m in merged.modules())
    assert type(merged) is HF[name][3] and list(merged.state_dict()) == plain_keys
    np.testing.assert_allclose(our_logits(merged), adapted, rtol=1e-5, atol=1e-5)
    # the merged model is an ordinary checkpoint again: transformers reads it with the same outputs
    merged.save_pretrained(tmp_path / "merged")
    np.testing.assert_allclose(hf_logits(load_hf(tmp_path / "merged", name)), adapted, rtol=1e-4, atol=1e-4)


def test_disable_adapter_and_unload(tmp_path):
    path = write_hf(tmp_path, "llama")
    base = our_logits(load_ours(path, "llama"))
    pm = train_steps(get_peft_model(load_ours(path, "llama"), LoraConfig(**config_for("llama"))), "llama")
    adapted = our_logits(pm)
    assert not np.allclose(adapted, base)
    with pm.disable_adapter():
        assert np.array_equal(our_logits(pm), base)
    assert np.array_equal(our_logits(pm), adapted)
    assert np.array_equal(our_logits(pm.unload()), base)


def test_injection_keeps_module_order():
    seq = nf.nn.Sequential(nf.nn.Linear(4, 6), nf.nn.ReLU(), nf.nn.Linear(6, 2))
    pm = get_peft_model(seq, LoraConfig(r=2, target_modules=["0", "2"]))
    assert [type(m).__name__ for m in seq] == ["LoraLinear", "ReLU", "LoraLinear"]
    assert pm(nf.randn(3, 4)).shape == (3, 2)
    setattr(seq, "1", nf.nn.Tanh())  # re-assigning a child keeps its place
    assert [type(m).__name__ for m in seq] == ["LoraLinear", "Tanh", "LoraLinear"]


# -- files ----------------------------------------------------------------------------------------------
def test_save_pretrained_writes_only_adapter_files_with_peft_keys(tmp_path):
    path = write_hf(tmp_path, "bert")
    cfg = config_for("bert", task_type="SEQ_CLS")
    pm = get_peft_model(load_ours(path, "bert"), LoraConfig(**cfg))
    pm.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(load_hf(path, "bert"), peft.LoraConfig(**cfg))
    theirs.save_pretrained(tmp_path / "theirs")
    from safetensors import safe_open
    keys = {}
    for who in ("ours", "theirs"):
        with safe_open(str(tmp_path / who / "adapter_model.safetensors"), "pt") as f:
            keys[who] = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not iterable)
    assert keys["ours"] == keys["theirs"]
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight" in keys["ours"]
    assert "base_model.model.classifier.weight" in keys["ours"]
    config = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert config["inference_mode"] is True and config["task_type"] == "SEQ_CLS"
    assert sorted(config["target_modules"]) == ["query", "value"] and "classifier" in config["modules_to_save"]


@pytest.mark.parametrize("name", sorted(HF))
def test_our_adapter_loads_in_peft(tmp_path, name):
    path = write_hf(tmp_path, name)
    pm = train_steps(get_peft_model(load_ours(path, name), LoraConfig(**config_for(name, lora_dropout=0.1))), name)
    pm.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is (name == "gpt2")
    theirs = peft.PeftModel.from_pretrained(load_hf(path, name), tmp_path / "adapter").eval()
    np.testing.assert_allclose(hf_logits(theirs), our_logits(pm), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(HF))
def test_peft_adapter_loads_in_nnforge(tmp_path, name):
    path = write_hf(tmp_path, name)
    cfg = config_for(name, init_lora_weights=False)  # B random too, so the adapter changes the outputs
    if name == "llama":
        cfg["target_modules"] = None  # PEFT's default for llama: q_proj, v_proj
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(load_hf(path, name), peft.LoraConfig(**cfg)).eval()
    if name == "bert":
        with torch.no_grad():
            theirs.base_model.model.classifier.modules_to_save["default"].weight.mul_(3.0)
    theirs.save_pretrained(tmp_path / "adapter")
    ours = PeftModel.from_pretrained(load_ours(path, name), tmp_path / "adapter")
    assert not any(p.requires_grad for p in ours.parameters())  # is_trainable=False, as in PEFT
    expected = hf_logits(theirs)
    assert not np.allclose(expected, our_logits(load_ours(path, name)), atol=1e-3)
    np.testing.assert_allclose(our_logits(ours), expected, rtol=1e-4, atol=1e-4)
    trainable = PeftModel.from_pretrained(load_ours(path, name), tmp_path / "adapter", is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] == theirs.get_nb_trainable_parameters()[0]


# -- real checkpoint ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_sequence_classification_round_trip_with_peft(tmp_path):
    from nnforge.hub import resolve_model_path
    try:
        minilm = resolve_model_path("all-MiniLM-L6-v2")
    except (FileNotFoundError, ValueError, OSError):
        pytest.skip("all-MiniLM-L6-v2 is not available: run `nnforge download all-MiniLM-L6-v2`")
    tok = transformers.AutoTokenizer.from_pretrained(minilm)
    sentences = ["a fine film", "dull and far too long, a waste of an evening", "great"]
    enc = tok(sentences, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForSequenceClassification.from_pretrained(minilm, num_labels=2)
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                          modules_to_save=["classifier"], task_type="SEQ_CLS"))
    opt = nf.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    pm.train()
    for _ in range(2):
        loss = pm(nf.tensor(ids), attention_mask=nf.tensor(mask), labels=nf.tensor(np.array([1, 0, 1]))).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    pm.eval()
    with nf.no_grad():
        ours = pm(nf.tensor(ids), attention_mask=nf.tensor(mask)).logits.numpy()
    pm.save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.BertForSequenceClassification.from_pretrained(minilm, num_labels=2)
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        expected = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


# -- errors ---------------------------------------------------------------------------------------------
def test_errors(tmp_path):
    path = write_hf(tmp_path, "bert")
    with pytest.raises(ValueError, match=r"\['q_proj', 'nope'\] not found in BertForSequenceClassification.*"
                                         r"bert\.encoder\.layer\.0\.attention\.self\.query"):
        get_peft_model(load_ours(path, "bert"), LoraConfig(target_modules=["q_proj", "nope"]))
    with pytest.raises(ValueError, match="not found"):
        get_peft_model(load_ours(path, "bert"), LoraConfig(target_modules=r"query"))  # a str must match fully
    with pytest.raises(ValueError, match="'bert.embeddings.LayerNorm' is a LayerNorm; LoRA supports nn.Linear"):
        get_peft_model(load_ours(path, "bert"), LoraConfig(target_modules=["LayerNorm"]))
    with pytest.raises(ValueError, match="no default for model_type"):
        get_peft_model(nf.nn.Sequential(nf.nn.Linear(2, 2)), LoraConfig())
    with pytest.raises(ValueError, match=r"modules_to_save \['head'\] not found"):
        get_peft_model(load_ours(path, "bert"), LoraConfig(target_modules=["query"], modules_to_save=["head"]))
    with pytest.raises(ValueError, match="r must be a positive int"):
        LoraConfig(r=0)
    with pytest.raises(ValueError, match="bias must be one of"):
        LoraConfig(bias="some")
    with pytest.raises(NotImplementedError, match="use_dora"):
        LoraConfig.from_dict({"r": 4, "use_dora": True})
    # an adapter of another rank does not load silently
    get_peft_model(load_ours(path, "bert"), LoraConfig(r=4, target_modules=["query"])).save_pretrained(tmp_path / "a")
    rank2 = LoraConfig(r=2, target_modules=["query"])
    mismatch = r"size mismatch for .*query\.lora_A\.weight: file \(4, 32\) vs model \(2, 32\)"
    with pytest.raises(RuntimeError, match=mismatch):
        PeftModel.from_pretrained(load_ours(path, "bert"), tmp_path / "a", config=rank2)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        PeftModel.from_pretrained(load_ours(path, "bert"), tmp_path / "missing")
    x = nf.randn(2, 5)
    with pytest.raises(RuntimeError, match=r"LoraLinear\(in_features=4, out_features=3, r=2\).*got shape \(2, 5\)"):
        LoraLinear(nf.nn.Linear(4, 3), r=2)(x)
    with pytest.raises(RuntimeError, match="input dtype float64 differs from the weight dtype float32"):
        LoraLinear(nf.nn.Linear(5, 3), r=2)(x.double())
    with pytest.raises(TypeError, match="can only wrap nn.Linear, got LayerNorm"):
        LoraLinear(nf.nn.LayerNorm(4))


def test_gradient_checkpointing_gives_the_same_adapter_gradients(tmp_path):
    path = write_hf(tmp_path, "llama")
    grads = []
    for checkpointing in (False, True):
        nf.manual_seed(0)  # the same lora_A draws
        pm = get_peft_model(load_ours(path, "llama"), LoraConfig(**config_for("llama")))
        if checkpointing:
            pm.gradient_checkpointing_enable()  # reached through PeftModel's attribute forwarding
        pm.train()
        pm(nf.tensor(IDS), labels=nf.tensor(IDS)).loss.backward()
        grads.append({n: p.grad.numpy().copy() for n, p in pm.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    for n in grads[0]:
        np.testing.assert_allclose(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7, err_msg=n)
