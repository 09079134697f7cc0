"""Reference for ``finetune_full.py``: the same full fine-tuning with transformers + PyTorch (test-only deps).

Same rows and token ids (``_movie_data.load_splits``), same initial classification head, same batch order
(a NumPy PCG64 permutation per epoch seeded like nnforge's Trainer), same AdamW groups, warmup schedule, batch
size and epochs. Only the dropout masks differ (each framework draws its own).

Run: ``python examples/compare_transformers_full.py [--epochs 1] [--subset N] [--max-length 64]``
"""
from __future__ import annotations

import time

import numpy as np
from _movie_data import MODEL, arguments, classifier_init, load_splits

NO_DECAY = ("bias", "LayerNorm.weight")


def main(argv: list | None = None) -> dict:
    import torch
    import transformers
    from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup

    from nnforge.hub import resolve_model_path

    args = arguments(__doc__.splitlines()[0], epochs=1, batch_size=32, lr=1e-4).parse_args(argv)
    data = load_splits(args.max_length, args.subset, args.seed)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    model = BertForSequenceClassification.from_pretrained(str(resolve_model_path(MODEL)), num_labels=2)
    w, b = classifier_init(args.seed, 2, model.config.hidden_size)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(w))
        model.classifier.bias.copy_(torch.from_numpy(b))
    decay = [p for n, p in model.named_parameters() if not any(s in n for s in NO_DECAY)]
    no_decay = [p for n, p in model.named_parameters() if any(s in n for s in NO_DECAY)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    n = len(data["train"]["labels"])
    steps = args.epochs * -(-n // args.batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    order_rng = np.random.Generator(np.random.PCG64(args.seed))

    def batch(split: dict, rows: np.ndarray) -> tuple:
        return (torch.from_numpy(split["input_ids"][rows]), torch.from_numpy(split["attention_mask"][rows]),
                torch.from_numpy(split["labels"][rows]))

    def evaluate(split: dict) -> tuple:
        model.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(split["labels"]), args.batch_size):
                ids, mask, y = batch(split, np.arange(i, min(i + args.batch_size, len(split["labels"]))))
                logits = model(input_ids=ids, attention_mask=mask).logits
                total += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
                correct += int((logits.argmax(-1) == y).sum())
        return total / len(split["labels"]), correct / len(split["labels"])

    losses, epoch_seconds = [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        order = order_rng.permutation(n)
        for i in range(0, n, args.batch_size):
            ids, mask, y = batch(data["train"], order[i:i + args.batch_size])
            loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        val_loss, val_acc = evaluate(data["val"])
        epoch_seconds.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{args.epochs}: val_loss {val_loss:.4f}, val_accuracy {val_acc:.4f}")
    test_loss, test_acc = evaluate(data["test"])
    print(f"train loss {np.mean(losses):.4f}; test accuracy {test_acc:.4f} (loss {test_loss:.4f}); time per epoch "
          f"(train + validation) {', '.join(f'{s:.1f}s' for s in epoch_seconds)}")
    return {"train_loss": float(np.mean(losses)), "test_accuracy": test_acc, "epoch_seconds": epoch_seconds}


if __name__ == "__main__":
    main()
