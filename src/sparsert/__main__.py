"""``python -m sparsert``: the same as the ``sparsert`` command."""

import sys

from sparsert.cli import main

if __name__ == "__main__":
    sys.exit(main())
