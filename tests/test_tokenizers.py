"""nnforge.tokenizers against transformers' tokenizers on the same real files (all-MiniLM-L6-v2's folder, the
SmolLM2-135M-Instruct GGUF): ids, masks, token types, decoding, chat templates."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")
transformers = pytest.importorskip("transformers")

import nnforge as nf
from nnforge import hub
from nnforge.io.fetch_gguf import smollm2_gguf_path
from nnforge.tokenizers import AutoTokenizer, BatchEncoding

TEXTS = [
    "Hello, world!",
    "The café served crème brûlée; naïve Zoë said “¡olé!”",
    "Ünïcödé: 東京タワー, Ελληνικά, русский текст and emoji 😀🎉",
    "a",
    "Tokenizers split punctuation... like this?!  And   multiple   spaces\tand\ttabs\nand newlines.",
    "Numbers 3.14159, 1,000,000 and 2024-01-01 plus email me@example.com",
    ("It's a very long sentence that will certainly be truncated because it keeps going on and on and on "
     "without any sign of stopping soon, well past the limit."),
]
PAIRS = ["second segment", "Çava?", "", "b c d", "x" * 30, "y", "z"]
SMOL_TEXTS = [
    "Hello world",
    " leading space and trailing space ",
    "multiple    spaces   here\t\ttabs",
    "digits 12345 and 3.14159 and 1,000,000 in 2024",
    "emoji 😀🎉👍🏽 and flags 🇫🇷",
    "line one\nline two\n\n\nline five\r\nwindows",
    "Code: def f(x):\n    return x**2  # comment",
    "It's, we're, they'll, I'd, she'd've — contractions",
    "Ünïcödé: 東京タワー, Ελληνικά, русский",
    "<|im_start|>user\nspecial tokens inline<|im_end|>",
]


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return hub.download("all-MiniLM-L6-v2")  # 84 MB the first time, cached afterwards


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return AutoTokenizer.from_pretrained(minilm_dir), transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


needs_smol = pytest.mark.skipif(smollm2_gguf_path() is None,
                                reason="SmolLM2 GGUF absent; run `nnforge download smollm2-135m-instruct`")


@pytest.fixture(scope="module")
def smol():
    path = smollm2_gguf_path()
    ref = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(path), ref


def _assert_same(ours, theirs, keys=("input_ids", "attention_mask", "token_type_ids")):
    for key in keys:
        assert key in ours, key
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(theirs[key]), err_msg=key)


# -- BERT WordPiece (all-MiniLM-L6-v2) ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"padding": True, "truncation": True, "max_length": 24},
    {"padding": "max_length", "truncation": True, "max_length": 40},
    {"padding": "longest"},
    {"padding": True, "truncation": "only_second", "max_length": 30, "pairs": True},
    {"padding": True, "truncation": True, "max_length": 20, "pairs": True},
])
def test_minilm_batch_matches_transformers(minilm, kwargs):
    ours, ref = minilm
    kwargs = dict(kwargs)
    pairs = PAIRS if kwargs.pop("pairs", False) else None
    texts = TEXTS
    if kwargs.get("truncation") == "only_second":  # only the second segment is cut: make it the long one
        texts, pairs = [t[:12] for t in TEXTS], [t + " " + p for t, p in zip(TEXTS[::-1], PAIRS)]
    got = ours(texts, pairs, return_tensors="np", **kwargs)
    want = ref(texts, pairs, return_tensors="np", **kwargs)
    assert isinstance(got, BatchEncoding) and list(got) == ["input_ids", "token_type_ids", "attention_mask"]
    assert got["input_ids"].dtype == np.int64
    _assert_same(got, want)


def test_minilm_single_text_lists_and_specials(minilm):
    ours, ref = minilm
    for text in TEXTS:
        got, want = ours(text), ref(text)
        assert got["input_ids"] == want["input_ids"] and got.attention_mask == want["attention_mask"]
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)
        assert ours.tokenize(text) == ref.tokenize(text)
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id, ours.unk_token_id, ours.mask_token_id) == \
        (ref.pad_token_id, ref.cls_token_id, ref.sep_token_id, ref.unk_token_id, ref.mask_token_id) == \
        (0, 101, 102, 100, 103)
    assert ours.vocab_size == len(ours) == ref.vocab_size == 30522
    assert ours.model_max_length == 512 and ours.padding_side == "right"
    # no max_length: truncation=True falls back to model_max_length (512)
    long = " ".join(["word"] * 600)
    assert len(ours(long, truncation=True)["input_ids"]) == len(ref(long, truncation=True)["input_ids"]) == 512


def test_minilm_decode_round_trip(minilm):
    ours, ref = minilm
    batch = ours(TEXTS, padding=True)["input_ids"]
    for ids in batch:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    assert ours.batch_decode(batch, skip_special_tokens=True) == ref.batch_decode(batch, skip_special_tokens=True)
    text = "hello, world! this is a simple lowercase sentence."
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == text
    assert ours.convert_ids_to_tokens(ours.encode("hello")) == ["[CLS]", "hello", "[SEP]"]


def test_minilm_vocab_txt_only_matches(minilm, minilm_dir, tmp_path):
    """Without tokenizer.json, vocab.txt + tokenizer_config.json build the same WordPiece pipeline."""
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    ours = AutoTokenizer.from_pretrained(tmp_path)
    _, ref = minilm
    kw = {"padding": True, "truncation": True, "max_length": 32, "return_tensors": "np"}
    _assert_same(ours(TEXTS, PAIRS, **kw), ref(TEXTS, PAIRS, **kw))
    # do_lower_case=False in the config keeps case (and accents)
    config = json.loads((minilm_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    cased = AutoTokenizer.from_pretrained(tmp_path)
    assert cased.tokenize("Hello")[0] != "hello"


def test_return_tensors_nf_and_errors(minilm):
    ours, _ = minilm
    enc = ours(["a b c", "d"], padding=True, return_tensors="nf")
    assert isinstance(enc["input_ids"], nf.Tensor) and enc.input_ids.shape == (2, 5)
    assert enc["input_ids"].dtype == nf.int64
    assert ours.decode(enc["input_ids"][0]) == "[CLS] a b c [SEP]"
    with pytest.raises(ValueError, match="different lengths.*padding=True"):
        ours(["a b c", "d"], return_tensors="np")
    with pytest.raises(ValueError, match="padding must be"):
        ours("a", padding="sideways")
    with pytest.raises(ValueError, match="return_tensors"):
        ours("a", return_tensors="tf")
    with pytest.raises(ValueError, match="1 texts but 2 text_pair"):
        ours(["a"], ["b", "c"])


def test_left_padding(minilm):
    ours, ref = minilm
    ref.padding_side = "left"
    try:
        got = AutoTokenizer.from_pretrained(ours.name_or_path, padding_side="left")(TEXTS[:3], padding=True,
                                                                                     return_tensors="np")
        _assert_same(got, ref(TEXTS[:3], padding=True, return_tensors="np"))
        assert got["attention_mask"][0, 0] == 0 and got["attention_mask"][0, -1] == 1
    finally:
        ref.padding_side = "right"


def test_save_pretrained_round_trip(minilm, tmp_path):
    ours, ref = minilm
    ours.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    kw = {"padding": True, "truncation": True, "max_length": 16, "return_tensors": "np"}
    _assert_same(again(TEXTS, **kw), ref(TEXTS, **kw))
    reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))  # transformers reads our files
    _assert_same(reloaded(TEXTS, **kw), ref(TEXTS, **kw))


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        AutoTokenizer.from_pretrained(tmp_path)


# -- byte-level BPE from the SmolLM2 GGUF -----------------------------------------------------------------------
@needs_smol
def test_smollm2_gguf_ids_match_transformers(smol):
    ours, ref = smol
    for text in SMOL_TEXTS:
        assert ours(text)["input_ids"] == ref(text)["input_ids"], text
        assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text)) == text
    assert (ours.bos_token, ours.eos_token, ours.pad_token, ours.unk_token) == \
        (ref.bos_token, ref.eos_token, ref.pad_token, ref.unk_token)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (1, 2, 2)
    assert ours.vocab_size == len(ours) == len(ref) == 49152
    ids = ours(SMOL_TEXTS[-1])["input_ids"]
    assert ids[0] == 1 and ours.decode(ids, skip_special_tokens=True) == \
        ref.decode(ids, skip_special_tokens=True)


@needs_smol
def test_smollm2_batch_left_padding(smol):
    ours, ref = smol
    ours.padding_side = ref.padding_side = "left"
    try:
        got = ours(SMOL_TEXTS, padding=True, return_tensors="np")
        want = ref(SMOL_TEXTS, padding=True, return_tensors="np")
        _assert_same(got, want, keys=("input_ids", "attention_mask"))
        assert "token_type_ids" not in got
    finally:
        ours.padding_side = ref.padding_side = "right"


@needs_smol
def test_smollm2_chat_template_matches_transformers(smol):
    ours, ref = smol
    chat = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
    text = ours.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text == ref.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
    ids = ours.apply_chat_template(chat, add_generation_prompt=True)
    want = ref.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert ids == list(want)
    arr = ours.apply_chat_template(chat, add_generation_prompt=True, return_tensors="np")
    assert arr.shape == (1, len(ids))
    # no system message: the template inserts its default one
    user_only = [{"role": "user", "content": "Hi"}]
    assert ours.apply_chat_template(user_only, tokenize=False) == \
        ref.apply_chat_template(user_only, tokenize=False)


def test_chat_template_context_and_errors():
    from nnforge.tokenizers.chat import render_chat
    tpl = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'tool' %}"
           "{{ raise_exception('no tools') }}{% endif %}{{ m['content'] | tojson }}{% endfor %}")
    assert render_chat(tpl, [{"role": "user", "content": "<b>é</b>"}], bos_token="<s>") == '<s>"<b>é</b>"'
    import jinja2
    with pytest.raises(jinja2.exceptions.TemplateError, match="no tools"):
        render_chat(tpl, [{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="empty"):
        render_chat(tpl, [])


def test_missing_optional_packages_say_what_to_install(minilm_dir, monkeypatch):
    import sys

    from nnforge.tokenizers import chat
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(ImportError, match=r"pip install nnforge\[hf\]"):
        AutoTokenizer.from_pretrained(minilm_dir)
    monkeypatch.setitem(sys.modules, "jinja2", None)
    chat._compile.cache_clear()
    with pytest.raises(ImportError, match=r"jinja2.*pip install nnforge\[hf\]"):
        chat.render_chat("{{ messages }}", [{"role": "user", "content": "x"}])
    chat._compile.cache_clear()
