"""Full fine-tuning of all-MiniLM-L6-v2 for sentence sentiment with ``nnforge.train.Trainer``.

``BertForSequenceClassification`` (pooled [CLS] -> dropout -> Linear(384, 2)) on the movie-review sentences,
stratified 80/10/10 split (seed 0), every weight trained: AdamW (lr 1e-4, weight decay 0.01 except biases and
LayerNorm weights), linear warmup over the first 10% of the steps then linear decay, batch 32, max_length 64.
``compare_transformers_full.py`` runs the same recipe (same rows, same batch order, same initial head) with
transformers + PyTorch.

Run: ``python examples/finetune_full.py [--epochs 1] [--subset N] [--max-length 64]``
"""
from __future__ import annotations

import warnings

from _movie_data import MODEL, arguments, classifier_init, load_splits, train_and_test

import nnforge as nf
from nnforge.models import BertForSequenceClassification

NO_DECAY = ("bias", "LayerNorm.weight")


def main(argv: list | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], epochs=1, batch_size=32, lr=1e-4).parse_args(argv)
    data = load_splits(args.max_length, args.subset, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "classifier.* newly initialized": set just below
        model = BertForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    w, b = classifier_init(args.seed, 2, model.config.hidden_size)
    model.classifier.load_state_dict({"weight": w, "bias": b})

    decay = [p for n, p in model.named_parameters() if not any(s in n for s in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(s in n for s in NO_DECAY)]
    optimizer = nf.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                               lr=args.lr)
    result, test, epoch_seconds = train_and_test(model, optimizer, data, args)
    print(f"train loss {result['train_loss']:.4f}; test accuracy {test['eval_accuracy']:.4f} "
          f"(loss {test['eval_loss']:.4f}); time per epoch (train + validation) "
          f"{', '.join(f'{s:.1f}s' for s in epoch_seconds)}")
    return {"train_loss": result["train_loss"], "test_accuracy": test["eval_accuracy"],
            "epoch_seconds": epoch_seconds}


if __name__ == "__main__":
    main()
