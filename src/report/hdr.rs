//! Latency histograms as files: HdrHistogram's V2 serialization (uncompressed, the format of the
//! Java and Rust HdrHistogram libraries), one file per API and one for all APIs, so results of
//! several runs can be merged and re-reported later.
//!
//! Layout: `histograms/<ApiName>.hdr` for every API that had responses (e.g.
//! `histograms/DescribeInstances.hdr`) and `histograms/all.hdr` for every response. Each file is
//! one V2 histogram (cookie `0x1c849313`, big-endian header, zig-zag LEB128 counts) of latency in
//! nanoseconds from the intended start to the response at the gateway, 3 significant digits —
//! the same histograms as `summary.json`'s `latency_ms` (after the warmup). The V2 format keeps
//! bucket counts only: the exact sum, min and max of the summary are not in it.

use crate::api::types::Api;
use crate::metrics::LatencyHistogram;
use crate::world::RunResult;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// The folder of the histogram files, beside `summary.json`.
pub const DIR: &str = "histograms";
/// The file name of the histogram of every response.
pub const ALL: &str = "all.hdr";

/// `h` in V2 format.
pub fn to_v2(h: &LatencyHistogram) -> Vec<u8> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h.hdr(), &mut bytes)
        .expect("a latency histogram's counts fit V2 (below i64::MAX) and a Vec takes any write");
    bytes
}

/// Reads a histogram written by [`to_v2`] (or any V2 / V2+deflate histogram).
pub fn from_v2(mut bytes: &[u8]) -> Result<Histogram<u64>, String> {
    Deserializer::new()
        .deserialize(&mut bytes)
        .map_err(|e| format!("not a V2 HdrHistogram: {e:?}"))
}

/// The histogram files of a run: (file name, V2 bytes), one per API with responses in API order,
/// then [`ALL`].
pub fn histogram_files(r: &RunResult) -> Vec<(String, Vec<u8>)> {
    let mut all = LatencyHistogram::new();
    let mut files: Vec<(String, Vec<u8>)> = Api::ALL
        .iter()
        .map(|&api| r.api(api))
        .filter(|a| a.requests > 0)
        .map(|a| {
            all.merge(&a.latency);
            (format!("{}.hdr", a.api.name()), to_v2(&a.latency))
        })
        .collect();
    files.push((ALL.to_string(), to_v2(&all)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_round_trips_counts_and_quantiles() {
        let mut h = LatencyHistogram::new();
        for v in 1..=20_000u64 {
            h.record(v * v * 13);
        }
        let bytes = to_v2(&h);
        assert_eq!(&bytes[..4], &[0x1c, 0x84, 0x93, 0x13], "the V2 cookie");
        let back = from_v2(&bytes).unwrap();
        assert_eq!(back.len(), h.count());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(back.value_at_quantile(q), h.hdr().value_at_quantile(q));
        }
        assert_eq!(to_v2(&h), bytes, "the same histogram, the same bytes");
        let empty = from_v2(&to_v2(&LatencyHistogram::new())).unwrap();
        assert_eq!(empty.len(), 0);
        assert!(from_v2(b"nope").is_err());
    }
}
