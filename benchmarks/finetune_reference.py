"""The default ``nnforge finetune`` run redone with transformers + PyTorch: same data, cleaning, split, tokens,
length-bucketed batches, AdamW (weight decay 0.01 except biases/LayerNorm), linear warmup/decay, gradient clipping,
epochs and learning rate; prints test accuracy, wall and CPU time (the README quotes both frameworks).

    python benchmarks/finetune_reference.py [--config run/config.yaml] [--threads N]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import time
import warnings

import numpy as np
import torch

from nnforge.data import bucket_batches, pad_sequences, stratified_split
from nnforge.finetune.config import FinetuneConfig, load_yaml
from nnforge.finetune.dataset import encode, label_targets, load_examples
from nnforge.finetune.predict import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", help="a run's config.yaml (default: the finetune defaults)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    cfg = FinetuneConfig.from_dict(load_yaml(args.config) if args.config else {})
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup
    transformers.logging.set_verbosity_error()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    path = resolve_model(cfg.model)
    ex = load_examples(cfg.data, cfg.task, cfg.text_column, cfg.label_column, cfg.unicode_form, cfg.limit)
    targets, names = label_targets(ex.raw_labels, cfg.task, source=ex.source)
    train_idx, _, test_idx = stratified_split(
        list(targets), (1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction), seed=cfg.seed)
    tok = AutoTokenizer.from_pretrained(path)
    ids = encode(tok, ex.texts, cfg.max_length)
    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForSequenceClassification.from_pretrained(path, num_labels=len(names))
    train = [ids[i] for i in train_idx]
    batches = bucket_batches([len(s) for s in train], cfg.batch_size, cfg.seed)
    steps = cfg.max_steps or cfg.epochs * len(batches)
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps), steps)
    rng = np.random.default_rng(cfg.seed)
    y_train = torch.from_numpy(targets[train_idx])
    model.train()
    step, t_train = 0, time.perf_counter()
    while step < steps:
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            x, m = pad_sequences([train[j] for j in idx], tok.pad_token_id or 0)
            loss = model(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(m),
                         labels=y_train[idx]).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                print(f"step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - t_train:.0f} s)", flush=True)
            if step >= steps:
                break
    model.eval()
    test = [ids[i] for i in test_idx]
    correct = 0
    with torch.no_grad():
        for idx in bucket_batches([len(s) for s in test], cfg.batch_size, None):
            x, m = pad_sequences([test[j] for j in idx], tok.pad_token_id or 0)
            pred = model(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(m)).logits.argmax(-1).numpy()
            correct += int((pred == targets[test_idx][idx]).sum())
    print(f"transformers {transformers.__version__} + torch {torch.__version__} ({torch.get_num_threads()} threads): "
          f"test_accuracy {correct / len(test):.4f} on {len(test)} examples, {steps} steps; "
          f"{time.perf_counter() - wall0:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU")


if __name__ == "__main__":
    main()
