//! Streaming measurements: latency histograms (HdrHistogram, 3 significant digits, plus exact
//! count, sum, min and max) and counters, registered by name and recorded by id.
//!
//! Memory is independent of how many values are recorded, so it stays flat however long the
//! simulated run is. Nothing here averages away the tail: percentiles come from the histogram,
//! and the mean is computed from the exact sum.

pub mod series;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds: HdrHistogram for quantiles (relative error ≤ 0.1%), and
/// exact count, sum, min and max beside it.
///
/// Recording is the hot path of every run (about nine records per simulated request), so the
/// counts are kept here, in HdrHistogram's own layout (3 significant digits, unit 1 ns: 2,048
/// sub-buckets, a bucket per power of two above them), and a record is an index computation and
/// an increment. The `hdrhistogram::Histogram` that answers quantiles, merges into reports and
/// serializes is built from the counts when first asked for after a record (each count recorded
/// at its bucket's lowest value), and is exactly the histogram the same values recorded one by
/// one would give: the same counts, total, min and max equivalents, and size (see the
/// `built_hdr_is_the_recorded_one` test).
///
/// The counts are 32-bit: a record touches one cell of an array of tens to hundreds of KiB, so
/// most records are cache misses, and half the bytes is half the misses (histogram records
/// were 13% of the full core's wall clock). A count that would pass `u32::MAX` carries 2³² into
/// `carries` (never in practice: four billion values in one bucket of one histogram).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    /// Counts by HdrHistogram index (see [`hdr_index`]), modulo 2³²; grows as larger values
    /// arrive.
    counts: Vec<u32>,
    /// The counts' carries: (index, multiples of 2³²), sorted by index.
    carries: Vec<(usize, u64)>,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    /// The HdrHistogram of `counts`, built on demand and dropped by the next record.
    /// Boxed: the fields a record touches then share one or two cache lines.
    hdr: std::cell::OnceCell<Box<Histogram<u64>>>,
}

/// Sub-buckets per bucket for 3 significant digits: 2 × 10³ rounded up to a power of two.
const SUB_BUCKET_COUNT_MAGNITUDE: u32 = 11;
const SUB_BUCKET_HALF_COUNT_MAGNITUDE: u32 = SUB_BUCKET_COUNT_MAGNITUDE - 1;
const SUB_BUCKET_HALF_COUNT: usize = 1 << SUB_BUCKET_HALF_COUNT_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = (1 << SUB_BUCKET_COUNT_MAGNITUDE) - 1;

/// HdrHistogram's counts index of `value` (its `index_for`, unit magnitude 0).
#[inline(always)]
fn hdr_index(value: u64) -> usize {
    let bucket = (64 - SUB_BUCKET_COUNT_MAGNITUDE) - (value | SUB_BUCKET_MASK).leading_zeros();
    let sub_bucket = (value >> bucket) as usize;
    ((bucket as usize + 1) << SUB_BUCKET_HALF_COUNT_MAGNITUDE) + sub_bucket - SUB_BUCKET_HALF_COUNT
}

/// The lowest value of counts index `index` (HdrHistogram's `value_for`).
fn hdr_value(index: usize) -> u64 {
    let bucket = (index >> SUB_BUCKET_HALF_COUNT_MAGNITUDE) as i64 - 1;
    let sub_bucket = (index & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT;
    if bucket < 0 {
        (sub_bucket - SUB_BUCKET_HALF_COUNT) as u64
    } else {
        (sub_bucket as u64) << bucket
    }
}

/// The counts length HdrHistogram gives a histogram that must hold `value` (its
/// `buckets_to_cover` and `num_bins`).
fn hdr_len_to_cover(value: u64) -> usize {
    let mut smallest_untrackable = 1u64 << SUB_BUCKET_COUNT_MAGNITUDE;
    let mut buckets = 1usize;
    while smallest_untrackable <= value {
        if smallest_untrackable > u64::MAX / 2 {
            buckets += 1;
            break;
        }
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    (buckets + 1) * SUB_BUCKET_HALF_COUNT
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: vec![0; hdr_len_to_cover(0)],
            carries: Vec::new(),
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            hdr: std::cell::OnceCell::new(),
        }
    }

    #[inline(always)]
    pub fn record(&mut self, value_ns: u64) {
        let i = hdr_index(value_ns);
        match self.counts.get_mut(i) {
            Some(c) if *c < u32::MAX && self.hdr.get().is_none() => *c += 1,
            _ => self.count_cold(value_ns, i),
        }
        self.count += 1;
        self.sum_ns += u128::from(value_ns);
        self.min_ns = self.min_ns.min(value_ns);
        self.max_ns = self.max_ns.max(value_ns);
    }

    /// The rare part of a record, out of line: the counts grow to hold `value_ns`, the built
    /// histogram is dropped, or the count carries.
    #[cold]
    #[inline(never)]
    fn count_cold(&mut self, value_ns: u64, i: usize) {
        if i >= self.counts.len() {
            self.counts.resize(hdr_len_to_cover(value_ns), 0);
        }
        self.hdr.take();
        self.add_at(i, 1);
    }

    /// Adds `n` to the count at index `i` (within the array), carrying past `u32::MAX`.
    fn add_at(&mut self, i: usize, n: u64) {
        let sum = u64::from(self.counts[i]) + n;
        self.counts[i] = sum as u32;
        let carry = sum >> 32;
        if carry > 0 {
            match self.carries.binary_search_by_key(&i, |&(j, _)| j) {
                Ok(k) => self.carries[k].1 += carry,
                Err(k) => self.carries.insert(k, (i, carry)),
            }
        }
    }

    /// The full count at index `i`.
    fn count_at(&self, i: usize) -> u64 {
        if self.carries.is_empty() {
            return u64::from(self.counts[i]);
        }
        let carry = match self.carries.binary_search_by_key(&i, |&(j, _)| j) {
            Ok(k) => self.carries[k].1,
            Err(_) => 0,
        };
        u64::from(self.counts[i]) + (carry << 32)
    }

    pub fn count(&self) -> u64 {
        self.count
    }
    /// Empties the histogram and keeps its memory: a window reused bucket after bucket does
    /// not grow its counts array again (each growth is a reallocation and a copy). Only the
    /// counts between the least and the greatest value recorded can be non-zero (records and
    /// merges keep it so), and only those are cleared: a window of a few values in a counts
    /// array of hundreds of KiB does not rewrite it all (and evict the caches) every bucket.
    pub fn reset(&mut self) {
        if self.count > 0 {
            let hi = hdr_index(self.max_ns).min(self.counts.len() - 1);
            self.counts[hdr_index(self.min_ns)..=hi].fill(0);
        }
        self.carries.clear();
        debug_assert!(self.counts.iter().all(|&c| c == 0));
        self.hdr.take();
        self.count = 0;
        self.sum_ns = 0;
        self.min_ns = u64::MAX;
        self.max_ns = 0;
    }
    /// Exact mean in ns (from the exact sum), `None` when empty.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }
    pub fn min_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min_ns)
    }
    pub fn max_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_ns)
    }
    /// The value at quantile `q` in [0, 1] (HdrHistogram's "highest equivalent value" of the
    /// bucket, capped at the exact max), `None` when empty.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        (self.count > 0).then(|| self.hdr().value_at_quantile(q).min(self.max_ns))
    }
    /// Adds every value recorded in `other` (exact: histograms merge losslessly).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.count == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for i in 0..other.counts.len() {
            let n = other.count_at(i);
            if n > 0 {
                self.add_at(i, n);
            }
        }
        self.hdr.take();
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }
    /// The HdrHistogram of every value recorded (built from the counts on first use after a
    /// record).
    pub fn hdr(&self) -> &Histogram<u64> {
        self.hdr.get_or_init(|| {
            let mut h = Histogram::new(3).expect("3 significant digits is a valid precision");
            for i in 0..self.counts.len() {
                let c = self.count_at(i);
                if c > 0 {
                    h.record_n(hdr_value(i), c)
                        .expect("an auto-resizing histogram holds any value below u64::MAX");
                }
            }
            Box::new(h)
        })
    }
}

/// Names a histogram in a [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistogramId(u32);

/// Names a counter in a [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterId(u32);

/// All metrics of one run, in registration order (which is deterministic).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    histograms: Vec<(String, LatencyHistogram)>,
    counters: Vec<(String, u64)>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers (or finds) a histogram by name.
    pub fn histogram(&mut self, name: &str) -> HistogramId {
        if let Some(i) = self.histograms.iter().position(|(n, _)| n == name) {
            return HistogramId(i as u32);
        }
        self.histograms
            .push((name.to_string(), LatencyHistogram::new()));
        HistogramId((self.histograms.len() - 1) as u32)
    }

    /// Registers (or finds) a counter by name.
    pub fn counter(&mut self, name: &str) -> CounterId {
        if let Some(i) = self.counters.iter().position(|(n, _)| n == name) {
            return CounterId(i as u32);
        }
        self.counters.push((name.to_string(), 0));
        CounterId((self.counters.len() - 1) as u32)
    }

    #[inline]
    pub fn record(&mut self, id: HistogramId, value_ns: u64) {
        self.histograms[id.0 as usize].1.record(value_ns);
    }

    #[inline]
    pub fn add(&mut self, id: CounterId, n: u64) {
        self.counters[id.0 as usize].1 += n;
    }

    pub fn get_histogram(&self, id: HistogramId) -> &LatencyHistogram {
        &self.histograms[id.0 as usize].1
    }
    pub fn get_counter(&self, id: CounterId) -> u64 {
        self.counters[id.0 as usize].1
    }
    /// Zeroes every counter and empties every histogram, keeping the names and ids (the end of
    /// a warmup: what follows is measured alone).
    pub fn reset_values(&mut self) {
        for (_, h) in &mut self.histograms {
            *h = LatencyHistogram::new();
        }
        for (_, c) in &mut self.counters {
            *c = 0;
        }
    }

    /// Histograms sorted by name.
    pub fn histograms(&self) -> Vec<(&str, &LatencyHistogram)> {
        let mut v: Vec<_> = self
            .histograms
            .iter()
            .map(|(n, h)| (n.as_str(), h))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
    /// Counters sorted by name.
    pub fn counters(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<_> = self
            .counters
            .iter()
            .map(|(n, c)| (n.as_str(), *c))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_keeps_exact_moments_and_close_quantiles() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1_000);
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.mean_ns(), Some(50_000_500.0));
        assert_eq!(h.min_ns(), Some(1_000));
        assert_eq!(h.max_ns(), Some(100_000_000));
        let p99 = h.quantile_ns(0.99).unwrap() as f64;
        assert!((p99 / 99_000_000.0 - 1.0).abs() < 0.001, "p99 {p99}");
        let p50 = h.quantile_ns(0.5).unwrap() as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.001, "p50 {p50}");
        assert_eq!(LatencyHistogram::new().quantile_ns(0.5), None);
    }

    #[test]
    fn a_reset_histogram_is_empty_and_records_afresh() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1_000u64 {
            h.record(v * 1_000_000_000);
        }
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!((h.mean_ns(), h.min_ns(), h.max_ns()), (None, None, None));
        assert_eq!(h.quantile_ns(0.5), None);
        h.record(7);
        h.record(9);
        assert_eq!(
            (h.min_ns(), h.max_ns(), h.mean_ns()),
            (Some(7), Some(9), Some(8.0))
        );
        assert_eq!(h.quantile_ns(1.0), Some(9));
        let mut fresh = LatencyHistogram::new();
        fresh.record(7);
        fresh.record(9);
        assert_eq!(h.quantile_ns(0.5), fresh.quantile_ns(0.5));
    }

    /// `reset` clears only the counts between the least and greatest value recorded: after
    /// records and merges spread over the whole range (and a growth of the array), every count
    /// is zero again, and the histogram records as a fresh one does.
    #[test]
    fn a_reset_clears_every_count_recorded_or_merged() {
        let mut rng = crate::kernel::RootSeed::new(3).fork("reset");
        for round in 0..200 {
            let mut h = LatencyHistogram::new();
            let mut other = LatencyHistogram::new();
            let mut draw = |bits: u64| {
                let b = rng.below(bits) + 1;
                rng.below(1 << b)
            };
            for _ in 0..(round % 7) {
                h.record(draw(60));
            }
            for _ in 0..(round % 5) {
                other.record(draw(63));
            }
            h.merge(&other);
            h.reset();
            assert!(h.counts.iter().all(|&c| c == 0), "round {round}");
            h.record(12_345);
            let mut fresh = LatencyHistogram::new();
            fresh.record(12_345);
            assert_eq!(h.hdr(), fresh.hdr(), "round {round}");
        }
    }

    /// A count past `u32::MAX` carries into the side table: the full count is kept, merged,
    /// built into the HdrHistogram and cleared by `reset`.
    #[test]
    fn counts_past_32_bits_carry() {
        let mut h = LatencyHistogram::new();
        h.record(1_000);
        let i = hdr_index(1_000);
        h.add_at(i, u64::from(u32::MAX));
        h.add_at(i, 5);
        let n = (1u64 << 32) + 5;
        assert_eq!(h.count_at(i), n);
        let mut m = LatencyHistogram::new();
        m.record(1_000);
        m.merge(&h);
        assert_eq!(m.count_at(i), n + 1);
        assert_eq!(m.carries, vec![(i, 1)]);
        m.add_at(i, 3 << 32);
        assert_eq!(m.count_at(i), n + 1 + (3 << 32));
        assert_eq!(m.hdr().count_at(hdr_value(i)), n + 1 + (3 << 32));
        m.reset();
        assert!(m.carries.is_empty() && m.counts.iter().all(|&c| c == 0));
        assert_eq!(m.count_at(i), 0);
    }

    #[test]
    fn merge_is_lossless() {
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for v in 0..1000u64 {
            let x = v * v * 37 + 5;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.mean_ns(), all.mean_ns());
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(a.quantile_ns(q), all.quantile_ns(q));
        }
    }

    /// The histogram built from the counts is the one HdrHistogram gives when the values are
    /// recorded one by one: counts, total, min, max, size, quantiles and serialization.
    #[test]
    fn built_hdr_is_the_recorded_one() {
        use hdrhistogram::serialization::{Serializer, V2Serializer};
        let mut rng = crate::kernel::RootSeed::new(7).fork("hdr");
        for scale in [1u64, 1_000, 1_000_000_000, u64::MAX >> 8] {
            let (mut ours, mut theirs) =
                (LatencyHistogram::new(), Histogram::<u64>::new(3).unwrap());
            for k in 0..20_000u64 {
                let v = match k % 5 {
                    0 => k,
                    1 => (rng.unit() * scale as f64) as u64,
                    2 => (rng.unit() * rng.unit() * scale as f64) as u64,
                    3 => scale.saturating_mul(k % 7),
                    _ => 2_047 + k % 3,
                };
                ours.record(v);
                theirs.record(v).unwrap();
            }
            let h = ours.hdr();
            assert!(h == &theirs, "scale {scale}");
            assert_eq!(h.len(), theirs.len());
            assert_eq!((h.max(), h.min_nz()), (theirs.max(), theirs.min_nz()));
            assert_eq!(h.distinct_values(), theirs.distinct_values());
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(h.value_at_quantile(q), theirs.value_at_quantile(q));
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            V2Serializer::new().serialize(h, &mut a).unwrap();
            V2Serializer::new().serialize(&theirs, &mut b).unwrap();
            assert_eq!(a, b, "scale {scale}");
        }
        for v in [
            0,
            1,
            2_047,
            2_048,
            4_095,
            4_096,
            1 << 40,
            u64::MAX >> 1,
            u64::MAX - 1,
        ] {
            let mut h = Histogram::<u64>::new(3).unwrap();
            h.record(v).unwrap();
            let i = hdr_index(v);
            assert_eq!(h.count_at(hdr_value(i)), 1, "value {v}");
            assert_eq!(h.lowest_equivalent(v), hdr_value(i), "value {v}");
            assert_eq!(h.distinct_values(), hdr_len_to_cover(v), "value {v}");
        }
    }

    #[test]
    fn registry_finds_by_name_and_lists_sorted() {
        let mut r = Registry::new();
        let b = r.counter("b");
        let a = r.counter("a");
        assert_eq!(r.counter("b"), b);
        r.add(a, 2);
        r.add(b, 5);
        assert_eq!(r.counters(), vec![("a", 2), ("b", 5)]);
        let h = r.histogram("lat");
        r.record(h, 7);
        assert_eq!(r.get_histogram(h).count(), 1);
    }
}
