"""`python -m connectors.emulator`: serve the emulator until SIGTERM or Ctrl-C.

Prints `listening on <url>` first (scripts read the port from it), and the counters on stderr
when it stops.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from connectors.emulator.core import DEFAULT_MAX_BODY_BYTES, Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.emulator",
        description="Local OpenAI Conversions API emulator on 127.0.0.1 (for tests and for "
                    "checking a mapping offline). Admin: GET /_emulator/events, /_emulator/stats.")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--api-key", default="sk-svcacct-test",
                        help="the Conversions API key the emulator accepts")
    parser.add_argument("--pixel-id", action="append", dest="pixel_ids",
                        help="a pixel id the emulator knows (repeatable; default px_test)")
    parser.add_argument("--revoked-key", action="append", default=[],
                        help="a key answered with 401 API key revoked (repeatable)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every answer by this many milliseconds")
    parser.add_argument("--fast", action="store_true",
                        help="benchmark mode: read only each event's dedup key (no per-event"
                             " validation), keep only dedup keys")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    args = parser.parse_args(argv)

    emulator = Emulator(args.api_key, args.pixel_ids or ["px_test"], args.port,
                        latency_s=args.latency_ms / 1000.0, fast=args.fast,
                        revoked_keys=args.revoked_key, max_body_bytes=args.max_body_bytes)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with emulator:
        print(f"listening on {emulator.url}", flush=True)
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print(json.dumps(emulator.stats, default=str), file=sys.stderr, flush=True)
    return 0
