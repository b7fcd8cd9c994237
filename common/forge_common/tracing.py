"""OpenTelemetry tracing for the broker, workerd and the gateway: off unless the standard
``OTEL_*`` variables ask for it (see ``enabled``), so that an untraced service pays nothing
but a check of ``TRACER`` on the paths that trace.

Context travels as the W3C carrier (``traceparent``, ``tracestate``): in gRPC metadata and
HTTP headers, and stored with each job (``forge.jobs.trace_context``, ``Job.trace_context``)
so that every attempt's span on a worker is a child of the span that enqueued it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

__all__ = ["CARRIER_KEYS", "TRACER", "SpanKind", "carrier", "current_carrier", "enabled", "fail",
           "flush", "setup", "span"]
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER: trace.Tracer | None = None
"""The service's tracer once ``setup`` has turned tracing on; None while it is off."""

CARRIER_KEYS = ("traceparent", "tracestate")
"""The W3C trace context's metadata keys and HTTP headers (lower case, as gRPC sends them)."""

_W3C = TraceContextTextMapPropagator()


def enabled(env: Mapping[str, str]) -> bool:
    """Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or ``console``),
    or when it is unset and an OTLP endpoint is (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); never with ``OTEL_SDK_DISABLED=true`` or
    ``OTEL_TRACES_EXPORTER=none``."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service_name: str, env: Mapping[str, str] | None = None) -> trace.Tracer | None:
    """Install a TracerProvider exporting in batches (OTLP, or the console) and set ``TRACER``,
    when ``enabled``; else do nothing. ``OTEL_SERVICE_NAME`` overrides ``service_name``; every
    other ``OTEL_*`` setting (endpoint, protocol, headers, batch delays, sampler) is the SDK's
    own. The provider flushes its last spans when the process exits."""
    global TRACER
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    names = {n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporters: list[SpanExporter] = []
    if "console" in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        exporters.append(ConsoleSpanExporter())
    if names - {"console", "none", ""}:
        exporters.append(_otlp_exporter(env))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    TRACER = trace.get_tracer(f"forge.{service_name}")
    return TRACER


def flush(timeout: float = 5.0) -> None:
    """Export the spans still buffered: for a process that ends by ``os._exit``, where the
    provider's own flush at exit never runs."""
    provider = trace.get_tracer_provider()
    if TRACER is not None and hasattr(provider, "force_flush"):
        provider.force_flush(int(timeout * 1000))


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    """The OTLP exporter for ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: grpc (the default) or
    http/protobuf."""
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or
                env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )
    return HTTPSpanExporter()


def carrier(pairs: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """The W3C trace context among ``pairs`` (gRPC metadata, HTTP headers): empty when none."""
    return {k.lower(): str(v) for k, v in pairs if k.lower() in CARRIER_KEYS}


def current_carrier() -> dict[str, str]:
    """The current span's context as a W3C carrier (empty outside any span)."""
    out: dict[str, str] = {}
    _W3C.inject(out)
    return out


@contextmanager
def span(name: str, parent: Mapping[str, str] | None, attributes: Mapping[str, Any],
         kind: SpanKind = SpanKind.INTERNAL) -> Iterator[trace.Span]:
    """A current span named ``name``, child of the W3C context in ``parent`` (a new trace when
    it holds none). Only while tracing is on: callers check ``TRACER`` first. An exception
    leaving it marks it failed."""
    assert TRACER is not None
    context = _W3C.extract(parent) if parent else None
    with TRACER.start_as_current_span(name, context=context, kind=kind,
                                      attributes=dict(attributes)) as current:
        yield current


def fail(current: trace.Span, description: str) -> None:
    """Mark ``current`` failed with ``description`` (its first line)."""
    current.set_status(trace.Status(trace.StatusCode.ERROR, description.split("\n", 1)[0]))
