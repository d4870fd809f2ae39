"""``python -m posemask`` = the `posemask` command."""

import sys

from posemask.cli import main

sys.exit(main())
