"""``python -m fer_data inspect PATH``: see fer_data/cli.py."""

import sys

from .cli import main

sys.exit(main())
