"""`python -m connectors.emulator --port 8080 --api-key sk-svcacct-local --pixel-id px_1`"""
import sys

from connectors.emulator.cli import main

sys.exit(main())
