//! Time-varying arrival rates: a validated [`RateProfile`] is a multiplier m(t) ≥ 0 of the
//! open-loop traffic's base rate over simulated time (ramps, steps, diurnal cycles, the Double-11
//! midnight burst), with its exact upper bound and its mean for thinning and reports.
//!
//! t is the time since the start of the run (`SimTime` is nanoseconds since time zero). Every
//! transcendental function here is the pinned pure-Rust `libm` (see `kernel/sample.rs`), so a
//! multiplier has the same bits on every platform.

use crate::kernel::{SimDuration, SimTime};

/// A rate multiplier m(t) ≥ 0 over simulated time, applied to the traffic's base rate.
/// Build one with a constructor; each checks its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    shape: Shape,
    /// `max_multiplier()`, computed once at construction.
    max: f64,
}

#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Constant,
    Ramp {
        from: f64,
        to: f64,
        start_ns: u64,
        duration_ns: u64,
    },
    /// Sorted by time, strictly increasing, first at 0.
    Steps(Vec<(u64, f64)>),
    DiurnalHourly {
        points: [f64; 24],
        /// Time of day at t = 0, reduced modulo one day.
        offset_ns: u64,
    },
    DiurnalSine {
        mean: f64,
        amplitude: f64,
        peak_ns: u64,
        period_ns: u64,
    },
    Double11 {
        midnight_ns: u64,
        pre_scale_ns: u64,
        peak: f64,
        /// `tail / 3`, in seconds: the decay's time constant.
        tau_s: f64,
    },
}

/// Why a rate profile is not valid; each message says how to fix the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "rate multiplier `{param}` is {value}: a multiplier must be a finite number >= 0 \
         (1 = the base rate, 0 = no traffic)"
    )]
    BadMultiplier { param: &'static str, value: f64 },
    #[error("`{param}` must be longer than 0 (e.g. \"60s\")")]
    ZeroDuration { param: &'static str },
    #[error("a step profile needs at least one step: give [(0s, 1.0)] for the base rate")]
    NoSteps,
    #[error("the first step must start at 0s (it sets the rate from the start), not at {at}")]
    FirstStepNotAtZero { at: SimDuration },
    #[error(
        "steps must be in strictly increasing time order: step {index} at {at} does not come \
         after {previous}; sort the steps and merge ones at the same time"
    )]
    StepsOutOfOrder {
        index: usize,
        at: SimDuration,
        previous: SimDuration,
    },
    #[error(
        "the multiplier is 0 over the whole run, so no request would ever be sent: make at \
         least one multiplier > 0"
    )]
    AlwaysZero,
    #[error(
        "`amplitude` is {0}: it must be a finite number >= 0 (the swing either side of `mean`; \
         move the peak with `peak_at`)"
    )]
    BadAmplitude(f64),
    #[error(
        "`pre_scale` ({pre_scale}) is longer than `midnight` ({midnight}): operators cannot scale \
         out before the run starts; shorten `pre_scale` or start the run earlier"
    )]
    PreScaleBeforeStart {
        pre_scale: SimDuration,
        midnight: SimDuration,
    },
    #[error(
        "a time-varying rate profile needs exponential (Poisson) inter-arrivals, got `{0}`: use \
         an exponential `inter_arrival` (e.g. exp(1ms) for 1,000/s) or the constant profile"
    )]
    NonExponentialBase(String),
}

fn check_multiplier(param: &'static str, value: f64) -> Result<f64, ProfileError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ProfileError::BadMultiplier { param, value })
    }
}

fn nonzero(param: &'static str, d: SimDuration) -> Result<u64, ProfileError> {
    if d.is_zero() {
        Err(ProfileError::ZeroDuration { param })
    } else {
        Ok(d.as_ns())
    }
}

const NS_PER_S: f64 = 1e9;
const TWO_PI: f64 = 2.0 * core::f64::consts::PI;

/// The sine profile's phase at `t` (ns): `2π · ((t − peak) mod period) / period`, the remainder
/// taken in integers (exact), then one division.
fn sine_phase(t: u64, peak_ns: u64, period_ns: u64) -> f64 {
    let since_peak = (i128::from(t) - i128::from(peak_ns)).rem_euclid(i128::from(period_ns)) as u64;
    TWO_PI * (since_peak as f64 / period_ns as f64)
}

/// Steps of the numerical integration of shapes without a closed-form mean.
const MEAN_STEPS: u64 = 200_000;

impl RateProfile {
    fn build(shape: Shape) -> Result<RateProfile, ProfileError> {
        let max = match &shape {
            Shape::Constant => 1.0,
            Shape::Ramp { from, to, .. } => from.max(*to),
            Shape::Steps(steps) => steps.iter().map(|s| s.1).fold(0.0, f64::max),
            Shape::DiurnalHourly { points, .. } => points.iter().copied().fold(0.0, f64::max),
            Shape::DiurnalSine {
                mean, amplitude, ..
            } => (mean + amplitude).max(0.0),
            Shape::Double11 { peak, .. } => peak.max(1.0),
        };
        if max <= 0.0 {
            return Err(ProfileError::AlwaysZero);
        }
        Ok(RateProfile { shape, max })
    }

    /// m(t) = 1: the base rate throughout (stationary arrivals, generated as before profiles).
    pub fn constant() -> RateProfile {
        RateProfile {
            shape: Shape::Constant,
            max: 1.0,
        }
    }

    /// Linear from `from` at `start` to `to` at `start + duration`; `from` before, `to` after.
    pub fn ramp(
        from: f64,
        to: f64,
        start: SimDuration,
        duration: SimDuration,
    ) -> Result<RateProfile, ProfileError> {
        RateProfile::build(Shape::Ramp {
            from: check_multiplier("from", from)?,
            to: check_multiplier("to", to)?,
            start_ns: start.as_ns(),
            duration_ns: nonzero("duration", duration)?,
        })
    }

    /// Piecewise constant: `(at, multiplier)` holds from `at` until the next step's `at`
    /// (a step's own instant already has its multiplier). Sorted, strictly increasing, the first
    /// at 0.
    pub fn steps(steps: Vec<(SimDuration, f64)>) -> Result<RateProfile, ProfileError> {
        let Some(first) = steps.first() else {
            return Err(ProfileError::NoSteps);
        };
        if !first.0.is_zero() {
            return Err(ProfileError::FirstStepNotAtZero { at: first.0 });
        }
        for (i, w) in steps.windows(2).enumerate() {
            if w[1].0 <= w[0].0 {
                return Err(ProfileError::StepsOutOfOrder {
                    index: i + 1,
                    at: w[1].0,
                    previous: w[0].0,
                });
            }
        }
        let steps = steps
            .into_iter()
            .map(|(at, m)| Ok((at.as_ns(), check_multiplier("steps[].multiplier", m)?)))
            .collect::<Result<Vec<_>, ProfileError>>()?;
        RateProfile::build(Shape::Steps(steps))
    }

    /// A daily cycle from 24 hourly multipliers: `points[h]` at h:00, linearly interpolated
    /// between hours (23:00 → 24:00 goes back to `points[0]`), repeating every 24 h. The run
    /// starts `day_offset` into the day (e.g. 9h: t = 0 is 09:00).
    pub fn diurnal_hourly(
        points: [f64; 24],
        day_offset: SimDuration,
    ) -> Result<RateProfile, ProfileError> {
        for p in points {
            check_multiplier("points[]", p)?;
        }
        RateProfile::build(Shape::DiurnalHourly {
            points,
            offset_ns: day_offset.as_ns() % SimDuration::DAY.as_ns(),
        })
    }

    /// m(t) = max(0, mean + amplitude·cos(2π(t − peak_at)/period)): peaks at `peak_at` (and every
    /// `period` before and after), troughs half a period away.
    pub fn diurnal_sine(
        mean: f64,
        amplitude: f64,
        peak_at: SimDuration,
        period: SimDuration,
    ) -> Result<RateProfile, ProfileError> {
        let mean = check_multiplier("mean", mean)?;
        if !(amplitude.is_finite() && amplitude >= 0.0) {
            return Err(ProfileError::BadAmplitude(amplitude));
        }
        let period_ns = nonzero("period", period)?;
        RateProfile::build(Shape::DiurnalSine {
            mean,
            amplitude,
            peak_ns: peak_at.as_ns() % period_ns,
            period_ns,
        })
    }

    /// The Double-11 midnight burst: m = 1 before `midnight`, `peak` at `midnight`, then an
    /// exponential decay back toward 1 with time constant `tail / 3` (within ~5% of the
    /// baseline's distance after `tail`: e^-3 ≈ 0.05). Operators scale out `pre_scale` before
    /// midnight ([`RateProfile::scale_out_at`]); that does not change the rate.
    pub fn double11(
        midnight: SimDuration,
        pre_scale: SimDuration,
        peak: f64,
        tail: SimDuration,
    ) -> Result<RateProfile, ProfileError> {
        let peak = check_multiplier("peak", peak)?;
        let tail_ns = nonzero("tail", tail)?;
        if pre_scale > midnight {
            return Err(ProfileError::PreScaleBeforeStart {
                pre_scale,
                midnight,
            });
        }
        RateProfile::build(Shape::Double11 {
            midnight_ns: midnight.as_ns(),
            pre_scale_ns: pre_scale.as_ns(),
            peak,
            tau_s: tail_ns as f64 / NS_PER_S / 3.0,
        })
    }

    /// Whether this is the constant profile (m = 1 everywhere, stationary arrivals).
    pub fn is_constant(&self) -> bool {
        matches!(self.shape, Shape::Constant)
    }

    /// For a Double-11 profile, the instant operators scale out (`midnight - pre_scale`);
    /// `None` for the other kinds.
    pub fn scale_out_at(&self) -> Option<SimTime> {
        match self.shape {
            Shape::Double11 {
                midnight_ns,
                pre_scale_ns,
                ..
            } => Some(SimTime::from_ns(midnight_ns - pre_scale_ns)),
            _ => None,
        }
    }

    /// m(t), t since the start of the run.
    pub fn multiplier_at(&self, t: SimTime) -> f64 {
        let t = t.as_ns();
        match &self.shape {
            Shape::Constant => 1.0,
            &Shape::Ramp {
                from,
                to,
                start_ns,
                duration_ns,
            } => {
                if t <= start_ns {
                    from
                } else if t - start_ns >= duration_ns {
                    to
                } else {
                    let f = (t - start_ns) as f64 / duration_ns as f64;
                    from + (to - from) * f
                }
            }
            Shape::Steps(steps) => {
                // The last step at or before t (the first is at 0, so there is one).
                let i = steps.partition_point(|s| s.0 <= t);
                steps[i - 1].1
            }
            Shape::DiurnalHourly { points, offset_ns } => {
                let hour = SimDuration::HOUR.as_ns();
                let day = SimDuration::DAY.as_ns();
                let tod = ((u128::from(t) + u128::from(*offset_ns)) % u128::from(day)) as u64;
                let h = (tod / hour) as usize;
                let f = (tod % hour) as f64 / hour as f64;
                let (a, b) = (points[h], points[(h + 1) % 24]);
                a + (b - a) * f
            }
            &Shape::DiurnalSine {
                mean,
                amplitude,
                peak_ns,
                period_ns,
            } => (mean + amplitude * libm::cos(sine_phase(t, peak_ns, period_ns))).max(0.0),
            &Shape::Double11 {
                midnight_ns,
                peak,
                tau_s,
                ..
            } => {
                if t < midnight_ns {
                    1.0
                } else {
                    let x = (t - midnight_ns) as f64 / NS_PER_S;
                    1.0 + (peak - 1.0) * libm::exp(-x / tau_s)
                }
            }
        }
    }

    /// An upper bound of m(t) over the whole run (the maximum itself, which periodic shapes
    /// reach once per period). Finite and > 0.
    pub fn max_multiplier(&self) -> f64 {
        self.max
    }

    /// An upper bound of m(t) over `[from, to]`, at most [`RateProfile::max_multiplier`]:
    /// the majorant of thinning over a short window, so candidates are drawn at about the rate
    /// the window needs, not at the run's peak. Exact maxima for ramps, steps and Double-11
    /// (each monotone or constant between its breakpoints) and hourly points; for the sine, its
    /// value at `from` plus its steepest slope times the window. Inflated by one part in 10⁹
    /// against the rounding of m(t) between the points it is computed at.
    pub fn max_over(&self, from: SimTime, to: SimTime) -> f64 {
        let (a, b) = (from.as_ns(), to.as_ns().max(from.as_ns()));
        let bound = match &self.shape {
            Shape::Constant => 1.0,
            Shape::Ramp { .. } => self.multiplier_at(from).max(self.multiplier_at(to)),
            Shape::Steps(steps) => {
                // The step in force at `from`, and every step that starts in (from, to].
                let first = steps.partition_point(|st| st.0 <= a) - 1;
                steps[first..]
                    .iter()
                    .take_while(|st| st.0 <= b)
                    .map(|st| st.1)
                    .fold(0.0, f64::max)
            }
            Shape::DiurnalHourly { offset_ns, .. } => {
                // Linear between the hour points: the maximum is at an end or at a point.
                let hour = SimDuration::HOUR.as_ns();
                let day = SimDuration::DAY.as_ns();
                let mut m = self.multiplier_at(from).max(self.multiplier_at(to));
                let tod = ((u128::from(a) + u128::from(*offset_ns)) % u128::from(day)) as u64;
                let mut next = a.saturating_add(hour - tod % hour);
                while next < b {
                    m = m.max(self.multiplier_at(SimTime::from_ns(next)));
                    next = next.saturating_add(hour);
                }
                m
            }
            &Shape::DiurnalSine {
                amplitude,
                period_ns,
                ..
            } => {
                let slope_per_ns = amplitude * TWO_PI / period_ns as f64;
                self.multiplier_at(from) + slope_per_ns * (b - a) as f64
            }
            &Shape::Double11 { midnight_ns, .. } => {
                // 1 before midnight, decreasing from the peak after it.
                let before = if a < midnight_ns { 1.0 } else { 0.0 };
                if b < midnight_ns {
                    before
                } else {
                    let after = self.multiplier_at(SimTime::from_ns(a.max(midnight_ns)));
                    after.max(before)
                }
            }
        };
        (bound * (1.0 + 1e-9)).min(self.max)
    }

    /// The mean of m(t) over [0, `over`]: exact for constant, ramp, steps, hourly-diurnal,
    /// Double-11 and an unclamped sine; a clamped sine (amplitude > mean) is integrated with
    /// 200,000 midpoint steps. `over = 0` gives m(0).
    pub fn mean_multiplier(&self, over: SimDuration) -> f64 {
        let end = over.as_ns();
        if end == 0 {
            return self.multiplier_at(SimTime::ZERO);
        }
        let len_s = end as f64 / NS_PER_S;
        let integral_s = match &self.shape {
            Shape::Constant => len_s,
            &Shape::Ramp {
                start_ns,
                duration_ns,
                ..
            } => self
                .piecewise_linear_integral(end, &[start_ns, start_ns.saturating_add(duration_ns)]),
            Shape::Steps(steps) => {
                let mut sum = 0.0;
                for (i, &(at, m)) in steps.iter().enumerate() {
                    if at >= end {
                        break;
                    }
                    let next = steps.get(i + 1).map_or(end, |s| s.0.min(end));
                    sum += m * ((next - at) as f64 / NS_PER_S);
                }
                sum
            }
            Shape::DiurnalHourly { offset_ns, .. } => {
                // Knots at every hour boundary of the shifted clock within [0, end].
                let hour = SimDuration::HOUR.as_ns();
                let first = hour - offset_ns % hour;
                let knots: Vec<u64> = (0..)
                    .map(|k| first + k * hour)
                    .take_while(|k| *k < end)
                    .collect();
                self.piecewise_linear_integral(end, &knots)
            }
            &Shape::DiurnalSine {
                mean,
                amplitude,
                peak_ns,
                period_ns,
            } => {
                if amplitude <= mean {
                    // ∫ cos(2π(t−p)/P) dt = P/2π · sin(2π(t−p)/P).
                    let p_s = period_ns as f64 / NS_PER_S;
                    let phase = |t: u64| sine_phase(t, peak_ns, period_ns);
                    mean * len_s
                        + amplitude * p_s / TWO_PI * (libm::sin(phase(end)) - libm::sin(phase(0)))
                } else {
                    self.midpoint_integral(end)
                }
            }
            &Shape::Double11 {
                midnight_ns,
                peak,
                tau_s,
                ..
            } => {
                if end <= midnight_ns {
                    len_s
                } else {
                    let after = (end - midnight_ns) as f64 / NS_PER_S;
                    len_s + (peak - 1.0) * tau_s * (1.0 - libm::exp(-after / tau_s))
                }
            }
        };
        integral_s / len_s
    }

    /// ∫₀^end m(t) dt in seconds for an m linear between `knots` (and between 0, the knots in
    /// (0, end) and end): the trapezoid rule, exact for such m.
    fn piecewise_linear_integral(&self, end: u64, knots: &[u64]) -> f64 {
        let mut sum = 0.0;
        let mut prev = 0u64;
        let mut m_prev = self.multiplier_at(SimTime::ZERO);
        for &k in knots
            .iter()
            .filter(|k| **k > 0 && **k < end)
            .chain([end].iter())
        {
            let m = self.multiplier_at(SimTime::from_ns(k));
            sum += (m_prev + m) / 2.0 * ((k - prev) as f64 / NS_PER_S);
            prev = k;
            m_prev = m;
        }
        sum
    }

    /// ∫₀^end m(t) dt in seconds by the midpoint rule with [`MEAN_STEPS`] steps.
    fn midpoint_integral(&self, end: u64) -> f64 {
        let n = MEAN_STEPS.min(end);
        let mut sum = 0.0;
        for i in 0..n {
            let a = end / n * i + (end % n) * i / n;
            let b = end / n * (i + 1) + (end % n) * (i + 1) / n;
            let m = self.multiplier_at(SimTime::from_ns(a + (b - a) / 2));
            sum += m * ((b - a) as f64 / NS_PER_S);
        }
        sum
    }
}

impl Default for RateProfile {
    fn default() -> RateProfile {
        RateProfile::constant()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations and instants from nanosecond counts (`SimDuration` has no arithmetic).
    const S: u64 = 1_000_000_000;
    const MIN: u64 = 60 * S;
    const H: u64 = 3_600 * S;
    const DAY: u64 = 24 * H;

    fn d(ns: u64) -> SimDuration {
        SimDuration::from_ns(ns)
    }
    fn at(ns: u64) -> SimTime {
        SimTime::from_ns(ns)
    }
    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// A profile of each kind, picked and shaped by `k` and `x` (each in [0, 1)).
    fn some_profile(k: u8, x: f64) -> RateProfile {
        match k % 6 {
            0 => RateProfile::constant(),
            1 => RateProfile::ramp(
                4.0 * x,
                3.0 - x,
                d(5 * S),
                d(((1.0 + 50.0 * x) * S as f64) as u64),
            )
            .unwrap(),
            2 => RateProfile::steps(vec![
                (d(0), 1.0),
                (d(3 * S), 4.0 * x),
                (d(7 * S + 123), 2.0),
                (d(9 * S), 0.0),
                (d(20 * S), 5.0 * x + 0.5),
            ])
            .unwrap(),
            3 => RateProfile::diurnal_hourly(
                core::array::from_fn(|h| ((h as f64 * 7.3 + 10.0 * x) % 3.0).abs()),
                d((x * DAY as f64) as u64),
            )
            .unwrap(),
            4 => RateProfile::diurnal_sine(
                1.0,
                2.0 * x,
                d(13 * S),
                d(((20.0 + 100.0 * x) * S as f64) as u64),
            )
            .unwrap(),
            _ => RateProfile::double11(d(10 * S), d(5 * S), 1.0 + 20.0 * x, d(30 * S)).unwrap(),
        }
    }

    proptest::proptest! {
        /// `max_over` bounds m(t) on its window (checked at both ends and 64 points inside),
        /// and never exceeds the run's bound.
        #[test]
        fn max_over_bounds_the_multiplier_on_its_window(
            k in 0u8..6,
            x in 0.0f64..1.0,
            from in 0u64..(2 * DAY),
            len in 0u64..(3 * H),
        ) {
            let p = some_profile(k, x);
            let to = from + len;
            let bound = p.max_over(at(from), at(to));
            proptest::prop_assert!(bound <= p.max_multiplier());
            for i in 0..=65u64 {
                let t = from + len / 65 * i.min(64) + if i == 65 { len % 65 } else { 0 };
                let t = t.min(to);
                proptest::prop_assert!(
                    p.multiplier_at(at(t)) <= bound,
                    "m({t}) = {} > {bound} on [{from}, {to}]",
                    p.multiplier_at(at(t))
                );
            }
            proptest::prop_assert!(p.multiplier_at(at(to)) <= bound);
        }
    }

    /// The window's bound is tight where it can be: the value itself where m is constant, the
    /// peak just after midnight, 0 where m is 0.
    #[test]
    fn max_over_is_tight_on_flat_and_monotone_pieces() {
        let eps = 1e-8;
        let d11 = RateProfile::double11(d(60 * S), d(30 * S), 10.0, d(90 * S)).unwrap();
        assert!(
            close(d11.max_over(at(0), at(S)), 1.0, eps),
            "before midnight"
        );
        assert!(
            close(d11.max_over(at(59 * S), at(60 * S)), 10.0, eps),
            "reaching midnight"
        );
        let later = d11.multiplier_at(at(90 * S));
        assert!(
            close(d11.max_over(at(90 * S), at(91 * S)), later, eps),
            "decaying"
        );
        let steps =
            RateProfile::steps(vec![(d(0), 1.0), (d(10 * S), 0.0), (d(20 * S), 3.0)]).unwrap();
        assert_eq!(steps.max_over(at(11 * S), at(12 * S)), 0.0);
        assert!(close(steps.max_over(at(9 * S), at(11 * S)), 1.0, eps));
        assert!(close(steps.max_over(at(19 * S), at(20 * S)), 3.0, eps));
        let ramp = RateProfile::ramp(1.0, 3.0, d(10 * S), d(100 * S)).unwrap();
        assert!(close(ramp.max_over(at(60 * S), at(61 * S)), 2.02, eps));
        assert!(close(
            RateProfile::constant().max_over(at(0), at(DAY)),
            1.0,
            eps
        ));
    }

    #[test]
    fn constant_is_one_everywhere() {
        let p = RateProfile::constant();
        assert!(p.is_constant());
        assert_eq!(p.multiplier_at(at(0)), 1.0);
        assert_eq!(p.multiplier_at(at(DAY)), 1.0);
        assert_eq!(p.max_multiplier(), 1.0);
        assert_eq!(p.mean_multiplier(d(H)), 1.0);
        assert_eq!(p.scale_out_at(), None);
        assert_eq!(RateProfile::default(), p);
    }

    #[test]
    fn ramp_points_and_mean() {
        // 1 → 3 over [10s, 110s].
        let p = RateProfile::ramp(1.0, 3.0, d(10 * S), d(100 * S)).unwrap();
        assert!(!p.is_constant());
        assert_eq!(p.multiplier_at(at(0)), 1.0);
        assert_eq!(p.multiplier_at(at(10 * S)), 1.0);
        assert_eq!(p.multiplier_at(at(60 * S)), 2.0, "midpoint");
        assert_eq!(p.multiplier_at(at(35 * S)), 1.5);
        assert_eq!(p.multiplier_at(at(110 * S)), 3.0);
        assert_eq!(p.multiplier_at(at(1000 * S)), 3.0);
        assert_eq!(p.max_multiplier(), 3.0);
        // Over [0, 120s]: 10·1 + 100·2 + 10·3 = 240 → mean 2.
        assert!(close(p.mean_multiplier(d(120 * S)), 2.0, 1e-12));
        // Over [0, 60s]: 10·1 + 50·1.5 = 85.
        assert!(close(p.mean_multiplier(d(60 * S)), 85.0 / 60.0, 1e-12));
        // A falling ramp is bounded by its start.
        let down = RateProfile::ramp(4.0, 0.0, d(0), d(4 * S)).unwrap();
        assert_eq!(down.max_multiplier(), 4.0);
        assert_eq!(down.multiplier_at(at(S)), 3.0);
        assert_eq!(down.multiplier_at(at(5 * S)), 0.0);
    }

    #[test]
    fn steps_edges_and_mean() {
        let p = RateProfile::steps(vec![(d(0), 1.0), (d(10 * S), 5.0), (d(20 * S), 0.0)]).unwrap();
        assert_eq!(p.multiplier_at(at(0)), 1.0);
        assert_eq!(p.multiplier_at(at(10 * S - 1)), 1.0, "just before the edge");
        assert_eq!(p.multiplier_at(at(10 * S)), 5.0, "the edge itself");
        assert_eq!(p.multiplier_at(at(15 * S)), 5.0);
        assert_eq!(p.multiplier_at(at(20 * S)), 0.0);
        assert_eq!(p.multiplier_at(at(H)), 0.0);
        assert_eq!(p.max_multiplier(), 5.0);
        // [0, 30s]: 10 + 50 + 0 = 60 → 2.
        assert!(close(p.mean_multiplier(d(30 * S)), 2.0, 1e-12));
        assert!(close(p.mean_multiplier(d(15 * S)), 35.0 / 15.0, 1e-12));
    }

    #[test]
    fn diurnal_hourly_interpolates_and_wraps() {
        let mut points = [1.0; 24];
        points[0] = 0.5;
        points[1] = 1.5;
        points[12] = 4.0;
        points[23] = 2.5;
        let p = RateProfile::diurnal_hourly(points, d(0)).unwrap();
        assert_eq!(p.multiplier_at(at(0)), 0.5);
        assert_eq!(p.multiplier_at(at(H / 2)), 1.0, "half-way 00:00 → 01:00");
        assert_eq!(p.multiplier_at(at(H)), 1.5);
        assert_eq!(p.multiplier_at(at(12 * H)), 4.0);
        assert_eq!(p.multiplier_at(at(11 * H + H / 4)), 1.75);
        assert_eq!(p.multiplier_at(at(23 * H)), 2.5);
        assert_eq!(
            p.multiplier_at(at(23 * H + H / 2)),
            1.5,
            "23:00 → 24:00 interpolates toward points[0]"
        );
        assert_eq!(p.multiplier_at(at(24 * H)), 0.5, "wraps at 24h");
        assert_eq!(
            p.multiplier_at(at(49 * H + H / 2)),
            1.25,
            "third day, 01:30"
        );
        assert_eq!(p.max_multiplier(), 4.0);

        // Starting at 23:00: t = 0 is points[23], t = 1h is points[0].
        let late = RateProfile::diurnal_hourly(points, d(23 * H)).unwrap();
        assert_eq!(late.multiplier_at(at(0)), 2.5);
        assert_eq!(late.multiplier_at(at(H)), 0.5);
        assert_eq!(late.multiplier_at(at(2 * H)), 1.5);
        // An offset of a day and an hour is the same as an hour.
        let shifted = RateProfile::diurnal_hourly(points, d(DAY + H)).unwrap();
        assert_eq!(shifted.multiplier_at(at(0)), 1.5);

        // Mean over one day: the mean of each hour's trapezoid.
        let exact: f64 = (0..24)
            .map(|h| (points[h] + points[(h + 1) % 24]) / 2.0)
            .sum::<f64>()
            / 24.0;
        assert!(close(p.mean_multiplier(d(DAY)), exact, 1e-12));
        assert!(close(late.mean_multiplier(d(DAY)), exact, 1e-12));
        // Over 30 min from 00:00: (0.5 + 1.0) / 2.
        assert!(close(p.mean_multiplier(d(H / 2)), 0.75, 1e-12));
        // 90 min from 00:30 (a knot mid-run): 30 min on [1.0, 1.5], 60 min on [1.5, 1.0].
        let half = RateProfile::diurnal_hourly(points, d(H / 2)).unwrap();
        let want = (0.5 * 1.25 + 1.0 * 1.25) / 1.5;
        assert!(close(half.mean_multiplier(d(H + H / 2)), want, 1e-12));
    }

    #[test]
    fn diurnal_sine_peak_trough_and_clamp() {
        let p = RateProfile::diurnal_sine(2.0, 1.0, d(20 * H), d(DAY)).unwrap();
        assert!(close(p.multiplier_at(at(20 * H)), 3.0, 1e-15), "peak");
        assert!(close(p.multiplier_at(at(8 * H)), 1.0, 1e-15), "trough");
        assert!(
            close(p.multiplier_at(at(44 * H)), 3.0, 1e-15),
            "next day's peak"
        );
        assert!(
            close(p.multiplier_at(at(14 * H)), 2.0, 1e-12),
            "quarter period"
        );
        assert_eq!(p.max_multiplier(), 3.0);
        assert!(close(p.mean_multiplier(d(DAY)), 2.0, 1e-12));
        assert!(close(p.mean_multiplier(d(3 * DAY)), 2.0, 1e-12));
        // Half a day, 00:00 → 12:00 with the peak at 20:00: the closed form agrees with numbers.
        let half = p.mean_multiplier(d(12 * H));
        let numeric = p.midpoint_integral(12 * H) / (12.0 * 3600.0);
        assert!(close(half, numeric, 1e-9), "{half} vs {numeric}");
        assert!(
            half < 2.0,
            "the half-day away from the peak is below the mean"
        );

        // Amplitude above the mean: clamped at 0 in the trough.
        let c = RateProfile::diurnal_sine(1.0, 2.0, d(0), d(100 * S)).unwrap();
        assert_eq!(c.multiplier_at(at(0)), 3.0);
        assert_eq!(c.multiplier_at(at(50 * S)), 0.0);
        assert_eq!(c.max_multiplier(), 3.0);
        // Mean over a period of max(0, 1 + 2cos x): (θ + 2 sin θ)/π with θ = acos(-1/2) = 2π/3.
        let theta = 2.0 * core::f64::consts::PI / 3.0;
        let want = (theta + 2.0 * libm::sin(theta)) / core::f64::consts::PI;
        assert!(close(c.mean_multiplier(d(100 * S)), want, 1e-6));
    }

    #[test]
    fn double11_burst_and_decay() {
        let midnight = 2 * H;
        let tail = 30 * MIN;
        let p = RateProfile::double11(d(midnight), d(30 * MIN), 10.0, d(tail)).unwrap();
        assert_eq!(p.multiplier_at(at(0)), 1.0);
        assert_eq!(p.multiplier_at(at(midnight - 1)), 1.0);
        assert_eq!(p.multiplier_at(at(midnight)), 10.0);
        // After `tail`: 1 + 9·e^-3 ≈ 1.448, within 5% of the burst's excess over the baseline.
        let after = p.multiplier_at(at(midnight + tail));
        assert!(close(after, 1.0 + 9.0 * libm::exp(-3.0), 1e-12));
        assert!((after - 1.0) / 9.0 < 0.05);
        // After one time constant (tail/3 = 10 min): e^-1 of the excess left.
        let one_tau = p.multiplier_at(at(midnight + 10 * MIN));
        assert!(close(one_tau, 1.0 + 9.0 * libm::exp(-1.0), 1e-12));
        assert!(close(p.multiplier_at(at(midnight + 10 * H)), 1.0, 1e-9));
        assert_eq!(p.max_multiplier(), 10.0);
        assert_eq!(p.scale_out_at(), Some(at(H + 30 * MIN)));
        // Mean over [0, midnight + tail]: 2.5 h of 1, plus 9·τ·(1 − e^-3) extra.
        let over = midnight + tail;
        let want = 1.0 + 9.0 * 600.0 * (1.0 - libm::exp(-3.0)) / (over as f64 / 1e9);
        assert!(close(p.mean_multiplier(d(over)), want, 1e-12));
        let numeric = p.midpoint_integral(over) / (over as f64 / 1e9);
        assert!(close(p.mean_multiplier(d(over)), numeric, 1e-6));
        assert_eq!(p.mean_multiplier(d(H)), 1.0);
    }

    #[test]
    fn bad_inputs_say_what_to_fix() {
        let z = d(0);
        assert_eq!(
            RateProfile::ramp(-1.0, 2.0, z, d(S)),
            Err(ProfileError::BadMultiplier {
                param: "from",
                value: -1.0
            })
        );
        assert!(matches!(
            RateProfile::ramp(1.0, f64::NAN, z, d(S)),
            Err(ProfileError::BadMultiplier { param: "to", .. })
        ));
        assert_eq!(
            RateProfile::ramp(1.0, 2.0, z, z),
            Err(ProfileError::ZeroDuration { param: "duration" })
        );
        assert_eq!(
            RateProfile::ramp(0.0, 0.0, z, d(S)),
            Err(ProfileError::AlwaysZero)
        );
        assert_eq!(RateProfile::steps(vec![]), Err(ProfileError::NoSteps));
        assert_eq!(
            RateProfile::steps(vec![(d(S), 1.0)]),
            Err(ProfileError::FirstStepNotAtZero { at: d(S) })
        );
        let unsorted = RateProfile::steps(vec![(z, 1.0), (d(20 * S), 2.0), (d(10 * S), 3.0)]);
        assert_eq!(
            unsorted,
            Err(ProfileError::StepsOutOfOrder {
                index: 2,
                at: d(10 * S),
                previous: d(20 * S)
            })
        );
        assert!(unsorted.unwrap_err().to_string().contains("sort the steps"));
        assert!(matches!(
            RateProfile::steps(vec![(z, 1.0), (d(S), 2.0), (d(S), 3.0)]),
            Err(ProfileError::StepsOutOfOrder { index: 2, .. })
        ));
        assert!(matches!(
            RateProfile::steps(vec![(z, 1.0), (d(S), -0.5)]),
            Err(ProfileError::BadMultiplier { .. })
        ));
        let mut points = [1.0; 24];
        points[5] = f64::INFINITY;
        assert!(matches!(
            RateProfile::diurnal_hourly(points, z),
            Err(ProfileError::BadMultiplier { .. })
        ));
        assert_eq!(
            RateProfile::diurnal_hourly([0.0; 24], z),
            Err(ProfileError::AlwaysZero)
        );
        assert_eq!(
            RateProfile::diurnal_sine(1.0, 0.5, z, z),
            Err(ProfileError::ZeroDuration { param: "period" })
        );
        assert_eq!(
            RateProfile::diurnal_sine(1.0, -0.5, z, d(S)),
            Err(ProfileError::BadAmplitude(-0.5))
        );
        assert!(matches!(
            RateProfile::diurnal_sine(-1.0, 0.5, z, d(S)),
            Err(ProfileError::BadMultiplier { param: "mean", .. })
        ));
        assert_eq!(
            RateProfile::double11(d(H), d(H), 10.0, z),
            Err(ProfileError::ZeroDuration { param: "tail" })
        );
        let early = RateProfile::double11(d(H), d(2 * H), 10.0, d(H));
        assert_eq!(
            early,
            Err(ProfileError::PreScaleBeforeStart {
                pre_scale: d(2 * H),
                midnight: d(H)
            })
        );
        assert!(
            early
                .unwrap_err()
                .to_string()
                .contains("shorten `pre_scale`")
        );
        assert!(matches!(
            RateProfile::double11(d(H), z, -3.0, d(H)),
            Err(ProfileError::BadMultiplier { param: "peak", .. })
        ));
    }
}
