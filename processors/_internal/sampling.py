"""Measure every span while exporting only the sampled ones."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = ["RecordUnsampledSampler"]


class RecordUnsampledSampler(Sampler):
    """Turns the wrapped sampler's DROP into RECORD_ONLY.

    Unsampled spans still reach ``on_end`` (so call counts, error rates and
    percentiles cover 100 % of operations) but keep the unsampled trace flag,
    so export processors skip them and downstream services see the same
    sampling decision. The cost: unsampled spans are recorded in memory.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordUnsampled{{{self.sampler.get_description()}}}"
