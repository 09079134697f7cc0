"""Sentence sentiment with a frozen all-MiniLM-L6-v2 and a trained ``Dense(1, sigmoid)`` head, Keras style.

The pretrained encoder (mean pooling over its token states, as sentence-transformers does) stays frozen; only
``Linear(384, 1)`` + sigmoid learns, through ``compile`` / ``fit`` / ``evaluate``. Data: the movie-review
sentences, stratified 80/10/10 split (seed 0); ``fit`` gets train + validation rows with ``validation_split``
chosen so that the held-out tail is exactly the validation split (Keras takes it from the end). The backbone
runs at every step (no feature caching), as in the original program.

Run: ``python examples/seed_keras_style.py [--epochs 2] [--subset 2000] [--max-length 64]``
"""
from __future__ import annotations

import numpy as np
from _movie_data import arguments, epoch_timer, load_splits, mean_pooled_classifier

import nnforge as nf


def main(argv: list | None = None) -> dict:
    args = arguments(__doc__.splitlines()[0], epochs=2, batch_size=32).parse_args(argv)
    nf.manual_seed(args.seed)
    data = load_splits(args.max_length, args.subset, args.seed)
    tr, va, te = data["train"], data["val"], data["test"]
    x_train = {k: np.concatenate([tr[k], va[k]]) for k in ("input_ids", "attention_mask")}
    y_train = np.concatenate([tr["labels"], va["labels"]]).astype(np.float32)[:, None]  # (N, 1) like Dense(1)
    x_test = {k: te[k] for k in ("input_ids", "attention_mask")}
    y_test = te["labels"].astype(np.float32)[:, None]

    model = mean_pooled_classifier(sigmoid=True)
    model.backbone.freeze()  # Keras: backbone.trainable = False
    # "adam": Adam(lr=1e-3) over the trainable parameters (the head)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    timer = epoch_timer()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=len(va["labels"]) / len(y_train), callbacks=[timer], verbose=2)
    test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=args.batch_size)
    print(f"test accuracy {test_acc:.4f} (loss {test_loss:.4f}); time per epoch "
          f"{', '.join(f'{s:.1f}s' for s in timer.seconds)}")
    return {"losses": history.history["loss"], "val_accuracy": history.history["val_accuracy"],
            "test_accuracy": test_acc, "epoch_seconds": timer.seconds}


if __name__ == "__main__":
    main()
