"""``python -m squeezedet``: the command line, as the ``squeezedet`` script."""

import sys

from squeezedet.cli import main

sys.exit(main())
