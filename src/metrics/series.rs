//! Time series of a run: one row per bucket of simulated time (responses, latency, queue depth,
//! GC pauses, connection-pool waits, L1 hit ratio, database queries), sampled between events at
//! fixed instants and printed as a deterministic CSV (`timeseries.csv`).
//!
//! The sampler is pure: it is given, at each bucket end, the world's cumulative totals (it
//! differences them with the previous sample), the instantaneous queue depth, and the windows
//! that components filled during the bucket (taken and reset by the caller). Memory is flat apart
//! from the rows, and there are at most [`MAX_ROWS`] of them: the bucket width is chosen from the
//! longest the run can last.

use super::LatencyHistogram;
use crate::kernel::{SimDuration, SimTime};
use std::fmt::Write as _;

/// The most rows a series holds (the bucket width is chosen to keep under it).
pub const MAX_ROWS: u64 = 10_000;

/// Bucket widths tried in order, seconds.
const WIDTHS_S: [u64; 6] = [1, 10, 60, 600, 3_600, 86_400];

/// The CSV header of [`TimeSeries::to_csv`].
pub const CSV_HEADER: &str = "t_s,requests,throughput_per_s,rate_5xx,latency_ms_p50,latency_ms_p99,queue_depth,gc_pause_ms,db_pool_wait_ms_mean,db_pool_wait_ms_p99,cache_l1_hit_ratio,db_queries,l2_errors,feed_lag_ms_max";

/// The bucket width for a run that lasts at most `span`: 1 s, else 10 s (past 10,000 s, about
/// 2.8 hours), else 1 min, 10 min, 1 h, 1 d, else whole seconds — the first giving at most
/// [`MAX_ROWS`] buckets.
pub fn bucket_width(span: SimDuration) -> SimDuration {
    let span = span.as_ns().max(1);
    for s in WIDTHS_S {
        let w = s * 1_000_000_000;
        if span.div_ceil(w) <= MAX_ROWS {
            return SimDuration::from_secs(s);
        }
    }
    let w = span.div_ceil(MAX_ROWS).div_ceil(1_000_000_000);
    SimDuration::from_secs(w)
}

/// Cumulative totals of the world at an instant; every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Stop-the-world time of all nodes up to the instant (a pause running at the instant counts
    /// only its part before it).
    pub gc_paused_ns: u64,
    /// L1 lookups and hits of all nodes (0 when the cache is off).
    pub l1_lookups: u64,
    pub l1_hits: u64,
    /// Queries the database took into service.
    pub db_queries: u64,
    /// Requests the L2 cache answered with an error (down, failing); 0 without an L2.
    pub l2_errors: u64,
}

/// Responses of one bucket, filled by the gateway as they happen and taken at the bucket's end.
#[derive(Clone, Debug, Default)]
pub struct ResponseWindow {
    /// Latency from the intended start, ns.
    pub latency: LatencyHistogram,
    pub responses_5xx: u64,
}

impl ResponseWindow {
    #[inline]
    pub fn record(&mut self, latency_ns: u64, is_5xx: bool) {
        self.latency.record(latency_ns);
        self.responses_5xx += u64::from(is_5xx);
    }
    /// Empties the window, keeping its memory.
    pub fn reset(&mut self) {
        self.latency.reset();
        self.responses_5xx = 0;
    }
}

/// What one bucket measured. `start..end` is the bucket (the last one may be shorter); an event
/// at a bucket's end instant belongs to that bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRow {
    pub start: SimTime,
    pub end: SimTime,
    /// Responses at the gateway (any status, rejections included).
    pub requests: u64,
    pub responses_5xx: u64,
    /// Latency quantiles of those responses, ns (`None` when there were none).
    pub latency_p50_ns: Option<u64>,
    pub latency_p99_ns: Option<u64>,
    /// Requests waiting for a worker (accept queue) or a core, all nodes, at `end`.
    pub queue_depth: u64,
    /// Stop-the-world time of all nodes within the bucket, ns.
    pub gc_pause_ns: u64,
    /// Connection-pool acquisitions that ended in the bucket (granted or timed out).
    pub pool_acquisitions: u64,
    /// Their exact mean wait and p99 wait, ns (`None` when there were none).
    pub pool_wait_mean_ns: Option<f64>,
    pub pool_wait_p99_ns: Option<u64>,
    /// L1 lookups and hits in the bucket (`None` when the cache is off).
    pub l1_lookups: Option<u64>,
    pub l1_hits: Option<u64>,
    /// Queries the database took into service in the bucket.
    pub db_queries: u64,
    /// L2 requests answered with an error in the bucket (0 without an L2).
    pub l2_errors: u64,
    /// The binlog consumer's lag, ns: the largest lag of the row changes and heartbeats the
    /// binlog invalidator received in the bucket (from the database's write to the arrival), or,
    /// if larger, how overdue the next heartbeat was at the bucket's end (`None` without binlog
    /// invalidation, or with neither). See [`crate::cache::Invalidator::take_lag_window`].
    pub feed_lag_max_ns: Option<u64>,
}

impl SeriesRow {
    /// The bucket's length in seconds.
    pub fn seconds(&self) -> f64 {
        self.end.saturating_since(self.start).as_secs_f64()
    }
    /// Responses per second of the bucket (0 for an empty bucket of no length).
    pub fn throughput_per_s(&self) -> f64 {
        let s = self.seconds();
        if s > 0.0 {
            self.requests as f64 / s
        } else {
            0.0
        }
    }
    /// 5XX responses / responses, `None` without responses.
    pub fn rate_5xx(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.responses_5xx as f64 / self.requests as f64)
    }
    /// L1 hits / lookups, `None` when the cache is off or nothing was looked up.
    pub fn l1_hit_ratio(&self) -> Option<f64> {
        match (self.l1_lookups, self.l1_hits) {
            (Some(n), Some(h)) if n > 0 => Some(h as f64 / n as f64),
            _ => None,
        }
    }
}

/// The rows of a run and the sampler's state.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    width: SimDuration,
    cache: bool,
    rows: Vec<SeriesRow>,
    /// End of the last bucket sampled.
    last: SimTime,
    prev: Totals,
    /// Set by the last (partial) sample: nothing more is taken.
    closed: bool,
}

impl TimeSeries {
    /// An empty series of buckets `width` long; `cache`: whether L1 columns have values.
    pub fn new(width: SimDuration, cache: bool) -> TimeSeries {
        assert!(!width.is_zero(), "a bucket has a length");
        TimeSeries {
            width,
            cache,
            rows: Vec::new(),
            last: SimTime::ZERO,
            prev: Totals::default(),
            closed: false,
        }
    }

    pub fn width(&self) -> SimDuration {
        self.width
    }
    pub fn rows(&self) -> &[SeriesRow] {
        &self.rows
    }
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next bucket's end, where the driver must call [`TimeSeries::sample`]; `None` once the
    /// series is closed.
    pub fn next_instant(&self) -> Option<SimTime> {
        (!self.closed).then(|| self.last.saturating_add(self.width))
    }

    /// Closes the bucket ending at `at` (the next instant, or the run's end for a last, shorter
    /// bucket): differences `totals` with the previous sample and keeps the windows' figures
    /// (`feed_lag_max_ns`: the binlog invalidator's, see [`SeriesRow::feed_lag_max_ns`]).
    pub fn sample(
        &mut self,
        at: SimTime,
        totals: Totals,
        queue_depth: u64,
        responses: &ResponseWindow,
        pool_waits: &LatencyHistogram,
        feed_lag_max_ns: Option<u64>,
    ) {
        debug_assert!(!self.closed, "a closed series takes no sample");
        debug_assert!(at >= self.last, "samples go forward");
        let d = |now: u64, before: u64| now.saturating_sub(before);
        let h = &responses.latency;
        self.rows.push(SeriesRow {
            start: self.last,
            end: at,
            requests: h.count(),
            responses_5xx: responses.responses_5xx,
            latency_p50_ns: h.quantile_ns(0.5),
            latency_p99_ns: h.quantile_ns(0.99),
            queue_depth,
            gc_pause_ns: d(totals.gc_paused_ns, self.prev.gc_paused_ns),
            pool_acquisitions: pool_waits.count(),
            pool_wait_mean_ns: pool_waits.mean_ns(),
            pool_wait_p99_ns: pool_waits.quantile_ns(0.99),
            l1_lookups: self
                .cache
                .then(|| d(totals.l1_lookups, self.prev.l1_lookups)),
            l1_hits: self.cache.then(|| d(totals.l1_hits, self.prev.l1_hits)),
            db_queries: d(totals.db_queries, self.prev.db_queries),
            l2_errors: d(totals.l2_errors, self.prev.l2_errors),
            feed_lag_max_ns,
        });
        self.prev = totals;
        self.last = at;
    }

    /// The last bucket, from the last sample to the run's end `end` (taken only if the run went
    /// past the last sample); the series is closed afterwards.
    pub fn close(
        &mut self,
        end: SimTime,
        totals: Totals,
        queue_depth: u64,
        responses: &ResponseWindow,
        pool_waits: &LatencyHistogram,
        feed_lag_max_ns: Option<u64>,
    ) {
        if self.closed {
            return;
        }
        if end > self.last {
            self.sample(
                end,
                totals,
                queue_depth,
                responses,
                pool_waits,
                feed_lag_max_ns,
            );
        }
        self.closed = true;
    }

    /// The rows as CSV ([`CSV_HEADER`], one line per row, `\n` endings): seconds and
    /// milliseconds at 3 decimals, ratios at 6, counts as integers; a value that does not exist
    /// (no responses, no pool acquisitions, cache off or no lookups) is an empty field.
    pub fn to_csv(&self) -> String {
        let mut s = String::with_capacity(64 * (self.rows.len() + 1));
        s.push_str(CSV_HEADER);
        s.push('\n');
        let ms = |ns: Option<u64>| ns.map_or(String::new(), |v| format!("{:.3}", v as f64 / 1e6));
        let ratio = |r: Option<f64>| r.map_or(String::new(), |v| format!("{v:.6}"));
        for r in &self.rows {
            writeln!(
                s,
                "{:.3},{},{:.3},{},{},{},{},{:.3},{},{},{},{},{},{}",
                r.start.as_secs_f64(),
                r.requests,
                r.throughput_per_s(),
                ratio(r.rate_5xx()),
                ms(r.latency_p50_ns),
                ms(r.latency_p99_ns),
                r.queue_depth,
                r.gc_pause_ns as f64 / 1e6,
                r.pool_wait_mean_ns
                    .map_or(String::new(), |v| format!("{:.3}", v / 1e6)),
                ms(r.pool_wait_p99_ns),
                ratio(r.l1_hit_ratio()),
                r.db_queries,
                r.l2_errors,
                ms(r.feed_lag_max_ns),
            )
            .expect("writing to a String");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_width_keeps_rows_under_the_bound() {
        let s = SimDuration::from_secs;
        assert_eq!(bucket_width(s(5)), s(1));
        assert_eq!(bucket_width(SimDuration::ZERO), s(1));
        assert_eq!(bucket_width(s(10_000)), s(1));
        assert_eq!(bucket_width(s(10_001)), s(10));
        // Three hours of traffic plus the drain bound: 10 s buckets.
        assert_eq!(bucket_width(s(3 * 3_600 + 90)), s(10));
        assert_eq!(bucket_width(s(100_000)), s(10));
        assert_eq!(bucket_width(s(100_001)), s(60));
        assert_eq!(bucket_width(s(30 * 86_400)), s(600));
        assert_eq!(bucket_width(s(10_000 * 86_400 + 1)), s(86_401));
        for span in [
            1,
            999,
            10_000,
            10_001,
            123_456,
            7_000_000,
            900_000_000,
            u64::MAX / 2,
        ] {
            let span = SimDuration::from_ns(span.saturating_mul(1_000_000_000).max(span));
            let w = bucket_width(span);
            assert!(span.as_ns().div_ceil(w.as_ns()) <= MAX_ROWS, "{span}: {w}");
        }
    }

    fn window(latencies_ms: &[u64], errors: u64) -> ResponseWindow {
        let mut w = ResponseWindow::default();
        for (i, &l) in latencies_ms.iter().enumerate() {
            w.record(l * 1_000_000, (i as u64) < errors);
        }
        w
    }

    #[test]
    fn a_synthetic_sampler_sequence_gives_exact_deltas() {
        let s = SimTime::from_ns;
        let mut ts = TimeSeries::new(SimDuration::from_secs(1), true);
        assert_eq!(ts.next_instant(), Some(s(1_000_000_000)));
        let totals = |gc, lookups, hits, db| Totals {
            gc_paused_ns: gc,
            l1_lookups: lookups,
            l1_hits: hits,
            db_queries: db,
            l2_errors: 0,
        };
        let mut pool = LatencyHistogram::new();
        pool.record(0);
        pool.record(3_000_000);
        let mut w = window(&[10, 20, 30, 40], 1);
        ts.sample(
            s(1_000_000_000),
            totals(7_500_000, 10, 4, 100),
            3,
            &w,
            &pool,
            None,
        );
        w.reset();
        assert_eq!(w.latency.count(), 0, "a reset empties the window");
        assert_eq!(w.responses_5xx, 0, "a reset empties the window");
        assert_eq!(w.latency.quantile_ns(0.5), None);
        ts.sample(
            s(2_000_000_000),
            totals(7_500_000, 30, 19, 250),
            0,
            &w,
            &LatencyHistogram::new(),
            None,
        );
        let last = window(&[5], 0);
        ts.close(
            s(2_500_000_000),
            totals(9_000_000, 31, 19, 251),
            1,
            &last,
            &LatencyHistogram::new(),
            Some(3_021_500_000),
        );
        assert!(ts.is_closed());
        assert_eq!(ts.next_instant(), None);
        // Closing again adds nothing.
        ts.close(
            s(3_000_000_000),
            totals(1, 1, 1, 1),
            1,
            &last,
            &LatencyHistogram::new(),
            None,
        );
        let r = ts.rows();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].requests, r[0].responses_5xx), (4, 1));
        assert_eq!(r[0].throughput_per_s(), 4.0);
        assert_eq!(r[0].rate_5xx(), Some(0.25));
        assert_eq!(
            (r[0].gc_pause_ns, r[1].gc_pause_ns, r[2].gc_pause_ns),
            (7_500_000, 0, 1_500_000)
        );
        assert_eq!(
            (r[0].db_queries, r[1].db_queries, r[2].db_queries),
            (100, 150, 1)
        );
        assert_eq!(
            (r[0].l1_lookups, r[1].l1_lookups, r[1].l1_hits),
            (Some(10), Some(20), Some(15))
        );
        assert_eq!(r[1].l1_hit_ratio(), Some(0.75));
        assert_eq!(r[2].l1_hit_ratio(), Some(0.0), "one lookup, no hit");
        assert_eq!(r[0].pool_acquisitions, 2);
        assert_eq!(r[0].pool_wait_mean_ns, Some(1_500_000.0));
        assert_eq!(r[1].latency_p99_ns, None);
        assert_eq!((r[2].start, r[2].end), (s(2_000_000_000), s(2_500_000_000)));
        assert_eq!(r[2].throughput_per_s(), 2.0);
        let csv = ts.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 4);
        // p50: HdrHistogram's highest value equivalent to 20 ms (3 significant digits); p99 is
        // capped at the exact max.
        assert_eq!(
            lines[1],
            "0.000,4,4.000,0.250000,20.005,40.000,3,7.500,1.500,3.000,0.400000,100,0,"
        );
        assert_eq!(lines[2], "1.000,0,0.000,,,,0,0.000,,,0.750000,150,0,");
        assert_eq!(
            lines[3],
            "2.000,1,2.000,0.000000,5.000,5.000,1,1.500,,,0.000000,1,0,3021.500"
        );
    }

    #[test]
    fn cache_columns_are_empty_when_the_cache_is_off() {
        let mut ts = TimeSeries::new(SimDuration::from_secs(10), false);
        ts.sample(
            SimTime::from_ns(10_000_000_000),
            Totals::default(),
            0,
            &ResponseWindow::default(),
            &LatencyHistogram::new(),
            None,
        );
        assert_eq!(ts.rows()[0].l1_lookups, None);
        assert_eq!(
            ts.to_csv().lines().nth(1),
            Some("0.000,0,0.000,,,,0,0.000,,,,0,0,")
        );
    }
}
