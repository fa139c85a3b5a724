//! Debug tracing: collecting sampled [`TraceRecord`]s and walking an effect back
//! to its cause.
//!
//! Every envelope carries a trace id, its own span id and its parent's span id
//! (the message whose handler sent it). Nodes emit a record when a sampled message
//! ends; a [`TraceLog`] keeps a bounded number of traces, and
//! [`TraceLog::chain_to`] follows parent spans from any record back to the root.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ids::Address;
use crate::message::{bounce_reason_str, kind_str};
use crate::node::{TraceOutcome, TraceRecord};

/// A bounded collection of sampled traces.
#[derive(Debug, Clone)]
pub struct TraceLog {
    traces: BTreeMap<u64, Vec<TraceRecord>>,
    arrival: Vec<u64>,
    traces_max: usize,
    records_per_trace_max: usize,
    /// Records refused because a bound was reached.
    pub refused: u64,
}

impl TraceLog {
    /// Keeps the first `traces_max` traces seen, each up to `records_per_trace_max` records.
    pub fn new(traces_max: usize, records_per_trace_max: usize) -> TraceLog {
        TraceLog {
            traces: BTreeMap::new(),
            arrival: Vec::new(),
            traces_max,
            records_per_trace_max,
            refused: 0,
        }
    }

    /// Adds a record.
    pub fn record(&mut self, record: TraceRecord) {
        let trace_id = record.header.trace.trace_id;
        if !self.traces.contains_key(&trace_id) {
            if self.traces.len() >= self.traces_max {
                self.refused += 1;
                return;
            }
            self.arrival.push(trace_id);
        }
        let records = self.traces.entry(trace_id).or_default();
        if records.len() >= self.records_per_trace_max {
            self.refused += 1;
            return;
        }
        records.push(record);
    }

    /// Traces held.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// Whether no trace is held.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// The causal chain, root first, ending at the first record (in arrival order)
    /// that `wanted` picks. The chain stops early where a parent was not recorded.
    pub fn chain_to(&self, wanted: impl Fn(&TraceRecord) -> bool) -> Option<Vec<&TraceRecord>> {
        let (records, last) = self.arrival.iter().find_map(|trace_id| {
            let records = &self.traces[trace_id];
            records
                .iter()
                .find(|r| wanted(r))
                .map(|last| (records, last))
        })?;
        let mut chain = vec![last];
        let mut parent = last.header.trace.parent_span_id;
        while parent != 0 && chain.len() < records.len() {
            let Some(record) = records.iter().find(|r| r.header.trace.span_id == parent) else {
                break;
            };
            chain.push(record);
            parent = record.header.trace.parent_span_id;
        }
        chain.reverse();
        Some(chain)
    }
}

/// Renders a chain for people: each message with who sent it to whom, when it
/// was sent and when it ended (relative to the first send), how, and what it said.
///
/// `label` names an address (`loadgen@n3`); `describe` summarises a payload.
pub fn render_chain(
    chain: &[&TraceRecord],
    label: impl Fn(Address) -> String,
    describe: impl Fn(&TraceRecord) -> String,
) -> String {
    let Some(first) = chain.first() else {
        return String::new();
    };
    let origin = first.header.hops.first().map_or(first.time, |hop| hop.at);
    let ms = |t: crate::time::Time| t.saturating_since(origin).as_secs_f64() * 1e3;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {:016x}: {} messages",
        first.header.trace.trace_id,
        chain.len()
    );
    for (i, record) in chain.iter().enumerate() {
        let header = &record.header;
        let sent = header.hops.first().map_or(record.time, |hop| hop.at);
        let from = header.hops.first().map_or_else(
            || label(header.source),
            |hop| {
                label(Address {
                    node: hop.node,
                    component: hop.component,
                })
            },
        );
        let outcome = match record.outcome {
            TraceOutcome::Handled => "handled".to_owned(),
            TraceOutcome::Bounced(reason) => format!("bounced {}", bounce_reason_str(reason)),
            TraceOutcome::Dropped(reason) => format!("dropped {}", reason.as_str()),
        };
        let _ = writeln!(
            out,
            "{:>3}. {} {} {} -> {}  sent +{:.3}ms, {} +{:.3}ms",
            i + 1,
            header.name,
            kind_str(header.kind),
            from,
            label(record.at),
            ms(sent),
            outcome,
            ms(record.time),
        );
        let _ = writeln!(out, "     {}", describe(record));
    }
    out
}
