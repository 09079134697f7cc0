"""The LoRA examples run end to end on small settings and write adapters that load back."""
from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def _need(name: str) -> None:
    from nnforge.hub import resolve_model_path
    try:
        resolve_model_path(name)
    except (FileNotFoundError, ValueError, OSError) as e:
        pytest.skip(f"{name} is not available: {e}")


@pytest.mark.slow
def test_finetune_lora_minilm_small_run(tmp_path):
    _need("all-MiniLM-L6-v2")
    import finetune_lora

    out = finetune_lora.main(["--subset", "200", "--epochs", "1", "--max-length", "24", "--save", str(tmp_path)])
    assert 0.30 < out["trainable_percent"] < 0.35  # 74,498 of 22.8 M: adapters on query/value + the classifier
    assert 0.0 <= out["test_accuracy"] <= 1.0 and len(out["epoch_seconds"]) == 1
    from nnforge.models import BertForSequenceClassification
    from nnforge.peft import PeftModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = BertForSequenceClassification.from_pretrained("all-MiniLM-L6-v2", num_labels=2)
    model = PeftModel.from_pretrained(base, tmp_path)
    assert len(model.lora_module_names) == 12 and model.modules_to_save_names == ["classifier"]


@pytest.mark.slow
def test_lora_smollm2_small_run(tmp_path):
    _need("smollm2-135m-instruct")
    import lora_smollm2

    out = lora_smollm2.main(["--steps", "2", "--batch-size", "1", "--block-size", "32", "--eval-blocks", "2",
                             "--max-new-tokens", "3", "--save", str(tmp_path)])
    assert math.isfinite(out["perplexity_before"]) and math.isfinite(out["perplexity_after"])
    assert out["perplexity_after"] != out["perplexity_before"]  # the adapter changed the model
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"] and config["task_type"] == "CAUSAL_LM"
