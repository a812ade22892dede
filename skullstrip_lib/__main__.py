"""python -m skullstrip_lib: the same as the skullstrip command."""

import sys

from .cli import main

sys.exit(main())
