//! Virtual time: [`SimTime`] (an instant) and [`SimDuration`] (a span), both integer nanoseconds,
//! with exact parsing and printing of human units (`"250us"`, `"40ms"`, `"1.5s"`, `"2h"`, `"1d"`).
//!
//! No floating point is involved in parsing or printing: `"1.5s"` is exactly 1_500_000_000 ns, and
//! every value prints in the largest unit that represents it exactly, so printing then parsing
//! gives the same value back.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

/// An instant of virtual time: nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

/// A span of virtual time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimDuration(u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);
    /// The last representable instant (about 584 years); used as "never".
    pub const MAX: SimTime = SimTime(u64::MAX);

    pub const fn from_ns(ns: u64) -> SimTime {
        SimTime(ns)
    }
    pub const fn as_ns(self) -> u64 {
        self.0
    }
    /// Seconds since the start, for reporting only (never fed back into the simulation).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-9
    }
    /// `self + d`, saturating at [`SimTime::MAX`].
    pub const fn saturating_add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }
    /// `self + d`, or `None` past [`SimTime::MAX`].
    pub const fn checked_add(self, d: SimDuration) -> Option<SimTime> {
        match self.0.checked_add(d.0) {
            Some(ns) => Some(SimTime(ns)),
            None => None,
        }
    }
    /// The span from `earlier` to `self`, zero if `earlier` is later.
    /// The instant `d` before this one, or time zero.
    pub const fn saturating_sub(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_sub(d.as_ns()))
    }
    pub const fn saturating_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
    /// The time elapsed since the start of the run.
    pub const fn since_start(self) -> SimDuration {
        SimDuration(self.0)
    }
}

impl SimDuration {
    pub const ZERO: SimDuration = SimDuration(0);
    pub const MAX: SimDuration = SimDuration(u64::MAX);
    pub const NANOSECOND: SimDuration = SimDuration(1);
    pub const MICROSECOND: SimDuration = SimDuration(1_000);
    pub const MILLISECOND: SimDuration = SimDuration(1_000_000);
    pub const SECOND: SimDuration = SimDuration(1_000_000_000);
    pub const MINUTE: SimDuration = SimDuration(60 * 1_000_000_000);
    pub const HOUR: SimDuration = SimDuration(3_600 * 1_000_000_000);
    pub const DAY: SimDuration = SimDuration(86_400 * 1_000_000_000);

    pub const fn from_ns(ns: u64) -> SimDuration {
        SimDuration(ns)
    }
    pub const fn from_us(us: u64) -> SimDuration {
        SimDuration(us.saturating_mul(1_000))
    }
    pub const fn from_ms(ms: u64) -> SimDuration {
        SimDuration(ms.saturating_mul(1_000_000))
    }
    pub const fn from_secs(s: u64) -> SimDuration {
        SimDuration(s.saturating_mul(1_000_000_000))
    }
    /// Converts seconds given as a float (e.g. a sample of a distribution) to whole nanoseconds,
    /// rounding to nearest. Negative and NaN map to zero, values past the range saturate.
    /// The conversion is one IEEE multiplication and one rounding: the same bits on every machine.
    #[inline]
    pub fn from_secs_f64(s: f64) -> SimDuration {
        Self::from_ns_f64(s * 1e9)
    }

    /// `x` nanoseconds, rounded half away from zero, saturating at both ends; 0 for NaN.
    #[inline]
    fn from_ns_f64(x: f64) -> SimDuration {
        // The common case, every duration from 0.5 ns to 2^52 ns (52 days): `trunc(x + 0.5)`
        // is `x` rounded half away from zero here, in two instructions. Why it is exact: x is a
        // multiple of u = ulp(x) ≤ 0.5, and so is every n - 0.5 (n whole), so x + 0.5 is
        // either exact (it stays in x's binade) or at least 2^k, x's binade's end, and then
        // below 2^k + 0.5, where rounding (to a multiple of 2u ≤ 1) cannot reach 2^k + 1.
        // Below 0.5 (where 0.5 - 2^-54 + 0.5 would round to 1) and from 2^52 up (where x + 0.5
        // ties and rounds to even) the general path decides. NaN fails both tests.
        if (0.5..TWO_POW_52_F64).contains(&x) {
            return SimDuration((x + 0.5) as i64 as u64);
        }
        Self::from_ns_f64_general(x)
    }

    /// The general rounding of `x` nanoseconds, valid for every `x`: what
    /// [`SimDuration::from_ns_f64`] does outside its common range (below half a nanosecond,
    /// negative, NaN, or 2^52 ns and more), and the reference its fast path is tested against.
    #[cold]
    #[inline(never)]
    fn from_ns_f64_general(x: f64) -> SimDuration {
        if x.is_nan() || x <= 0.0 {
            SimDuration(0)
        } else if x >= i64::MAX as f64 {
            // Past ~292 years: saturate (no run gets near; the time limit ends runs long before).
            SimDuration(u64::MAX)
        } else {
            // Round half away from zero, as `f64::round`, without its library call; signed
            // conversions are single instructions on x86-64, unsigned ones are not. The fraction
            // `x - trunc(x)` is exact for every x below 2^53, and x ≥ 2^52 has no fraction.
            let t = x as i64;
            SimDuration((if x - t as f64 >= 0.5 { t + 1 } else { t }) as u64)
        }
    }
    pub const fn as_ns(self) -> u64 {
        self.0
    }
    /// Seconds, for reporting and for feeding analytic formulas.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-9
    }
    pub const fn saturating_add(self, o: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(o.0))
    }
    pub const fn saturating_mul(self, k: u64) -> SimDuration {
        SimDuration(self.0.saturating_mul(k))
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Add<SimDuration> for SimTime {
    type Output = SimTime;
    /// Panics on overflow (past 584 years of virtual time): use `checked_add` where input decides.
    #[inline]
    fn add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.checked_add(d.0).expect("virtual time overflow"))
    }
}
impl AddAssign<SimDuration> for SimTime {
    #[inline]
    fn add_assign(&mut self, d: SimDuration) {
        *self = *self + d;
    }
}
impl Sub<SimTime> for SimTime {
    type Output = SimDuration;
    /// Panics if `o` is later than `self`: a negative span is a bug in the caller.
    #[inline]
    fn sub(self, o: SimTime) -> SimDuration {
        SimDuration(self.0.checked_sub(o.0).expect("negative time span"))
    }
}
impl Add for SimDuration {
    type Output = SimDuration;
    #[inline]
    fn add(self, o: SimDuration) -> SimDuration {
        SimDuration(self.0.checked_add(o.0).expect("duration overflow"))
    }
}

/// 2^52 as f64: from here up every f64 is a whole number and `x + 0.5` ties (see
/// [`SimDuration::from_ns_f64`]).
const TWO_POW_52_F64: f64 = 4_503_599_627_370_496.0;

/// The units accepted in human-readable durations, largest first (printing picks the first that
/// divides the value exactly).
const UNITS: [(&str, u64); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Extra spellings accepted on input.
const UNIT_ALIASES: [(&str, u64); 4] = [
    ("min", 60_000_000_000),
    ("µs", 1_000),
    ("sec", 1_000_000_000),
    ("day", 86_400_000_000_000),
];

/// Why a duration string could not be read; each variant says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error("empty duration: write a number and a unit, e.g. \"250ms\"")]
    Empty,
    #[error("`{0}` has no unit: add one of d, h, m, s, ms, us, ns (e.g. \"{0}ms\")")]
    MissingUnit(String),
    #[error("`{input}` has an unknown unit `{unit}`: use one of d, h, m, s, ms, us, ns")]
    UnknownUnit { input: String, unit: String },
    #[error("`{0}` is not a number followed by a unit, e.g. \"1.5s\"")]
    BadNumber(String),
    #[error("`{0}` is finer than a nanosecond: virtual time counts whole nanoseconds")]
    SubNanosecond(String),
    #[error("`{0}` is too long: virtual time ends after about 584 years")]
    Overflow(String),
    #[error("`{0}` is negative: durations are zero or more")]
    Negative(String),
}

impl FromStr for SimDuration {
    type Err = ParseDurationError;

    /// Parses `<decimal><unit>`, e.g. `250us`, `40ms`, `1.5s`, `2h`, `1d`, `0`. Whitespace between
    /// the number and the unit is allowed. The value must be a whole number of nanoseconds.
    fn from_str(input: &str) -> Result<SimDuration, ParseDurationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        if s.starts_with('-') {
            return Err(ParseDurationError::Negative(s.to_string()));
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(s.len());
        let (number, unit) = (s[..split].trim(), s[split..].trim());
        if number.is_empty() {
            return Err(ParseDurationError::BadNumber(s.to_string()));
        }
        if unit.is_empty() {
            // A bare zero needs no unit.
            if number.chars().all(|c| c == '0' || c == '.' || c == '_') && number.contains('0') {
                return Ok(SimDuration::ZERO);
            }
            return Err(ParseDurationError::MissingUnit(s.to_string()));
        }
        let unit_ns = UNITS
            .iter()
            .chain(UNIT_ALIASES.iter())
            .find(|(name, _)| *name == unit)
            .map(|&(_, ns)| ns)
            .ok_or_else(|| ParseDurationError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            })?;
        parse_decimal_scaled(number, unit_ns, s).map(SimDuration)
    }
}

/// `number × unit_ns` computed exactly in integers.
fn parse_decimal_scaled(
    number: &str,
    unit_ns: u64,
    whole: &str,
) -> Result<u64, ParseDurationError> {
    let bad = || ParseDurationError::BadNumber(whole.to_string());
    let overflow = || ParseDurationError::Overflow(whole.to_string());
    let mut parts = number.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next().unwrap_or("");
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(bad());
    }
    let digits = |p: &str| -> Result<Vec<u8>, ParseDurationError> {
        p.chars()
            .filter(|&c| c != '_')
            .map(|c| c.to_digit(10).map(|d| d as u8).ok_or_else(bad))
            .collect()
    };
    let int_digits = digits(int_part)?;
    let mut frac_digits = digits(frac_part)?;
    while frac_digits.last() == Some(&0) {
        frac_digits.pop();
    }
    let mut total: u128 = 0;
    for d in int_digits {
        total = total * 10 + u128::from(d);
        if total > u128::from(u64::MAX) {
            return Err(overflow());
        }
    }
    total = total
        .checked_mul(u128::from(unit_ns))
        .ok_or_else(overflow)?;
    // Fraction: value = frac_num / 10^len; frac_num * unit_ns must divide by 10^len exactly.
    if !frac_digits.is_empty() {
        if frac_digits.len() > 30 {
            return Err(ParseDurationError::SubNanosecond(whole.to_string()));
        }
        let mut frac_num: u128 = 0;
        for &d in &frac_digits {
            frac_num = frac_num * 10 + u128::from(d);
        }
        let denom = 10u128.pow(frac_digits.len() as u32);
        let scaled = frac_num
            .checked_mul(u128::from(unit_ns))
            .ok_or_else(overflow)?;
        if scaled % denom != 0 {
            return Err(ParseDurationError::SubNanosecond(whole.to_string()));
        }
        total += scaled / denom;
    }
    u64::try_from(total).map_err(|_| overflow())
}

impl fmt::Display for SimDuration {
    /// Prints in the largest unit that keeps the value short and exact: `1.5s`, `250us`, `2h`,
    /// `90m`, `0s`. Parsing the output gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns == 0 {
            return f.write_str("0s");
        }
        // Exact whole multiples of d, h, m print in those units; everything else prints as a
        // decimal in the largest of s, ms, us, ns that is not larger than the value.
        for &(name, unit) in &UNITS[..3] {
            if ns % unit == 0 {
                return write!(f, "{}{}", ns / unit, name);
            }
        }
        for &(name, unit) in &UNITS[3..] {
            if ns >= unit || unit == 1 {
                let whole = ns / unit;
                let rem = ns % unit;
                if rem == 0 {
                    return write!(f, "{whole}{name}");
                }
                let width = unit.ilog10() as usize;
                let frac = format!("{rem:0width$}");
                return write!(f, "{whole}.{}{name}", frac.trim_end_matches('0'));
            }
        }
        unreachable!("the ns unit matches every value")
    }
}

impl fmt::Display for SimTime {
    /// An instant prints as the duration since the start of the run, prefixed with `t=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}", SimDuration(self.0))
    }
}

impl serde::Serialize for SimDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SimDuration {
    /// Accepts a human string (`"40ms"`) or the integer 0. Any other bare number is refused
    /// because its unit would be a guess.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SimDuration, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SimDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. \"250ms\", \"1.5s\", \"2h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SimDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SimDuration, E> {
                if v == 0 {
                    Ok(SimDuration::ZERO)
                } else {
                    Err(E::custom(format!(
                        "{v} has no unit: write a string such as \"{v}ms\" or \"{v}s\""
                    )))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SimDuration, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "{v} is negative: durations are zero or more"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> SimDuration {
        s.parse().unwrap()
    }

    #[test]
    fn subtracting_a_duration_stops_at_time_zero() {
        let t = SimTime::from_ns(5_000);
        assert_eq!(
            t.saturating_sub(SimDuration::from_ns(2_000)),
            SimTime::from_ns(3_000)
        );
        assert_eq!(t.saturating_sub(SimDuration::from_ns(9_000)), SimTime::ZERO);
    }

    #[test]
    fn parses_human_units_exactly() {
        assert_eq!(d("250us").as_ns(), 250_000);
        assert_eq!(d("40ms").as_ns(), 40_000_000);
        assert_eq!(d("1.5s").as_ns(), 1_500_000_000);
        assert_eq!(d("2h").as_ns(), 7_200_000_000_000);
        assert_eq!(d("1d").as_ns(), 86_400_000_000_000);
        assert_eq!(d("90m").as_ns(), 5_400_000_000_000);
        assert_eq!(d("5min").as_ns(), 300_000_000_000);
        assert_eq!(d("0.000000001s").as_ns(), 1);
        assert_eq!(d("1_000ms").as_ns(), 1_000_000_000);
        assert_eq!(d(" 3 s ").as_ns(), 3_000_000_000);
        assert_eq!(d("0").as_ns(), 0);
        assert_eq!(d(".5s").as_ns(), 500_000_000);
        assert_eq!(d("7ns").as_ns(), 7);
    }

    #[test]
    fn refuses_bad_durations_with_the_reason() {
        use ParseDurationError::*;
        let e = |s: &str| s.parse::<SimDuration>().unwrap_err();
        assert_eq!(e(""), Empty);
        assert!(matches!(e("40"), MissingUnit(_)));
        assert!(matches!(e("40 parsecs"), UnknownUnit { .. }));
        assert!(matches!(e("1.5ns"), SubNanosecond(_)));
        assert!(matches!(e("-1s"), Negative(_)));
        assert!(matches!(e("1.2.3s"), BadNumber(_)));
        assert!(matches!(e("ms"), BadNumber(_)));
        assert!(matches!(e("999999999999d"), Overflow(_)));
        assert!(
            e("40").to_string().contains("40ms"),
            "the hint shows a fixed spelling"
        );
    }

    #[test]
    fn prints_in_the_largest_exact_unit() {
        let p = |ns: u64| SimDuration::from_ns(ns).to_string();
        assert_eq!(p(0), "0s");
        assert_eq!(p(1), "1ns");
        assert_eq!(p(250_000), "250us");
        assert_eq!(p(1_500_000_000), "1.5s");
        assert_eq!(p(7_200_000_000_000), "2h");
        assert_eq!(p(5_400_000_000_000), "90m");
        assert_eq!(p(86_400_000_000_000), "1d");
        assert_eq!(p(1_000_000_001), "1.000000001s");
        assert_eq!(p(40_000_000), "40ms");
        assert_eq!(SimTime::from_ns(1_500).to_string(), "t=1.5us");
    }

    #[test]
    fn float_seconds_round_to_nearest_ns() {
        assert_eq!(SimDuration::from_secs_f64(1.5).as_ns(), 1_500_000_000);
        assert_eq!(SimDuration::from_secs_f64(-3.0).as_ns(), 0);
        assert_eq!(SimDuration::from_secs_f64(f64::NAN).as_ns(), 0);
        assert_eq!(SimDuration::from_secs_f64(1e30), SimDuration::MAX);
        assert_eq!(SimDuration::from_secs_f64(2.4e-9).as_ns(), 2);
    }

    /// The conversion of `x` nanoseconds (taken straight to the rounding, and through seconds)
    /// against the general rounding and against `f64::round`.
    fn check_ns_rounding(x: f64) {
        let direct = SimDuration::from_ns_f64(x);
        assert_eq!(direct, SimDuration::from_ns_f64_general(x), "x = {x:e}");
        if x > 0.0 && x < 9.0e18 {
            assert_eq!(direct.as_ns(), x.round() as u64, "x = {x:e}");
        }
        let s = x / 1e9;
        assert_eq!(
            SimDuration::from_secs_f64(s),
            SimDuration::from_ns_f64_general(s * 1e9),
            "s = {s:e}"
        );
    }

    #[test]
    fn fast_rounding_matches_the_general_one_at_the_edges() {
        // Halves, their neighbours, binade ends and the fast range's ends, in and out.
        let mut xs = vec![0.0, -0.0, f64::NAN, f64::INFINITY, -1.0, 1e30];
        for k in 0..64 {
            let p = 2f64.powi(k);
            for base in [p, p - 0.5, p + 0.5, p - 1.0, p + 1.0, p + 1.5, p - 1.5] {
                xs.extend([base, base.next_up(), base.next_down()]);
            }
        }
        for n in 0..100_000u32 {
            let h = f64::from(n) + 0.5;
            xs.extend([h, h.next_up(), h.next_down()]);
        }
        for x in xs {
            check_ns_rounding(x);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn fast_rounding_matches_the_general_one(bits in proptest::prelude::any::<u64>(), s in 0.0f64..1e7) {
            // Any bit pattern (every binade, NaN, infinities), and plain durations in seconds.
            check_ns_rounding(f64::from_bits(bits));
            check_ns_rounding(s * 1e9);
        }
    }

    proptest::proptest! {
        #[test]
        fn print_then_parse_round_trips(ns in proptest::prelude::any::<u64>()) {
            let dur = SimDuration::from_ns(ns);
            proptest::prop_assert_eq!(dur.to_string().parse::<SimDuration>().unwrap(), dur);
        }
    }
}
