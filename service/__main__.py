"""`python -m service` is `user-sync`."""

import sys

from service.cli import main

sys.exit(main())
