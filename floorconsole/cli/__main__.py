"""`python -m floorconsole.cli ...`, the same as the `floorconsole` console script."""

import sys

from floorconsole.cli import main

sys.exit(main())
