"""``python -m vtune``: the same as the ``vtune`` command."""

import sys

from vtune.cli import main

if __name__ == "__main__":
    sys.exit(main())
