"""A local Conversions API emulator: a real HTTP server on loopback (contract section 9).

It answers like the API: auth and key type, `pid`, the `{events: [...]}` envelope, 1 to 1,000
events, every published per-event rule (its own encoding in `rules`, written from the contract
and independent of `transforms.validate`, which it exists to check), all-or-nothing batches. It
records accepted events once per dedup key (pixel, event name, id), where the event name is
`custom_event_name` for custom events; the first event of a key wins and later ones are
ignored, as at the API. It honours `validate_only` and injects faults on request. Tests use it
as a context manager on port 0::

    with Emulator(api_key="sk-svcacct-test", pixel_id="px_1") as emulator:
        requests.post(emulator.url, params={"pid": "px_1"}, json={"events": [...]},
                      headers={"Authorization": "Bearer sk-svcacct-test"})
        assert emulator.recorded_events("px_1") == [...]

Users check a mapping offline with the command line (prints the endpoint, then serves)::

    python -m connectors.emulator --port 8080 --api-key sk-svcacct-local --pixel-id px_1

The package, one job per module:
- `rules`: the published rules (envelope, auth, per-event rules, user wire shapes, dedup key);
- `core`: the `Emulator` (state, lifecycle, answering POST /v1/events, recording);
- `faults`: fault injection (429 with Retry-After, 5xx, drop, lost response, latency);
- `admin`: the admin endpoints under /_emulator/ (events, stats, requests, faults, reject, ...);
- `server`: the HTTP request handler; `responses`: what an answer is;
- `fast`: `--fast` mode's keys-only decoding (benchmarks);
- `cli`: `python -m connectors.emulator`.
"""
from connectors.emulator.cli import main
from connectors.emulator.core import DEFAULT_MAX_BODY_BYTES, NO_RESPONSE, Emulator
from connectors.emulator.faults import FAULT_KINDS
from connectors.emulator.server import EVENTS_PATH

__all__ = ["DEFAULT_MAX_BODY_BYTES", "EVENTS_PATH", "FAULT_KINDS", "NO_RESPONSE", "Emulator",
           "main"]
