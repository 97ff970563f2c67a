"""`python -m pipeline` is `capi-sync`."""
from pipeline.cli import entry

entry()
