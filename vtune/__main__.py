import sys

from vtune.cli import main

sys.exit(main())
