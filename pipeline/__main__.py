"""`python -m pipeline` is `capi-sync`."""
import sys

from pipeline.cli import main

sys.exit(main())
