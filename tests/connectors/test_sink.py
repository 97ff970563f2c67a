"""DeliverBatches on DirectRunner and called directly, against the emulator over loopback."""
from __future__ import annotations

import pickle
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from connectors.capi_client import AuthenticationError, InsecureEndpointError, RetryPolicy
from connectors.emulator import Emulator
from connectors.sink import DeliverBatches
from transforms import reasons
from transforms.deadletter import DeadLetter
from transforms.errors import ConfigError
from transforms.events import MAX_AGE_MS, MappedEvent

KEY = "sk-svcacct-sink-test"
KEY_ENV = "CAPI_SYNC_TEST_KEY"
FAST_RETRY = RetryPolicy(max_attempts=4, max_elapsed_s=10.0, initial_backoff_s=0.01,
                         max_backoff_s=0.05)


def make_event(event_id: str, timestamp_ms: int | None = None) -> dict:
    return {"id": event_id, "type": "lead_created", "action_source": "offline",
            "timestamp_ms": time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms,
            "data": {"type": "customer_action"}}


def make_batch(*event_ids: str, pixel_id: str | None = None) -> list[MappedEvent]:
    return [MappedEvent(pixel_id, make_event(event_id), f"export.parquet#row={event_id}")
            for event_id in event_ids]


def make_sink(emulator: Emulator, **options) -> DeliverBatches:
    options.setdefault("retry", FAST_RETRY)
    return DeliverBatches(emulator.url, "px_a", api_key_env=KEY_ENV, **options)


def capi_counters(result) -> dict[str, int]:
    counters = result.metrics().query(MetricsFilter().with_namespace("capi"))["counters"]
    return {counter.key.metric.name: counter.committed for counter in counters}


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with Emulator(api_key=KEY, pixel_id=["px_a", "px_b"]) as emu:
        yield emu


def test_pipeline_delivers_batches_and_tags_dead_letters(emulator):
    stale = MappedEvent(None, make_event("old-1", time.time_ns() // 1_000_000 - MAX_AGE_MS
                                         - 60_000), "export.parquet#row=9")
    batches = [make_batch("a-1", "a-2", "a-3"),
               make_batch("b-1", "bad-1", pixel_id="px_b"),
               [stale]]
    emulator.reject_event_ids(["bad-1"], message="blocked")
    emulator.inject("503", count=1)

    pipeline = BeamTestPipeline()
    results = (pipeline
               | beam.Create(batches)
               | beam.ParDo(make_sink(emulator)).with_outputs(DeliverBatches.DEAD_LETTERS,
                                                              main="accepted"))
    assert_that(results.accepted, equal_to([3, 1, 0]))
    assert_that(results.dead_letters
                | beam.Map(lambda d: (d.reason, d.event_id, d.source, d.event["id"], d.detail)),
                equal_to([(reasons.REJECTED_BY_API, "bad-1", "export.parquet#row=bad-1", "bad-1",
                           "events[0]: rejected: blocked"),
                          (reasons.STALE_TIMESTAMP, "old-1", "export.parquet#row=9", "old-1",
                           "timestamp_ms is more than 7 days in the past")]),
                label="DeadLetters")
    result = pipeline.run()
    result.wait_until_finish()

    assert sorted(e["id"] for e in emulator.recorded_events("px_a")) == ["a-1", "a-2", "a-3"]
    assert [e["id"] for e in emulator.recorded_events("px_b")] == ["b-1"]
    # px_a: 1 request; px_b: 1 (400) + 2 halves (200, 400); the stale batch sends nothing;
    # plus one retry after the injected 503.
    assert capi_counters(result) == {
        "events_accepted": 4,
        "requests": 5, "retries": 1, "http_200": 2, "http_400": 2, "http_503": 1,
        # what the 4 delivered events carry (transforms/coverage.py): no identifier
        "sent.lead_created": 4, "filled.action_source": 4}


def test_authentication_error_fails_the_pipeline_after_one_request(emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-svcacct-wrong")
    pipeline = BeamTestPipeline()
    _ = (pipeline
         | beam.Create([make_batch("a-1"), make_batch("a-2"), make_batch("a-3")])
         | beam.ParDo(make_sink(emulator, max_in_flight=1)))

    with pytest.raises(Exception, match="Authentication failed \\(401\\)") as raised:
        pipeline.run().wait_until_finish()

    assert "sk-svcacct-wrong" not in str(raised.value)
    assert emulator.stats["requests"] == 1


# -- the DoFn called directly: lifecycle, in-flight window, key lookup ------------------------

def run_bundle(sink: DeliverBatches, batches: list[list[MappedEvent]]) -> list:
    outputs = []
    sink.start_bundle()
    for batch in batches:
        outputs.extend(sink.process(batch, GlobalWindow(), MIN_TIMESTAMP))
    outputs.extend(sink.finish_bundle())
    return outputs


def test_keeps_max_in_flight_batches_in_flight(emulator):
    emulator.set_latency(0.25)
    sink = make_sink(emulator, max_in_flight=4)
    sink.setup()
    try:
        outputs = run_bundle(sink, [make_batch(f"e-{n}") for n in range(4)])
    finally:
        sink.teardown()

    assert [o.value for o in outputs] == [1, 1, 1, 1]
    assert all(isinstance(o, WindowedValue) and o.windows == (GlobalWindow(),) for o in outputs)
    assert emulator.stats["max_concurrent_requests"] == 4   # all four overlapped at the server


def test_process_blocks_on_the_oldest_when_the_pool_is_full(emulator):
    emulator.set_latency(0.1)
    sink = make_sink(emulator, max_in_flight=2)
    sink.setup()
    try:
        sink.start_bundle()
        first = list(sink.process(make_batch("e-1"), GlobalWindow(), MIN_TIMESTAMP))
        second = list(sink.process(make_batch("e-2"), GlobalWindow(), MIN_TIMESTAMP))
        rest = list(sink.finish_bundle())
    finally:
        sink.teardown()

    # the second call waited for the first batch (and finds the second done as well, since
    # both were in flight together); nothing is emitted twice
    assert (len(first), len(second) >= 1, len(second) + len(rest)) == (0, True, 2)


def test_dead_letters_leave_on_the_tagged_output_with_the_event(emulator):
    emulator.reject_event_ids(["bad-1"])
    batch = make_batch("ok-1", "bad-1")
    sink = make_sink(emulator)
    sink.setup()
    try:
        outputs = run_bundle(sink, [batch])
    finally:
        sink.teardown()

    dead = [o.value.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
    main = [o.value for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    assert main == [1]
    assert dead == [DeadLetter(reasons.REJECTED_BY_API,
                               "events[0]: rejected: Event rejected by the API", "bad-1",
                               "export.parquet#row=bad-1", batch[1].event)]


def test_one_client_per_pixel_and_default_pixel(emulator):
    sink = make_sink(emulator)
    sink.setup()
    try:
        run_bundle(sink, [make_batch("x-1"), make_batch("y-1", pixel_id="px_b"),
                          make_batch("x-2", pixel_id="px_a")])
        assert sorted(sink._clients) == ["px_a", "px_b"]
    finally:
        sink.teardown()
    assert sorted(e["id"] for e in emulator.recorded_events("px_a")) == ["x-1", "x-2"]
    assert [e["id"] for e in emulator.recorded_events("px_b")] == ["y-1"]


def test_missing_key_names_the_environment_variable(emulator, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    sink = make_sink(emulator)

    with pytest.raises(ConfigError, match=f"environment variable {KEY_ENV} is not set"):
        sink.setup()


def test_sink_refuses_plain_http_to_a_remote_host_at_construction():
    with pytest.raises(InsecureEndpointError):
        DeliverBatches("http://bzr.openai.com/v1/events", "px_a")


def test_sink_does_not_pickle_the_key(emulator):
    sink = make_sink(emulator)
    assert KEY.encode() not in pickle.dumps(sink)


def test_authentication_error_propagates_from_the_dofn(emulator, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-svcacct-wrong")
    sink = make_sink(emulator, max_in_flight=1)
    sink.setup()
    try:
        with pytest.raises(AuthenticationError):
            run_bundle(sink, [make_batch("a-1"), make_batch("a-2")])
    finally:
        sink.teardown()
    assert emulator.stats["requests"] == 1


def test_an_infinite_retry_after_leaves_every_event_in_exactly_one_bucket(monkeypatch):
    # The shared limiter's "not before" instant once became inf: OverflowError in every pool
    # thread, and 1,600 events in no bucket. Now: accepted or retries_exhausted, each once.
    import threading

    from tests.connectors.hostile import HostileServer, answer

    monkeypatch.setenv(KEY_ENV, KEY)
    batches = [make_batch(*(f"b{b}-{n}" for n in range(25))) for b in range(8)]
    budget = RetryPolicy(max_attempts=3, max_elapsed_s=1.0, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    finished = threading.Event()
    with HostileServer(answer(429, b"{}", headers={"Retry-After": "1e400"}), answer(200)) as server:
        def run():
            pipeline = BeamTestPipeline()
            results = (pipeline
                       | beam.Create(batches)
                       | beam.ParDo(DeliverBatches(server.url, "px_a", api_key_env=KEY_ENV,
                                                   max_in_flight=4, retry=budget))
                       .with_outputs(DeliverBatches.DEAD_LETTERS, main="accepted"))
            dead = results.dead_letters
            total = ((results.accepted | "SumAccepted" >> beam.CombineGlobally(sum),
                      dead | "CountDead" >> beam.combiners.Count.Globally())
                     | beam.Flatten() | "Total" >> beam.CombineGlobally(sum))
            assert_that(total, equal_to([200]), label="EveryEventOnce")
            assert_that(dead | "Ids" >> beam.Map(lambda d: d.event_id)
                        | beam.combiners.Count.PerElement()
                        | beam.Filter(lambda pair: pair[1] > 1), equal_to([]), label="NoneTwice")
            assert_that(dead | "Reasons" >> beam.Map(lambda d: d.reason) | beam.Distinct()
                        | beam.Filter(lambda r: r != reasons.RETRIES_EXHAUSTED), equal_to([]),
                        label="OnlyExhausted")
            pipeline.run().wait_until_finish()
            finished.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the pipeline hangs"
    assert finished.is_set(), "the pipeline failed (see the thread's traceback above)"
