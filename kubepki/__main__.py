"""``python -m kubepki``."""

import sys

from kubepki.cli import main

sys.exit(main())
