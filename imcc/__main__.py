"""`python -m imcc` is the `imcc` command."""

import sys

from imcc.cli import main

sys.exit(main())
