"""`python -m service.emulator`: the same as `user-sync emulator`."""

import sys

from service.emulator.cli import main

sys.exit(main())
