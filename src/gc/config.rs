//! Heap configuration: [`HeapSpec`] (plain, editable input with named defaults per profile) and
//! [`HeapConfig`] (the validated form a [`super::Heap`] is built from).

use super::{GIB, GcProfile, MIB};
use crate::kernel::SimDuration;

/// Parts per billion: the integer form of a configured fraction.
pub(crate) const PPB: u64 = 1_000_000_000;

/// A fraction in [0, 1] as parts per billion, applied to byte counts with floor division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fraction(u64);

impl Fraction {
    /// Rounds `x` (already checked to be in [0, 1]) to the nearest part per billion: one IEEE
    /// multiplication and a round-half-up done by hand, the same on every machine.
    fn from_checked_f64(x: f64) -> Fraction {
        let scaled = x * PPB as f64;
        let t = scaled as u64;
        let n = if scaled - t as f64 >= 0.5 { t + 1 } else { t };
        Fraction(n.min(PPB))
    }

    /// `floor(bytes × fraction)`.
    #[inline]
    pub(crate) fn of(self, bytes: u64) -> u64 {
        (u128::from(bytes) * u128::from(self.0) / u128::from(PPB)) as u64
    }

    /// `ceil(bytes × fraction)`.
    #[inline]
    pub(crate) fn of_ceil(self, bytes: u64) -> u64 {
        (u128::from(bytes) * u128::from(self.0)).div_ceil(u128::from(PPB)) as u64
    }
}

/// G1-specific parameters (ignored by the other profiles).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct G1Params {
    /// Initiating heap occupancy as a fraction of the whole heap (eden + survivor + old): a
    /// concurrent cycle starts after a young GC that leaves old at or above it.
    /// `-XX:InitiatingHeapOccupancyPercent=45` is `0.45`; `1.0` never starts a cycle.
    pub ihop_fraction: f64,
    /// `-XX:MaxGCPauseMillis`: caps how much old garbage one mixed GC reclaims.
    pub pause_target: SimDuration,
    /// `-XX:G1MixedGCCountTarget`: a cycle's garbage is reclaimed over this many mixed GCs.
    pub mixed_gc_count_target: u32,
    /// Fixed part of the concurrent marking time.
    pub mark_base: SimDuration,
    /// Concurrent marking time per MiB of live data in old.
    pub mark_per_mib_live: SimDuration,
    /// The remark pause at the end of marking.
    pub remark_pause: SimDuration,
    /// The cleanup pause, right after remark.
    pub cleanup_pause: SimDuration,
    /// Extra pause of a mixed GC per MiB of old garbage it reclaims.
    pub mixed_pause_per_mib_reclaimed: SimDuration,
}

impl G1Params {
    /// HotSpot's defaults where it has one (IHOP 45%, pause target 200 ms, 8 mixed GCs per cycle);
    /// the durations are *(assumed)*: marking 10 ms + 1 ms per MiB live (≈ 1 s per GiB), remark
    /// 10 ms, cleanup 2 ms, 0.2 ms per MiB reclaimed by a mixed GC.
    pub fn hotspot_defaults() -> G1Params {
        G1Params {
            ihop_fraction: 0.45,
            pause_target: SimDuration::from_ms(200),
            mixed_gc_count_target: 8,
            mark_base: SimDuration::from_ms(10),
            mark_per_mib_live: SimDuration::from_ms(1),
            remark_pause: SimDuration::from_ms(10),
            cleanup_pause: SimDuration::from_ms(2),
            mixed_pause_per_mib_reclaimed: SimDuration::from_us(200),
        }
    }
}

/// ZGC-specific parameters (ignored by the other profiles).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZgcParams {
    /// A concurrent cycle starts when used bytes reach this fraction of the heap; the rest is the
    /// headroom that allocation during the cycle must fit in.
    pub trigger_fraction: f64,
    /// Each of the three pauses of a cycle (mark start, mark end, relocate start).
    pub pause: SimDuration,
    /// Fixed part of a cycle's concurrent duration; must be > 0.
    pub cycle_base: SimDuration,
    /// Concurrent cycle time per MiB of live data.
    pub cycle_per_mib_live: SimDuration,
    /// CPU-time multiplier for the application (the throughput tax of concurrent GC threads and
    /// load barriers); at least 1.
    pub cpu_multiplier: f64,
}

impl ZgcParams {
    /// *(assumed)*: trigger at 70% used, 100 µs per pause (published: 50–300 µs, independent of
    /// heap size), cycle 10 ms + 0.5 ms per MiB live (≈ 0.5 s per GiB), 10% CPU tax (published:
    /// at most 15%).
    pub fn hotspot_defaults() -> ZgcParams {
        ZgcParams {
            trigger_fraction: 0.70,
            pause: SimDuration::from_us(100),
            cycle_base: SimDuration::from_ms(10),
            cycle_per_mib_live: SimDuration::from_us(500),
            cpu_multiplier: 1.10,
        }
    }
}

/// The editable description of a heap: public fields, no validation. Start from
/// [`HeapSpec::defaults_for`], change fields, then [`HeapSpec::build`]:
///
/// ```
/// use firedrill::gc::{GcProfile, HeapSpec, MIB};
/// let cfg = HeapSpec {
///     eden_bytes: 512 * MIB,
///     ..HeapSpec::defaults_for(GcProfile::Parallel)
/// }
/// .build()
/// .unwrap();
/// assert_eq!(cfg.spec().eden_bytes, 512 * MIB);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeapSpec {
    pub profile: GcProfile,
    /// Eden capacity; > 0.
    pub eden_bytes: u64,
    /// Survivor capacity (one to-space); 0 promotes every young survivor straight to old.
    pub survivor_bytes: u64,
    /// Old-generation capacity; > 0.
    pub old_bytes: u64,
    /// Fraction of eden still live at a young GC, in [0, 1].
    pub survival_ratio: f64,
    /// Fraction of the survivor space's contents promoted to old at each young GC, in [0, 1]; the
    /// rest has died by then.
    pub tenuring_ratio: f64,
    pub young_pause_base: SimDuration,
    /// Young pause per MiB copied (eden survivors + promoted survivors).
    pub young_pause_per_mib_surviving: SimDuration,
    pub full_pause_base: SimDuration,
    /// Full-GC pause per MiB of live data in old.
    pub full_pause_per_mib_live: SimDuration,
    /// The application's long-lived data: old converges to it; promoted bytes beyond it are
    /// garbage. May exceed old's capacity (heap pressure: constant full GCs).
    pub live_set_bytes: u64,
    /// Allocation not tied to requests (caches, timers, heartbeats), bytes per second.
    pub background_alloc_bytes_per_s: u64,
    pub g1: G1Params,
    pub zgc: ZgcParams,
}

impl HeapSpec {
    /// Named defaults for `profile`: a 4 GiB heap (eden 1 GiB, survivor 128 MiB, old the rest)
    /// holding a 1 GiB live set, no background allocation, and *(assumed)* costs: 5% of eden
    /// survives a young GC, half the survivors are promoted at the next one, young pause 2 ms +
    /// 0.5 ms per MiB copied, full GC 20 ms + 1 ms per MiB live (≈ 1 s per GiB). G1 and ZGC
    /// parameters come from [`G1Params::hotspot_defaults`] and [`ZgcParams::hotspot_defaults`];
    /// for ZGC the three sizes only add up to its one 4 GiB heap.
    pub fn defaults_for(profile: GcProfile) -> HeapSpec {
        let eden_bytes = GIB;
        let survivor_bytes = 128 * MIB;
        HeapSpec {
            profile,
            eden_bytes,
            survivor_bytes,
            old_bytes: 4 * GIB - eden_bytes - survivor_bytes,
            survival_ratio: 0.05,
            tenuring_ratio: 0.5,
            young_pause_base: SimDuration::from_ms(2),
            young_pause_per_mib_surviving: SimDuration::from_us(500),
            full_pause_base: SimDuration::from_ms(20),
            full_pause_per_mib_live: SimDuration::from_ms(1),
            live_set_bytes: GIB,
            background_alloc_bytes_per_s: 0,
            g1: G1Params::hotspot_defaults(),
            zgc: ZgcParams::hotspot_defaults(),
        }
    }

    /// Validates: the same as [`HeapConfig::new`].
    pub fn build(self) -> Result<HeapConfig, HeapConfigError> {
        HeapConfig::new(self)
    }
}

/// Why a heap description is not valid; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeapConfigError {
    #[error(
        "`{field}` must be greater than 0 bytes: give the generation a size, e.g. 1073741824 (1 GiB)"
    )]
    EmptyGeneration { field: &'static str },
    #[error("eden + survivor + old overflows 2^64 bytes: use smaller generations")]
    HeapTooLarge,
    #[error("`{field}` must be a fraction in [{min}, {max}] (e.g. 0.05 for 5%), got {value}")]
    FractionOutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error(
        "G1 `pause_target` ({target}) must exceed `young_pause_base` ({base}), or no mixed GC could reclaim anything: raise the target or lower the base"
    )]
    PauseTargetBelowYoungBase {
        target: SimDuration,
        base: SimDuration,
    },
    #[error("G1 `mixed_gc_count_target` must be at least 1 (HotSpot's default is 8)")]
    NoMixedCollections,
    #[error("ZGC `cycle_base` must be greater than 0: a concurrent cycle takes time, e.g. 10ms")]
    InstantZgcCycle,
    #[error(
        "ZGC `cpu_multiplier` must be a finite number >= 1 (1.10 is a 10% throughput tax), got {0}"
    )]
    CpuMultiplierBelowOne(f64),
}

/// A validated heap description. Built by [`HeapConfig::new`] / [`HeapSpec::build`], or
/// [`HeapConfig::defaults_for`]; read back with [`HeapConfig::spec`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeapConfig {
    spec: HeapSpec,
    pub(crate) survival: Fraction,
    pub(crate) tenuring: Fraction,
    /// G1: old-generation bytes at which a concurrent cycle starts.
    pub(crate) ihop_bytes: u64,
    /// ZGC: used bytes at which a cycle starts.
    pub(crate) zgc_trigger_bytes: u64,
    /// eden + survivor + old.
    pub(crate) total_bytes: u64,
}

fn fraction(field: &'static str, value: f64, min: f64, max: f64) -> Result<f64, HeapConfigError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(value)
    } else {
        Err(HeapConfigError::FractionOutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl HeapConfig {
    /// Checks `spec`: eden and old > 0, the total fits in u64, ratios in [0, 1]; for G1 the IHOP
    /// in [0, 1], a pause target above the young base and at least one mixed GC per cycle; for ZGC
    /// a trigger in (0, 1], a cycle base > 0 and a CPU multiplier ≥ 1. Parameters of other
    /// profiles are not checked.
    pub fn new(spec: HeapSpec) -> Result<HeapConfig, HeapConfigError> {
        use HeapConfigError as E;
        if spec.eden_bytes == 0 {
            return Err(E::EmptyGeneration {
                field: "eden_bytes",
            });
        }
        if spec.old_bytes == 0 {
            return Err(E::EmptyGeneration { field: "old_bytes" });
        }
        let total_bytes = spec
            .eden_bytes
            .checked_add(spec.survivor_bytes)
            .and_then(|b| b.checked_add(spec.old_bytes))
            .ok_or(E::HeapTooLarge)?;
        let survival = fraction("survival_ratio", spec.survival_ratio, 0.0, 1.0)?;
        let tenuring = fraction("tenuring_ratio", spec.tenuring_ratio, 0.0, 1.0)?;
        let mut ihop_bytes = total_bytes;
        let mut zgc_trigger_bytes = total_bytes;
        match spec.profile {
            GcProfile::G1 => {
                let g = &spec.g1;
                let ihop = fraction("g1.ihop_fraction", g.ihop_fraction, 0.0, 1.0)?;
                if g.pause_target <= spec.young_pause_base {
                    return Err(E::PauseTargetBelowYoungBase {
                        target: g.pause_target,
                        base: spec.young_pause_base,
                    });
                }
                if g.mixed_gc_count_target == 0 {
                    return Err(E::NoMixedCollections);
                }
                ihop_bytes = Fraction::from_checked_f64(ihop).of_ceil(total_bytes);
            }
            GcProfile::Zgc => {
                let z = &spec.zgc;
                let trigger = fraction("zgc.trigger_fraction", z.trigger_fraction, 0.0, 1.0)?;
                let trigger = Fraction::from_checked_f64(trigger);
                if trigger.0 == 0 {
                    return Err(E::FractionOutOfRange {
                        field: "zgc.trigger_fraction",
                        value: z.trigger_fraction,
                        min: 1e-9,
                        max: 1.0,
                    });
                }
                if z.cycle_base.is_zero() {
                    return Err(E::InstantZgcCycle);
                }
                if !(z.cpu_multiplier.is_finite() && z.cpu_multiplier >= 1.0) {
                    return Err(E::CpuMultiplierBelowOne(z.cpu_multiplier));
                }
                zgc_trigger_bytes = trigger.of_ceil(total_bytes).max(1);
            }
            GcProfile::Parallel | GcProfile::Off => {}
        }
        Ok(HeapConfig {
            spec,
            survival: Fraction::from_checked_f64(survival),
            tenuring: Fraction::from_checked_f64(tenuring),
            ihop_bytes,
            zgc_trigger_bytes,
            total_bytes,
        })
    }

    /// The validated [`HeapSpec::defaults_for`] `profile`.
    pub fn defaults_for(profile: GcProfile) -> HeapConfig {
        HeapConfig::new(HeapSpec::defaults_for(profile)).expect("the named defaults are valid")
    }

    /// The description this configuration was validated from.
    pub fn spec(&self) -> &HeapSpec {
        &self.spec
    }

    pub fn profile(&self) -> GcProfile {
        self.spec.profile
    }

    /// eden + survivor + old: the whole heap.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}
