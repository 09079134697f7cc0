"""``python -m nnforge`` = the ``nnforge`` command."""
import sys

from .cli import main

sys.exit(main())
