"""`python -m zoo`: the `zoo` command, where its script is not on PATH."""

import sys

from zoo.cli import main

sys.exit(main())
