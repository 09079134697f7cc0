"""LoRA fine-tuning of all-MiniLM-L6-v2 for sentence sentiment with ``nnforge.peft`` and ``nnforge.train.Trainer``.

``BertForSequenceClassification`` (pooled [CLS] -> dropout -> Linear(384, 2)) on the movie-review sentences,
stratified 80/10/10 split (seed 0, shared with ``finetune_full.py``). Only rank-8 adapters on every layer's
``query`` and ``value`` (lora_alpha 16, dropout 0.1) and the new ``classifier`` head (``modules_to_save``) are
trained: AdamW (lr 1e-3), linear warmup over the first 10% of the steps then linear decay, batch 32,
max_length 64. ``--save DIR`` writes the adapter (adapter_config.json + adapter_model.safetensors), which
Hugging Face PEFT loads with ``PeftModel.from_pretrained(transformers_model, DIR)``.

Run: ``python examples/finetune_lora.py [--epochs 2] [--subset N] [--max-length 64] [--save adapter/]``
"""
from __future__ import annotations

import warnings

from _movie_data import MODEL, arguments, classifier_init, load_splits, train_and_test

import nnforge as nf
from nnforge.models import BertForSequenceClassification
from nnforge.peft import LoraConfig, get_peft_model


def main(argv: list | None = None) -> dict:
    parser = arguments(__doc__.splitlines()[0], epochs=2, batch_size=32, lr=1e-3)
    parser.add_argument("--r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--save", default=None, help="directory for the trained adapter")
    args = parser.parse_args(argv)
    nf.manual_seed(args.seed)
    data = load_splits(args.max_length, args.subset, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "classifier.* newly initialized": set just below
        model = BertForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    w, b = classifier_init(args.seed, 2, model.config.hidden_size)
    model.classifier.load_state_dict({"weight": w, "bias": b})

    config = LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.1, target_modules=["query", "value"],
                        modules_to_save=["classifier"], task_type="SEQ_CLS")
    model = get_peft_model(model, config)
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()

    optimizer = nf.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    result, test, epoch_seconds = train_and_test(model, optimizer, data, args)
    print(f"train loss {result['train_loss']:.4f}; test accuracy {test['eval_accuracy']:.4f} "
          f"(loss {test['eval_loss']:.4f}); trainable {trainable:,d} of {total:,d} parameters "
          f"({100 * trainable / total:.2f}%); time per epoch (train + validation) "
          f"{', '.join(f'{s:.1f}s' for s in epoch_seconds)}")
    if args.save:
        model.save_pretrained(args.save)
        print(f"adapter saved to {args.save}")
    return {"train_loss": result["train_loss"], "test_accuracy": test["eval_accuracy"],
            "trainable_percent": 100 * trainable / total, "epoch_seconds": epoch_seconds}


if __name__ == "__main__":
    main()
