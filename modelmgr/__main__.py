"""`python -m modelmgr ...`; the same as the `modelmgr` script."""

import sys

from modelmgr.cli import main

sys.exit(main())
