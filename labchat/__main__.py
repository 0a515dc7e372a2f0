"""`python -m labchat` works like the `labchat` command."""

import sys

from .cli import main

sys.exit(main())
