"""``python -m lfp_snn.cli ARGS``: the same as ``lfp-snn ARGS``."""

import sys

from . import main

sys.exit(main())
