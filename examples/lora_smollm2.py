"""LoRA on SmolLM2-135M-Instruct (GGUF) for Jane Austen's prose: held-out perplexity and a generation, before
and after a few dozen steps.

The Q4_1 GGUF checkpoint is dequantised to float32 by ``LlamaForCausalLM.from_pretrained``; rank-8 adapters
(lora_alpha 16, dropout 0.05) go on every layer's ``q_proj`` and ``v_proj`` (0.3% of the parameters) and
nothing else trains. Text: one novel's paragraphs (default Pride and Prejudice), tokenised with the model's
own vocabulary and cut into ``--block-size``-token blocks; training blocks come from the start of the book,
held-out blocks from its end. AdamW (lr 1e-3), batches of ``--batch-size`` random training blocks.

Run: ``python examples/lora_smollm2.py [--steps 30] [--block-size 64] [--batch-size 2] [--save adapter/]``
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import nnforge as nf
from nnforge.datasets import load_jane_austen_lines
from nnforge.models import LlamaForCausalLM
from nnforge.peft import LoraConfig, get_peft_model
from nnforge.tokenizers import AutoTokenizer

MODEL = "smollm2-135m-instruct"
PROMPT = "Elizabeth walked into the drawing-room, where"


def paragraphs(book: str) -> list:
    """The book's paragraphs (blank-line separated), each as one line of text."""
    out, current = [], []
    for line in load_jane_austen_lines([book])[book] + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(" ".join(current))
            current = []
    return [p for p in out if not p.isupper()]  # drop headings such as "CHAPTER 1"


def blocks(tokenizer, texts: list, n_blocks: int, block_size: int) -> np.ndarray:
    """Tokenise paragraphs in order until ``n_blocks`` blocks of ``block_size`` tokens are filled: (n, L)."""
    ids: list = []
    for text in texts:
        ids += tokenizer.encode(text + "\n\n", add_special_tokens=False)
        if len(ids) >= n_blocks * block_size:
            break
    n = min(n_blocks, len(ids) // block_size)
    return np.asarray(ids[:n * block_size], dtype=np.int64).reshape(n, block_size)


def perplexity(model, data: np.ndarray, batch_size: int) -> float:
    """exp(mean next-token loss) over the blocks (every block has the same number of predicted tokens)."""
    losses = []
    with nf.no_grad():
        for i in range(0, len(data), batch_size):
            ids = nf.tensor(data[i:i + batch_size])
            losses.append(model(ids, labels=ids).loss.item() * len(ids))
    return math.exp(sum(losses) / len(data))


def generate(model, tokenizer, max_new_tokens: int) -> str:
    ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    out = model.generate(nf.tensor([ids]), max_new_tokens=max_new_tokens, repetition_penalty=1.1)
    return tokenizer.decode(out.numpy()[0, len(ids):].tolist(), skip_special_tokens=True)


def main(argv: list | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--block-size", type=int, default=64, help="tokens per training/held-out sequence")
    p.add_argument("--eval-blocks", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--book", default="prideprejudice")
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="directory for the trained adapter")
    args = p.parse_args(argv)
    nf.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = LlamaForCausalLM.from_pretrained(MODEL)
    paras = paragraphs(args.book)
    train = blocks(tokenizer, paras, args.steps * args.batch_size, args.block_size)
    held_out = blocks(tokenizer, paras[-len(paras) // 10:], args.eval_blocks, args.block_size)
    print(f"{MODEL}: {len(train)} training and {len(held_out)} held-out blocks of {args.block_size} tokens "
          f"from {args.book!r}")

    t0 = time.perf_counter()
    ppl_before = perplexity(model, held_out, args.batch_size)
    text_before = generate(model, tokenizer, args.max_new_tokens)
    print(f"before: held-out perplexity {ppl_before:.2f} ({time.perf_counter() - t0:.0f}s with the generation)")
    print(f"  {PROMPT}{text_before}")

    model = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.print_trainable_parameters()
    optimizer = nf.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=args.lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    order = rng.permutation(len(train))
    for step in range(args.steps):
        rows = order[(step * args.batch_size) % len(train):][:args.batch_size]
        ids = nf.tensor(train[rows])
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step + 1:3d}/{args.steps}  loss {loss.item():.3f}  "
                  f"({(time.perf_counter() - t0) / (step + 1):.2f}s/step)")
    train_seconds = time.perf_counter() - t0
    model.eval()

    ppl_after = perplexity(model, held_out, args.batch_size)
    text_after = generate(model, tokenizer, args.max_new_tokens)
    print(f"after {args.steps} steps ({train_seconds:.0f}s): held-out perplexity {ppl_after:.2f} "
          f"(before {ppl_before:.2f})")
    print(f"  {PROMPT}{text_after}")
    if args.save:
        model.save_pretrained(args.save)
        print(f"adapter saved to {args.save}")
    return {"perplexity_before": ppl_before, "perplexity_after": ppl_after, "train_seconds": train_seconds,
            "generation_before": text_before, "generation_after": text_after}


if __name__ == "__main__":
    main()
