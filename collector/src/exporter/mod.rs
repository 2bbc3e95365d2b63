//! The fleet in Prometheus: per-host series from the latest live report of each host whose
//! stream this replica holds ([`HostMetrics`], the curated set of [`curate`]), and the fleet
//! series — host metadata and liveness, open incidents, SLA breaches, time to acknowledge and
//! to resolve — from the store, rendered only by the holder of the runner lease
//! ([`render_fleet`]). So with several replicas behind one scrape job every series comes from
//! exactly one of them and sums never double; a host whose stream closes takes its series
//! with it, and a removed host's fleet series vanish with its row.
//!
//! Rendered by hand at scrape time, family by family, from compact per-host samples: the
//! metrics registry would keep every label set forever, and ten thousand hosts times fifty
//! series is more than a general registry should hold. Label values are escaped and bounded
//! once, when a report is observed ([`crate::sanitize::for_label`]).

pub mod curate;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vigil_proto::v1::Report;

use crate::clock::UnixMs;
use crate::ids::HostId;
use crate::metrics as m;
use crate::status::{HostStatus, host_status};
use crate::store::{Store, StoreResult};
use curate::{FAMILIES, curate};

/// Default cap on series per host.
pub const DEFAULT_MAX_SERIES_PER_HOST: usize = 200;

#[derive(Debug)]
struct HostEntry {
    collected_at_ms: UnixMs,
    /// `host_id="…"`, ready to write.
    id_label: Box<str>,
    /// Every escaped resource label of the host, one after the other.
    labels: String,
    /// (family, label start in `labels`, label length, value), sorted by family: 16 bytes a
    /// sample, so ten thousand hosts of fifty series hold about 15 MiB.
    samples: Vec<(u8, u32, u16, f64)>,
    /// `samples[offsets[f]..offsets[f + 1]]` are family `f`'s.
    offsets: [u16; FAMILIES.len() + 1],
}

/// The per-host series this replica exports.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    hosts: Arc<RwLock<HashMap<HostId, Arc<HostEntry>>>>,
    max_series: usize,
}

impl Default for HostMetrics {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SERIES_PER_HOST)
    }
}

/// A label value for the text format, escaped and bounded by [`crate::sanitize::for_label`].
fn escape(value: &str) -> String {
    crate::sanitize::for_label(value)
}

impl HostMetrics {
    pub fn new(max_series: usize) -> Self {
        Self { hosts: Arc::default(), max_series: max_series.clamp(1, usize::from(u16::MAX)) }
    }

    /// Takes the series of `report` for `host`, unless a newer report is already held.
    /// Series beyond the cap are dropped and counted.
    pub fn observe(&self, host: HostId, collected_at_ms: UnixMs, report: &Report) {
        let mut samples = curate(report);
        if samples.len() > self.max_series {
            let dropped = samples.len() - self.max_series;
            samples.truncate(self.max_series);
            metrics::counter!(m::HOST_SERIES_DROPPED_TOTAL).increment(dropped as u64);
        }
        let mut offsets = [0u16; FAMILIES.len() + 1];
        for (family, _, _) in &samples {
            offsets[family + 1] += 1;
        }
        for f in 1..offsets.len() {
            offsets[f] += offsets[f - 1];
        }
        // Escaped in place (see `sanitize::push_label`); sized for the common case of nothing
        // to escape, so the buffer is allocated once.
        let mut labels = String::with_capacity(samples.iter().map(|s| s.1.len()).sum());
        let mut compact = Vec::with_capacity(samples.len());
        for (family, label, value) in samples {
            let start = labels.len();
            crate::sanitize::push_label(&mut labels, &label);
            let len = (labels.len() - start).min(usize::from(u16::MAX));
            compact.push((family as u8, start as u32, len as u16, value));
        }
        labels.shrink_to_fit();
        let entry = Arc::new(HostEntry {
            collected_at_ms,
            id_label: format!("host_id=\"{host}\"").into_boxed_str(),
            labels,
            samples: compact,
            offsets,
        });
        let mut hosts = self.hosts.write().unwrap_or_else(|e| e.into_inner());
        match hosts.get(&host) {
            Some(held) if held.collected_at_ms > collected_at_ms => {}
            _ => {
                hosts.insert(host, entry);
            }
        }
    }

    /// Drops the host's series (its stream closed here, or it was revoked).
    pub fn forget(&self, host: HostId) {
        self.hosts.write().unwrap_or_else(|e| e.into_inner()).remove(&host);
    }

    pub fn len(&self) -> usize {
        self.hosts.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every family with samples, in the text exposition format, into `out`.
    pub fn render(&self, out: &mut String) {
        self.render_chunked(usize::MAX, &mut |chunk| out.push_str(&chunk));
    }

    /// Renders in pieces of about `chunk_bytes`, handing each to `emit`, so a large fleet is
    /// never one big string. Works on a snapshot: reports observed meanwhile wait for nothing.
    pub fn render_chunked(&self, chunk_bytes: usize, emit: &mut dyn FnMut(String)) {
        let hosts: Vec<Arc<HostEntry>> =
            self.hosts.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let capacity = chunk_bytes.min(1 << 20) + 4096;
        let mut out = String::with_capacity(capacity);
        for (f, family) in FAMILIES.iter().enumerate() {
            let mut header = false;
            for entry in &hosts {
                let (from, to) = (entry.offsets[f] as usize, entry.offsets[f + 1] as usize);
                for &(_, start, len, value) in &entry.samples[from..to] {
                    if !header {
                        let kind = if family.counter { "counter" } else { "gauge" };
                        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
                        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
                        header = true;
                    }
                    if family.label.is_empty() {
                        let _ = writeln!(out, "{}{{{}}} {value}", family.name, entry.id_label);
                    } else {
                        let label = &entry.labels[start as usize..start as usize + len as usize];
                        let _ = writeln!(
                            out,
                            "{}{{{},{}=\"{label}\"}} {value}",
                            family.name, entry.id_label, family.label
                        );
                    }
                    if out.len() >= chunk_bytes {
                        emit(std::mem::replace(&mut out, String::with_capacity(capacity)));
                    }
                }
            }
        }
        if !out.is_empty() {
            emit(out);
        }
    }
}

/// Bucket bounds of the time-to-acknowledge and time-to-resolve histograms, in seconds.
const DURATION_BUCKETS: [f64; 10] =
    [60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 28_800.0, 86_400.0, 259_200.0, 604_800.0];

const LEVELS: [&str; 4] = ["L1", "L2", "L3", "L4"];

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, level: &str) {
        for (count, bound) in self.buckets.iter().zip(DURATION_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{level=\"{level}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{level=\"{level}\",le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{level=\"{level}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{level=\"{level}\"}} {}", self.count);
    }
}

/// The fleet series, from the store (only the lease holder calls this).
pub async fn render_fleet(
    store: &dyn Store,
    now: UnixMs,
    min_silence: Duration,
    receivers: &[String],
    out: &mut String,
) -> StoreResult<()> {
    let hosts = store.list_hosts().await?;
    let hosts: Vec<_> = hosts.into_iter().filter(|h| h.revoked_at_ms.is_none()).collect();
    header(out, "vigil_host_info", "gauge", "Always 1: the names of a host, for joins on host_id.");
    for h in &hosts {
        let _ = writeln!(
            out,
            "vigil_host_info{{host_id=\"{}\",hostname=\"{}\",customer=\"{}\",site=\"{}\",agent_version=\"{}\"}} 1",
            h.id,
            escape(&h.hostname),
            escape(&h.customer),
            escape(&h.site),
            escape(&h.agent_version)
        );
    }
    header(
        out,
        "vigil_host_up",
        "gauge",
        "1 while the host reports, 0 when silent, stopped or new.",
    );
    for h in &hosts {
        let up = host_status(h, now, min_silence) == HostStatus::Up;
        let _ = writeln!(out, "vigil_host_up{{host_id=\"{}\"}} {}", h.id, u8::from(up));
    }
    header(
        out,
        "vigil_host_last_report_age_seconds",
        "gauge",
        "Time since the collector last received a report from the host.",
    );
    for h in &hosts {
        if let Some(seen) = h.last_seen_ms {
            let age = (now - seen).max(0) as f64 / 1000.0;
            let _ =
                writeln!(out, "vigil_host_last_report_age_seconds{{host_id=\"{}\"}} {age}", h.id);
        }
    }

    let stats = store.incident_stats().await?;
    let mut customers: Vec<String> =
        store.list_customers().await?.into_iter().map(|c| c.name).collect();
    customers.sort();
    let mut open: HashMap<(&str, u8), u64> = HashMap::new();
    let mut breaches: HashMap<(&str, u8, &str), u64> = HashMap::new();
    let mut ack = vec![Histogram::default(); 4];
    let mut resolve = vec![Histogram::default(); 4];
    for s in &stats {
        let level = s.level.as_u8();
        if s.active {
            *open.entry((s.customer.as_str(), level)).or_default() += 1;
        }
        if s.response_met == Some(false) {
            *breaches.entry((s.customer.as_str(), level, "response")).or_default() += 1;
        }
        if s.resolution_met == Some(false) {
            *breaches.entry((s.customer.as_str(), level, "resolution")).or_default() += 1;
        }
        let i = usize::from(level - 1);
        if let Some(at) = s.acknowledged_at_ms {
            ack[i].observe((at - s.clock_start_ms).max(0) as f64 / 1000.0);
        }
        if let Some(at) = s.resolved_at_ms {
            resolve[i].observe((at - s.clock_start_ms).max(0) as f64 / 1000.0);
        }
    }
    header(
        out,
        "vigil_incidents_open",
        "gauge",
        "Open and acknowledged incidents, by customer and level.",
    );
    for c in &customers {
        for (i, level) in LEVELS.iter().enumerate() {
            let n = open.get(&(c.as_str(), i as u8 + 1)).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "vigil_incidents_open{{customer=\"{}\",level=\"{level}\"}} {n}",
                escape(c)
            );
        }
    }
    header(
        out,
        "vigil_sla_breaches_total",
        "counter",
        "Missed SLA deadlines, by customer, level and deadline (response, resolution).",
    );
    for c in &customers {
        for (i, level) in LEVELS.iter().enumerate() {
            for deadline in ["response", "resolution"] {
                let n = breaches.get(&(c.as_str(), i as u8 + 1, deadline)).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "vigil_sla_breaches_total{{customer=\"{}\",level=\"{level}\",deadline=\"{deadline}\"}} {n}",
                    escape(c)
                );
            }
        }
    }
    for (name, help, hist) in [
        (
            "vigil_incident_time_to_acknowledge_seconds",
            "From an incident's opening to its acknowledgement by a person, by level.",
            &ack,
        ),
        (
            "vigil_incident_time_to_resolve_seconds",
            "From an incident's opening to its resolution, by level.",
            &resolve,
        ),
    ] {
        header(out, name, "histogram", help);
        for (i, level) in LEVELS.iter().enumerate() {
            hist[i].render(out, name, level);
        }
    }
    let (outbox, deliveries) = store.notification_backlog().await?;
    header(
        out,
        "vigil_notification_backlog",
        "gauge",
        "Notifications waiting: outbox (not yet fanned out), deliveries (pending delivery).",
    );
    let _ = writeln!(out, "vigil_notification_backlog{{queue=\"outbox\"}} {outbox}");
    let _ = writeln!(out, "vigil_notification_backlog{{queue=\"deliveries\"}} {deliveries}");
    // Every configured receiver, at 0 when it has none, and any other that still has some.
    let mut dead: BTreeMap<&str, u64> = receivers.iter().map(|r| (r.as_str(), 0)).collect();
    let counts = store.dead_letter_counts().await?;
    for c in &counts {
        dead.insert(c.receiver.as_str(), c.count);
    }
    header(
        out,
        "vigil_notification_dead_letters",
        "gauge",
        "Deliveries dead-lettered (notify.max_attempts used up or refused by the receiver; \
         retried every notify.dead_letter_retry until delivered or dropped), by receiver.",
    );
    for (receiver, n) in dead {
        let _ = writeln!(
            out,
            "vigil_notification_dead_letters{{receiver=\"{}\"}} {n}",
            escape(receiver)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_hosts_are_grouped_by_family_escaped_and_capped() {
        let text = include_str!("../../../agent/tests/golden/node-exporter.json");
        let mut report: Report = serde_json::from_str(text).unwrap();
        let metrics = HostMetrics::new(1000);
        let a = HostId::new_random();
        let b = HostId::new_random();
        metrics.observe(a, 10, &report);
        // An older report never replaces a newer one.
        metrics.observe(a, 5, &Report::default());
        if let Some(vigil_proto::v1::probe_result::Data::Raid(raid)) =
            report.probes.iter_mut().find_map(|p| {
                p.data
                    .as_mut()
                    .filter(|d| matches!(d, vigil_proto::v1::probe_result::Data::Raid(_)))
            })
        {
            raid.arrays[0].name = "md\"0\\\n\r".into();
        }
        metrics.observe(b, 10, &report);
        let mut out = String::new();
        metrics.render(&mut out);
        // One TYPE line per family, all its samples after it.
        let types = out.lines().filter(|l| l.starts_with("# TYPE")).count();
        let families: std::collections::BTreeSet<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('{').next().unwrap())
            .collect();
        assert_eq!(types, families.len());
        // A CR is no escape of the text format: it shows as the text `\r`.
        assert!(out.contains(r#"array="md\"0\\\n\\r"}"#), "escaped label value");
        assert_eq!(
            out.matches(&format!("host_id=\"{a}\"")).count(),
            out.matches(&format!("host_id=\"{b}\"")).count()
        );

        let capped = HostMetrics::new(5);
        capped.observe(a, 10, &report);
        let mut out = String::new();
        capped.render(&mut out);
        assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 5);
        metrics.forget(a);
        assert_eq!(metrics.len(), 1);
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        for s in [30.0, 120.0, 1e7] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "L1");
        assert!(out.contains("x_bucket{level=\"L1\",le=\"60\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{level=\"L1\",le=\"300\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{level=\"L1\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{level=\"L1\"} 3\n"), "{out}");
    }
}
