"""Bad environment values: a clear message naming variable, value and accepted form; defaults used."""

from __future__ import annotations

import pytest

from otel_ext._internal.config import (
    Settings,
    check_standard_variables,
    otlp_protocol,
    metric_reader_problems,
    parse_window,
    prometheus_address,
    read_settings,
    sampler_ratio,
    window_label,
)
from processors import DEFAULT_EXPLICIT_BOUNDS_S, HistogramAggregation


def test_defaults_without_environment() -> None:
    settings, problems = read_settings({})
    assert problems == []
    assert settings == Settings()
    assert settings.slow_threshold_ms == 1000.0
    assert settings.windows_s == (60, 300, 900, 3600)
    assert settings.monitor_ports is None
    assert settings.monitor_host == "127.0.0.1"


def test_valid_values_are_read() -> None:
    settings, problems = read_settings(
        {
            "OTEL_EXT_SLOW_THRESHOLD_MS": "250",
            "OTEL_EXT_SLOW_THRESHOLDS": "GET /search*=300, db.*=50",
            "OTEL_EXT_STATS_WINDOWS": "30s,5m",
            "OTEL_EXT_MAX_OPERATIONS": "7",
            "OTEL_EXT_MONITOR_PORT": "9470-9479",
            "OTEL_EXT_RECORD_UNSAMPLED": "false",
        }
    )
    assert problems == []
    assert settings.slow_threshold_ms == 250.0
    assert settings.slow_thresholds == (("GET /search*", 300.0), ("db.*", 50.0))
    assert settings.windows_s == (30, 300)
    assert settings.max_operations == 7
    assert settings.monitor_ports == (9470, 9479)
    assert settings.record_unsampled is False
    rules = settings.threshold_rules()
    assert rules.for_name("GET /search/books") == (300_000_000, 300.0)
    assert rules.for_name("db.query") == (50_000_000, 50.0)
    assert rules.for_name("other") == (250_000_000, 250.0)


@pytest.mark.parametrize(
    ("variable", "value", "accepted", "fallback"),
    [
        ("OTEL_EXT_SLOW_THRESHOLD_MS", "abc", "a number of ms >= 0", "using 1000"),
        ("OTEL_EXT_SLOW_THRESHOLD_MS", "-5", "a number of ms >= 0", "using 1000"),
        ("OTEL_EXT_SLOW_THRESHOLD_MS", "nan", "a number of ms >= 0", "using 1000"),
        ("OTEL_EXT_SLOW_THRESHOLDS", "GET /search*", "pattern=ms pairs", "no per-operation thresholds"),
        ("OTEL_EXT_SLOW_THRESHOLDS", "db.*=fast", "pattern=ms pairs", "no per-operation thresholds"),
        ("OTEL_EXT_SLOW_THRESHOLDS", "=40", "pattern=ms pairs", "no per-operation thresholds"),
        ("OTEL_EXT_STATS_WINDOWS", "5 minutes", "durations 6s..24h", "using 1m,5m,15m,1h"),
        ("OTEL_EXT_STATS_WINDOWS", "2s", "durations 6s..24h", "using 1m,5m,15m,1h"),
        ("OTEL_EXT_STATS_WINDOWS", "\u0665m", "durations 6s..24h", "using 1m,5m,15m,1h"),
        ("OTEL_EXT_STATS_WINDOWS", "9" * 5000 + "s", "durations 6s..24h", "using 1m,5m,15m,1h"),
        ("OTEL_EXT_MAX_OPERATIONS", "0", "a whole number >= 1", "using 500"),
        ("OTEL_EXT_MAX_OPERATIONS", "1_000", "a whole number >= 1", "using 500"),
        ("OTEL_EXT_MONITOR_PORT", "http", "a port 1-65535 or a range", "the monitor stays off"),
        ("OTEL_EXT_MONITOR_PORT", "70000", "a port 1-65535 or a range", "the monitor stays off"),
        ("OTEL_EXT_MONITOR_PORT", "9479-9470", "a port 1-65535 or a range", "the monitor stays off"),
        ("OTEL_EXT_MONITOR_HOST", "not-a-host", "an IP address or localhost", "using 127.0.0.1"),
        ("OTEL_EXT_RECORD_UNSAMPLED", "yes", "true or false", "using true"),
        ("OTEL_EXT_SPANS_FILE", "/nonexistent/dir/spans.jsonl", "a file path in an existing folder",
         "writing to standard output"),
        ("OTEL_EXT_SPANS_FILE", "/tmp", "a file path in an existing folder", "writing to standard output"),
        ("OTEL_EXT_SENTRY_ENABLED", "1", "true or false", "using true"),
        ("OTEL_EXT_TRACE_URL_TEMPLATE", "http://jaeger:16686/trace/", "a URL with {trace_id}",
         "Sentry events carry no trace link"),
        ("OTEL_EXT_TRACE_URL_TEMPLATE", "jaeger/trace/{trace_id}", "a URL with {trace_id}",
         "Sentry events carry no trace link"),
        ("OTEL_EXT_SENTRY_RATE_LIMIT", "10", "count/duration with a whole count >= 1", "using 10/1m"),
        ("OTEL_EXT_SENTRY_RATE_LIMIT", "0/1m", "count/duration with a whole count >= 1", "using 10/1m"),
        ("OTEL_EXT_SENTRY_RATE_LIMIT", "1.5/1m", "count/duration with a whole count >= 1", "using 10/1m"),
        ("OTEL_EXT_SENTRY_RATE_LIMIT", "10/forever", "count/duration with a whole count >= 1", "using 10/1m"),
        ("OTEL_EXT_ERROR_QUEUE_SIZE", "-3", "a whole number 1..100000", "using 1000"),
        ("OTEL_EXT_ERROR_QUEUE_SIZE", "100001", "a whole number 1..100000", "using 1000"),
        ("OTEL_EXT_ERROR_FLUSH_INTERVAL_MS", "0", "ms between 1 and 3600000", "using 1000"),
        ("OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS", "later", "ms between 1 and 3600000", "using 2000"),
        ("OTEL_EXT_USER_ID_ATTRIBUTES", " , ", "attribute names", "using enduser.id,user.id"),
        ("OTEL_EXT_SENTRY_SEND_PII", "maybe", "true or false", "using false"),
    ],
)
def test_bad_value_names_variable_value_accepted_form_and_fallback(
    variable: str, value: str, accepted: str, fallback: str
) -> None:
    settings, problems = read_settings({variable: value})
    assert settings == Settings(), "a bad value must leave the default in place"
    assert len(problems) == 1
    assert problems[0].startswith(f"{variable}={value!r} is invalid")
    assert f"expected {accepted}" in problems[0]
    assert problems[0].endswith(f"; {fallback}")


def test_valid_host_and_spans_file(tmp_path: object) -> None:
    settings, problems = read_settings({"OTEL_EXT_MONITOR_HOST": "::1", "OTEL_EXT_SPANS_FILE": f"{tmp_path}/s.jsonl"})
    assert problems == []
    assert settings.monitor_host == "::1" and settings.spans_file == f"{tmp_path}/s.jsonl"


def test_sentry_settings_are_read() -> None:
    settings, problems = read_settings({
        "OTEL_EXT_SENTRY_ENABLED": "false",
        "OTEL_EXT_TRACE_URL_TEMPLATE": "https://grafana.local/explore?trace={trace_id}&span={span_id}",
        "OTEL_EXT_SENTRY_RATE_LIMIT": "3/30s",
        "OTEL_EXT_ERROR_QUEUE_SIZE": "50",
        "OTEL_EXT_ERROR_FLUSH_INTERVAL_MS": "250",
        "OTEL_EXT_SENTRY_SHUTDOWN_TIMEOUT_MS": "500",
        "OTEL_EXT_USER_ID_ATTRIBUTES": "app.user, enduser.id",
        "OTEL_EXT_USER_ID_SECRET": "0123456789abcdef",
        "OTEL_EXT_SENTRY_SEND_PII": "TRUE",
    })
    assert problems == []
    assert settings.sentry_enabled is False
    assert settings.trace_url_template == "https://grafana.local/explore?trace={trace_id}&span={span_id}"
    assert settings.sentry_rate_limit == (3, 30)
    assert (settings.error_queue_size, settings.error_flush_interval_ms, settings.sentry_shutdown_timeout_ms) == (
        50, 250.0, 500.0)
    assert settings.user_id_attributes == ("app.user", "enduser.id")
    assert settings.user_id_secret == "0123456789abcdef"
    assert settings.sentry_send_pii is True
    assert read_settings({"OTEL_EXT_SENTRY_RATE_LIMIT": "OFF"})[0].sentry_rate_limit is None


def test_short_secret_is_reported_without_its_value() -> None:
    settings, problems = read_settings({"OTEL_EXT_USER_ID_SECRET": "hunter2"})
    assert settings.user_id_secret is None
    assert problems == [
        "OTEL_EXT_USER_ID_SECRET=<hidden, 7 characters> is invalid (shorter than 16 characters): "
        "expected a secret of at least 16 characters; no user is sent to Sentry"
    ]
    assert "hunter2" not in repr(settings)


def test_every_problem_is_listed_not_just_the_first() -> None:
    _, problems = read_settings({"OTEL_EXT_SLOW_THRESHOLD_MS": "x", "OTEL_EXT_MAX_OPERATIONS": "y"})
    assert [problem.split("=")[0] for problem in problems] == ["OTEL_EXT_SLOW_THRESHOLD_MS", "OTEL_EXT_MAX_OPERATIONS"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), (" 15m ", 900), ("24h", 86400)])
def test_parse_window(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(("seconds", "label"), [(60, "1m"), (3600, "1h"), (90, "90s"), (300, "5m"), (5400, "90m")])
def test_window_label(seconds: int, label: str) -> None:
    assert window_label(seconds) == label


@pytest.mark.parametrize("argument", ["5", "-0.1", "abc", "", "nan"])
def test_bad_sampler_argument_is_named_and_falls_back_to_sampling_everything(argument: str) -> None:
    """B13: the SDK crashed on 5 and hid the value on abc."""
    environ = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": argument}
    ratio, problem = sampler_ratio(environ)
    assert ratio is None
    assert problem is not None and f"OTEL_TRACES_SAMPLER_ARG={argument!r}" in problem
    assert "ratio 1.0" in problem
    assert check_standard_variables(environ) == [problem]


def test_good_sampler_argument() -> None:
    assert sampler_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == (0.25, None)
    assert sampler_ratio({}) == (1.0, None)


def test_header_problems_never_repeat_header_values() -> None:
    """B09: a malformed entry is reported, but values (tokens) never reach our logs."""
    environ = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer tok123, X-Tenant=team%2Cwest,broken,x-empty="}
    problems = check_standard_variables(environ)
    assert len(problems) == 1
    assert "OTEL_EXPORTER_OTLP_HEADERS" in problems[0] and "no key=value form" in problems[0]
    assert "tok123" not in problems[0] and "broken" not in problems[0]


def test_resource_attribute_entry_without_value_is_reported() -> None:
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,bogus,,team=a=b"}
    assert check_standard_variables(environ) == [
        "OTEL_RESOURCE_ATTRIBUTES: entry 'bogus' has no key=value form; it is skipped"
    ]


@pytest.mark.parametrize("endpoint", ["http://h:4318/v1/traces", "http://h:4318/v1/metrics/"])
def test_generic_endpoint_with_signal_path_warns_of_doubled_path(endpoint: str) -> None:
    """B07: users add /v1/traces to the generic endpoint and get /v1/traces/v1/traces."""
    problems = check_standard_variables({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert len(problems) == 1
    assert "doubled path" in problems[0] and "'http://h:4318'" in problems[0]


@pytest.mark.parametrize(("value", "used"), [("http", "http/protobuf"), ("http/json", "http/protobuf"), ("foo", "grpc")])
def test_unsupported_protocol_is_reported_with_the_closest_supported_one(value: str, used: str) -> None:
    problems = check_standard_variables({"OTEL_EXPORTER_OTLP_PROTOCOL": value})
    assert problems == [
        f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is invalid: expected one of grpc, http/protobuf; using {used}"
    ]
    assert otlp_protocol(value) == used


@pytest.mark.parametrize(("value", "used"), [("GRPC", "grpc"), (" HTTP/Protobuf ", "http/protobuf"), (None, "grpc")])
def test_protocol_is_case_insensitive(value: str | None, used: str) -> None:
    """The specification asks for enum values to be read case-insensitively."""
    assert otlp_protocol(value) == used
    if value is not None:
        assert check_standard_variables({"OTEL_EXPORTER_OTLP_PROTOCOL": value}) == []


def test_partly_invalid_thresholds_keep_the_good_entries() -> None:
    settings, problems = read_settings({"OTEL_EXT_SLOW_THRESHOLDS": "GET /x=abc,=5,db.*=50,GET /y*=300"})
    assert settings.slow_thresholds == (("db.*", 50.0), ("GET /y*", 300.0))
    assert problems == [
        "OTEL_EXT_SLOW_THRESHOLDS='GET /x=abc,=5,db.*=50,GET /y*=300' is partly invalid (entries 'GET /x=abc', "
        "'=5' are not pattern=ms with ms >= 0): expected pattern=ms pairs, e.g. 'GET /search*=300,db.*=50'; "
        "using the other entries"
    ]


def test_unknown_sampler_and_non_http_endpoint_are_reported() -> None:
    problems = check_standard_variables({"OTEL_TRACES_SAMPLER": "bogus", "OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"})
    assert problems[0].startswith("OTEL_TRACES_SAMPLER='bogus' is not an installed sampler (installed: ")
    assert "traceidratio" in problems[0] and problems[0].endswith("using parentbased_always_on")
    assert problems[1] == "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://x' is invalid: expected an http:// or https:// URL; export will fail"
    assert check_standard_variables({"OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio"}) == []


def test_localhost_is_accepted_in_any_case() -> None:
    assert read_settings({"OTEL_EXT_MONITOR_HOST": "LOCALHOST"}) == (Settings(monitor_host="localhost"), [])


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_bad_otlp_timeout_is_reported(value: str) -> None:
    assert check_standard_variables({"OTEL_EXPORTER_OTLP_TIMEOUT": value}) == [
        f"OTEL_EXPORTER_OTLP_TIMEOUT={value!r} is invalid: expected a number of seconds > 0, e.g. 10; using 10"
    ]


def test_unknown_exporter_name_is_reported_with_the_installed_ones() -> None:
    (problem,) = check_standard_variables({"OTEL_TRACES_EXPORTER": "otlp, garbage"})
    assert problem.startswith("OTEL_TRACES_EXPORTER: 'garbage' is not an installed exporter (installed: ")
    assert "otlp" in problem and "otlp_json_file" in problem and problem.endswith("it is skipped")


# --- metrics: histogram aggregation, explicit bounds, exponential size ---------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("exponential", HistogramAggregation.EXPONENTIAL),
        ("explicit", HistogramAggregation.EXPLICIT),
        ("EXPLICIT", HistogramAggregation.EXPLICIT),
        (" Explicit ", HistogramAggregation.EXPLICIT),
        ("Exponential", HistogramAggregation.EXPONENTIAL),
    ],
)
def test_metrics_histogram_is_read_case_insensitively(value: str, expected: HistogramAggregation) -> None:
    """Guards OTEL_EXT_METRICS_HISTOGRAM=EXPLICIT being rejected (the spec reads enum values case-insensitively)."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_HISTOGRAM": value})
    assert problems == []
    assert settings.metrics_histogram is expected


@pytest.mark.parametrize("value", ["linear", "prometheus", "base2_exponential_bucket_histogram", "exp", "1"])
def test_bad_metrics_histogram_names_variable_value_accepted_form_and_fallback(value: str) -> None:
    """Guards a typo in OTEL_EXT_METRICS_HISTOGRAM crashing startup or silently switching the export format."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_HISTOGRAM": value})
    assert settings == Settings()
    assert settings.metrics_histogram is HistogramAggregation.EXPONENTIAL
    assert problems == [
        f"OTEL_EXT_METRICS_HISTOGRAM={value!r} is invalid: expected exponential or explicit; "
        "using OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION's choice if set, else exponential"
    ]


@pytest.mark.parametrize(
    ("standard", "expected"),
    [
        ("explicit_bucket_histogram", HistogramAggregation.EXPLICIT),
        ("base2_exponential_bucket_histogram", HistogramAggregation.EXPONENTIAL),
        ("EXPLICIT_BUCKET_HISTOGRAM", HistogramAggregation.EXPLICIT),
        (" explicit_bucket_histogram ", HistogramAggregation.EXPLICIT),
        ("something_else", HistogramAggregation.EXPONENTIAL),
    ],
)
def test_metrics_histogram_follows_the_standard_variable_when_unset(
    standard: str, expected: HistogramAggregation
) -> None:
    """Guards exponential histograms going to a backend set up for explicit ones through the standard variable."""
    settings, problems = read_settings({"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": standard})
    assert problems == []
    assert settings.metrics_histogram is expected


@pytest.mark.parametrize(
    ("own", "expected"),
    [("exponential", HistogramAggregation.EXPONENTIAL), ("explicit", HistogramAggregation.EXPLICIT)],
)
def test_own_metrics_histogram_variable_wins_over_the_standard_one(own: str, expected: HistogramAggregation) -> None:
    """Guards the otel-ext-specific setting being overridden by the SDK-wide default."""
    opposite = {
        HistogramAggregation.EXPLICIT: "base2_exponential_bucket_histogram",
        HistogramAggregation.EXPONENTIAL: "explicit_bucket_histogram",
    }[expected]
    settings, problems = read_settings({
        "OTEL_EXT_METRICS_HISTOGRAM": own,
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": opposite,
    })
    assert problems == []
    assert settings.metrics_histogram is expected


def test_bad_own_metrics_histogram_falls_back_to_the_standard_variable() -> None:
    """Guards a typo in OTEL_EXT_METRICS_HISTOGRAM overriding the standard variable README says it follows."""
    settings, problems = read_settings({
        "OTEL_EXT_METRICS_HISTOGRAM": "linear",
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit_bucket_histogram",
    })
    assert len(problems) == 1 and problems[0].endswith("'s choice if set, else exponential")
    assert settings.metrics_histogram is HistogramAggregation.EXPLICIT


def test_invalid_standard_histogram_aggregation_is_reported() -> None:
    """Guards the SDK (explicit) and otel-ext (exponential) silently reading one bad value two ways."""
    environ = {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit"}
    assert read_settings(environ)[0].metrics_histogram is HistogramAggregation.EXPONENTIAL
    (problem,) = check_standard_variables(environ)
    assert problem.startswith(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION='explicit' is invalid: expected "
        "base2_exponential_bucket_histogram or explicit_bucket_histogram;"
    ), problem


@pytest.mark.parametrize(("value", "default"), [("0", 60000), ("-5", 60000), ("abc", 60000), ("inf", 60000)])
def test_unusable_metric_export_interval_is_reported_with_the_value_used(value: str, default: int) -> None:
    """Guards OTEL_METRIC_EXPORT_INTERVAL=0 making the SDK refuse the reader, losing every metric silently."""
    environ = {"OTEL_METRIC_EXPORT_INTERVAL": value}
    problem = (
        f"OTEL_METRIC_EXPORT_INTERVAL={value!r} is invalid: expected a number of ms > 0, e.g. {default}; "
        f"using {default}"
    )
    assert check_standard_variables(environ) == [problem]
    assert metric_reader_problems(environ) == {"OTEL_METRIC_EXPORT_INTERVAL": (default, problem)}
    assert metric_reader_problems({"OTEL_METRIC_EXPORT_INTERVAL": "1500"}) == {}


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_own_metrics_histogram_is_unset_and_the_standard_variable_applies(empty: str) -> None:
    """Guards OTEL_EXT_METRICS_HISTOGRAM= (empty, e.g. from a compose file) overriding the standard variable.

    The specification (and read_settings for every other variable) treats an
    empty value as unset, so the standard variable must then apply.
    """
    settings, problems = read_settings({
        "OTEL_EXT_METRICS_HISTOGRAM": empty,
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit_bucket_histogram",
    })
    assert problems == []
    assert settings.metrics_histogram is HistogramAggregation.EXPLICIT


@pytest.mark.parametrize(
    ("value", "bounds"),
    [
        ("0.01,0.1,1,10", (0.01, 0.1, 1.0, 10.0)),
        (" 0.005 , 0.5 ,2.5 ", (0.005, 0.5, 2.5)),
        ("1e-3,1e-2", (0.001, 0.01)),
        ("0.25", (0.25,)),
    ],
)
def test_explicit_bounds_are_read(value: str, bounds: tuple[float, ...]) -> None:
    """Guards custom le buckets being ignored or mis-parsed (spaces, exponents, a single bound)."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_EXPLICIT_BOUNDS": value})
    assert problems == []
    assert settings.metrics_explicit_bounds_s == bounds


_BOUNDS_ACCEPTED = "at most 200 increasing numbers of seconds (not ms) > 0, e.g. '0.01,0.1,1,10'"


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("0.1,0.05,1", " (not strictly increasing: 0.05 after 0.1)"),
        ("0.1,0.1,1", " (not strictly increasing: 0.1 after 0.1)"),
        ("fast,slow", " (entries 'fast', 'slow' are not numbers of seconds > 0)"),
        ("0.1;0.2", " (entries '0.1;0.2' are not numbers of seconds > 0)"),
        ("nan", " (entries 'nan' are not numbers of seconds > 0)"),
        (",", ""),
        (",".join(str(number) for number in range(1, 202)), " (201 bounds, more than 200)"),
    ],
)
def test_bad_explicit_bounds_name_variable_value_accepted_form_and_fallback(value: str, detail: str) -> None:
    """Guards bad bounds crashing the metrics setup (the SDK rejects them late) instead of using the defaults."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_EXPLICIT_BOUNDS": value})
    assert settings == Settings()
    assert settings.metrics_explicit_bounds_s == DEFAULT_EXPLICIT_BOUNDS_S
    assert problems == [
        f"OTEL_EXT_METRICS_EXPLICIT_BOUNDS={value!r} is invalid{detail}: expected {_BOUNDS_ACCEPTED}; "
        "using the HTTP semantic conventions' bounds"
    ]


@pytest.mark.parametrize(
    ("value", "bad", "kept"),
    [("-1,1", "'-1'", (1.0,)), ("0,1", "'0'", (1.0,)), ("0.1,inf", "'inf'", (0.1,)), ("0.1,abc,1", "'abc'", (0.1, 1.0))],
)
def test_partly_bad_explicit_bounds_name_the_bad_entries_and_keep_the_others(
    value: str, bad: str, kept: tuple[float, ...]
) -> None:
    """Guards one typo discarding a whole list of bounds without saying which entry was wrong."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_EXPLICIT_BOUNDS": value})
    assert settings.metrics_explicit_bounds_s == kept
    assert problems == [
        f"OTEL_EXT_METRICS_EXPLICIT_BOUNDS={value!r} is partly invalid (entries {bad} are not numbers of "
        f"seconds > 0): expected {_BOUNDS_ACCEPTED}; using the other entries"
    ]


@pytest.mark.parametrize(("value", "size"), [("2", 2), ("160", 160), (" 20 ", 20), ("4096", 4096)])
def test_exponential_max_size_is_read(value: str, size: int) -> None:
    """Guards the documented range 2..4096 being rejected at its ends."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE": value})
    assert problems == []
    assert settings.metrics_exponential_max_size == size


@pytest.mark.parametrize("value", ["1", "0", "4097", "-5", "big", "160.0", "1e3"])
def test_bad_exponential_max_size_names_variable_value_accepted_form_and_fallback(value: str) -> None:
    """Guards a max size of 1 (no valid histogram) or above the store's 4096 buckets being used."""
    settings, problems = read_settings({"OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE": value})
    assert settings == Settings()
    assert settings.metrics_exponential_max_size == 160
    assert problems == [
        (
            f"OTEL_EXT_METRICS_EXPONENTIAL_MAX_SIZE={value!r} is invalid: expected a whole number 2..4096, "
            "e.g. 160; using 160"
        )
    ]


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "9464.5"])
def test_bad_prometheus_port_is_reported_and_the_default_used(value: str) -> None:
    """Guards a typo in the scrape port crashing start-up or binding a port nobody scrapes, silently."""
    environ = {"OTEL_EXPORTER_PROMETHEUS_PORT": value, "OTEL_METRICS_EXPORTER": "prometheus"}
    assert check_standard_variables({**environ, "OTEL_METRICS_EXPORTER": "otlp"}) == [], "not used: not a problem"
    assert check_standard_variables(environ) == [
        f"OTEL_EXPORTER_PROMETHEUS_PORT={value!r} is invalid: expected a port 1-65535; using 9464"
    ]
    assert prometheus_address(environ) == ("localhost", 9464, check_standard_variables(environ)[0])
    assert prometheus_address({"OTEL_EXPORTER_PROMETHEUS_PORT": " 9470 ", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1"}) == (
        "127.0.0.1", 9470, None
    )


@pytest.mark.parametrize("host", ["bad host", "256.1.1.1", "-x", "a..b"])
def test_bad_prometheus_host_is_reported_and_localhost_used(host: str) -> None:
    """Guards a typo in the scrape host dropping the Prometheus exporter at start-up while check says OK."""
    environ = {"OTEL_EXPORTER_PROMETHEUS_HOST": host, "OTEL_METRICS_EXPORTER": "prometheus"}
    problem = (
        f"OTEL_EXPORTER_PROMETHEUS_HOST={host!r} is invalid: expected an IP address or a host name, "
        "e.g. 127.0.0.1; using localhost"
    )
    assert check_standard_variables(environ) == [problem]
    assert prometheus_address(environ) == ("localhost", 9464, problem)
    for good in ("127.0.0.1", "::1", "localhost", "metrics.internal", "0.0.0.0"):
        assert prometheus_address({"OTEL_EXPORTER_PROMETHEUS_HOST": good}) == (good, 9464, None)


@pytest.mark.parametrize("value", ["deltaa", "cumulatve", "none"])
def test_bad_temporality_preference_is_reported(value: str) -> None:
    """Guards a typo silently giving cumulative points to a backend that needs delta."""
    assert check_standard_variables({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": value}) == [
        f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={value!r} is invalid: expected cumulative, delta, "
        "lowmemory; the SDK uses cumulative"
    ]
    assert check_standard_variables({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta"}) == []


@pytest.mark.parametrize(
    ("file_variable", "exporter_variable"),
    [("OTEL_EXT_SPANS_FILE", "OTEL_TRACES_EXPORTER"), ("OTEL_EXT_METRICS_FILE", "OTEL_METRICS_EXPORTER")],
)
def test_a_file_without_the_file_exporter_is_reported(file_variable: str, exporter_variable: str) -> None:
    """Guards a user waiting for a file that no exporter writes."""
    assert check_standard_variables({file_variable: "out.jsonl"}) == [
        f"{file_variable} is set but {exporter_variable} does not name otlp_json_file; nothing is written to that file"
    ]
    assert check_standard_variables({file_variable: "out.jsonl", exporter_variable: "otlp,otlp_json_file"}) == []
