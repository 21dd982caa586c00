//! [`Dist`]: the one distribution type of firedrill, for latencies, costs, sizes, inter-arrival
//! times and batch amounts. Constant, uniform, exponential, normal, lognormal (as mu/sigma, as
//! p50/p99, or as mean/cs2), Pareto, Zipf, hyperexponential, and empirical from a quantile table.
//!
//! A `Dist` is validated when built, so sampling never fails. It is read from the short command-line
//! form (`exp:0.04`, `det:1`, `lognormal:20ms:4`, …) or from a scenario-file table
//! (`{ kind = "lognormal", p50 = "20ms", p99 = "200ms" }`). Values are plain numbers or durations
//! with a unit; durations are read as seconds, and [`Dist::sample_duration`] turns a sample of
//! seconds into integer nanoseconds.
//!
//! Sampling uses the samplers of [`super::sample`] (pure-Rust `libm` maths only) and the run's
//! [`SimRng`], so a sample is the same on every machine.

use super::rng::SimRng;
use super::sample::{self, Zipf};
use super::time::SimDuration;
use std::fmt;
use std::str::FromStr;

/// z such that Φ(z) = 0.99 for the standard normal.
const Z_99: f64 = 2.326_347_874_040_840_8;

/// A validated probability distribution over real values (seconds, when it describes time).
#[derive(Clone, Debug, PartialEq)]
pub struct Dist(Kind);

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Constant(f64),
    Uniform {
        low: f64,
        high: f64,
    },
    Exponential {
        mean: f64,
    },
    Normal {
        mean: f64,
        sd: f64,
    },
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    Pareto {
        scale: f64,
        shape: f64,
    },
    Zipf {
        n: u64,
        s: f64,
        sampler: Zipf,
    },
    /// Branches as (cumulative probability, mean); the last cumulative probability is 1.
    HyperExp {
        branches: Vec<(f64, f64)>,
    },
    /// Inverse-CDF points (quantile, value), quantiles from 0 to 1, values non-decreasing.
    Empirical {
        points: Vec<(f64, f64)>,
    },
}

/// Why a distribution could not be built; each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistError {
    #[error("`{param}` must be a finite number, got {value}")]
    NotFinite { param: &'static str, value: f64 },
    #[error("`{param}` must be greater than 0, got {value}")]
    NotPositive { param: &'static str, value: f64 },
    #[error("`{param}` must be 0 or more, got {value}")]
    Negative { param: &'static str, value: f64 },
    #[error("uniform needs low <= high, got low = {low}, high = {high}")]
    EmptyRange { low: f64, high: f64 },
    #[error("lognormal needs p99 > p50, got p50 = {p50}, p99 = {p99}")]
    QuantilesOutOfOrder { p50: f64, p99: f64 },
    #[error("lognormal takes exactly one pair: mu and sigma, p50 and p99, or mean and cs2")]
    LognormalParameters,
    #[error("hyperexponential takes either `branches` or `mean` and `cs2` (cs2 >= 1)")]
    HyperExpParameters,
    #[error("hyperexponential needs cs2 >= 1 (an exponential has 1), got {0}")]
    HyperExpCs2(f64),
    #[error("branch probabilities must be > 0 and sum to 1, they sum to {0}")]
    Probabilities(f64),
    #[error(
        "empirical needs at least 2 points (quantile, value) from quantile 0 to quantile 1, with quantiles increasing and values non-decreasing: {0}"
    )]
    EmpiricalTable(String),
    #[error("zipf needs n >= 1 elements")]
    ZipfN,
    #[error("unknown distribution `{0}`: use one of {KINDS}")]
    UnknownKind(String),
    #[error("`{input}`: {problem}; e.g. {example}")]
    ShortForm {
        input: String,
        problem: String,
        example: &'static str,
    },
}

const KINDS: &str = "constant (det), uniform, exponential (exp), normal, lognormal, pareto, zipf, hyperexponential (h2), empirical";

fn finite(param: &'static str, v: f64) -> Result<f64, DistError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DistError::NotFinite { param, value: v })
    }
}
fn positive(param: &'static str, v: f64) -> Result<f64, DistError> {
    if finite(param, v)? > 0.0 {
        Ok(v)
    } else {
        Err(DistError::NotPositive { param, value: v })
    }
}
fn non_negative(param: &'static str, v: f64) -> Result<f64, DistError> {
    if finite(param, v)? >= 0.0 {
        Ok(v)
    } else {
        Err(DistError::Negative { param, value: v })
    }
}

impl Dist {
    /// Always `value`.
    pub fn constant(value: f64) -> Result<Dist, DistError> {
        Ok(Dist(Kind::Constant(finite("value", value)?)))
    }
    /// Uniform on [low, high].
    pub fn uniform(low: f64, high: f64) -> Result<Dist, DistError> {
        let (low, high) = (finite("low", low)?, finite("high", high)?);
        if low > high {
            return Err(DistError::EmptyRange { low, high });
        }
        Ok(Dist(Kind::Uniform { low, high }))
    }
    /// Exponential with the given mean (rate 1/mean).
    pub fn exponential(mean: f64) -> Result<Dist, DistError> {
        let mean = positive("mean", mean)?;
        Ok(Dist(Kind::Exponential { mean }))
    }
    /// Normal with mean and standard deviation (samples may be negative; a duration clamps to 0).
    pub fn normal(mean: f64, sd: f64) -> Result<Dist, DistError> {
        let (mean, sd) = (finite("mean", mean)?, non_negative("sd", sd)?);
        Ok(Dist(Kind::Normal { mean, sd }))
    }
    /// Lognormal: ln X ~ Normal(mu, sigma).
    pub fn lognormal(mu: f64, sigma: f64) -> Result<Dist, DistError> {
        let (mu, sigma) = (finite("mu", mu)?, non_negative("sigma", sigma)?);
        Ok(Dist(Kind::LogNormal { mu, sigma }))
    }
    /// Lognormal with the given median and 99th percentile (how latencies are usually known).
    pub fn lognormal_p50_p99(p50: f64, p99: f64) -> Result<Dist, DistError> {
        let (p50, p99) = (positive("p50", p50)?, positive("p99", p99)?);
        if p99 <= p50 {
            return Err(DistError::QuantilesOutOfOrder { p50, p99 });
        }
        Dist::lognormal(libm::log(p50), libm::log(p99 / p50) / Z_99)
    }
    /// Lognormal with the given mean and squared coefficient of variation (variance / mean²).
    pub fn lognormal_mean_cs2(mean: f64, cs2: f64) -> Result<Dist, DistError> {
        let (mean, cs2) = (positive("mean", mean)?, non_negative("cs2", cs2)?);
        let sigma2 = libm::log1p(cs2);
        Dist::lognormal(libm::log(mean) - sigma2 / 2.0, libm::sqrt(sigma2))
    }
    /// Pareto (type I) with minimum `scale` and tail index `shape`.
    pub fn pareto(scale: f64, shape: f64) -> Result<Dist, DistError> {
        let (scale, shape) = (positive("scale", scale)?, positive("shape", shape)?);
        Ok(Dist(Kind::Pareto { scale, shape }))
    }
    /// Zipf over ranks 1..=n with exponent s: P(k) ∝ k^-s.
    pub fn zipf(n: u64, s: f64) -> Result<Dist, DistError> {
        if n == 0 {
            return Err(DistError::ZipfN);
        }
        let s = non_negative("s", s)?;
        let sampler = Zipf::new(n as f64, s);
        Ok(Dist(Kind::Zipf { n, s, sampler }))
    }
    /// Hyperexponential: with probability p_i, an exponential of mean m_i. `branches` = [(p, mean)].
    pub fn hyperexponential(branches: &[(f64, f64)]) -> Result<Dist, DistError> {
        if branches.is_empty() {
            return Err(DistError::Probabilities(0.0));
        }
        let mut cum = 0.0;
        let mut out = Vec::with_capacity(branches.len());
        for &(p, mean) in branches {
            positive("p", p)?;
            positive("mean", mean)?;
            cum += p;
            out.push((cum, mean));
        }
        if (cum - 1.0).abs() > 1e-9 {
            return Err(DistError::Probabilities(cum));
        }
        out.last_mut().expect("non-empty").0 = 1.0;
        Ok(Dist(Kind::HyperExp { branches: out }))
    }
    /// The balanced-means two-phase hyperexponential with the given mean and cs2 >= 1.
    pub fn hyperexponential_mean_cs2(mean: f64, cs2: f64) -> Result<Dist, DistError> {
        let mean = positive("mean", mean)?;
        if finite("cs2", cs2)? < 1.0 {
            return Err(DistError::HyperExpCs2(cs2));
        }
        let p1 = 0.5 * (1.0 + libm::sqrt((cs2 - 1.0) / (cs2 + 1.0)));
        let p2 = 1.0 - p1;
        if p2 <= 0.0 {
            return Dist::exponential(mean);
        }
        // Balanced means: p1 * m1 = p2 * m2 = mean / 2.
        Dist::hyperexponential(&[(p1, mean / (2.0 * p1)), (p2, mean / (2.0 * p2))])
    }
    /// Empirical: a quantile table [(q, value)] from q = 0 to q = 1, interpolated linearly.
    pub fn empirical(points: &[(f64, f64)]) -> Result<Dist, DistError> {
        let bad = |m: &str| DistError::EmpiricalTable(m.to_string());
        if points.len() < 2 {
            return Err(bad("fewer than 2 points"));
        }
        for &(q, v) in points {
            finite("quantile", q)?;
            finite("value", v)?;
        }
        if points[0].0 != 0.0 || points[points.len() - 1].0 != 1.0 {
            return Err(bad("the first quantile must be 0 and the last 1"));
        }
        if points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(bad("quantiles are not increasing"));
        }
        if points.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(bad("values decrease"));
        }
        Ok(Dist(Kind::Empirical {
            points: points.to_vec(),
        }))
    }

    /// One sample.
    #[inline]
    pub fn sample(&self, rng: &mut SimRng) -> f64 {
        match &self.0 {
            Kind::Constant(v) => *v,
            Kind::Uniform { low, high } => low + (high - low) * rng.unit(),
            Kind::Exponential { mean } => mean * sample::exp1(rng),
            Kind::Normal { mean, sd } => mean + sd * sample::normal1(rng),
            Kind::LogNormal { mu, sigma } => libm::exp(mu + sigma * sample::normal1(rng)),
            _ => self.sample_other(rng),
        }
    }

    /// [`Dist::sample`] for the kinds drawn less often (kept out of line so the common ones
    /// inline small).
    #[inline(never)]
    fn sample_other(&self, rng: &mut SimRng) -> f64 {
        match &self.0 {
            Kind::Constant(_)
            | Kind::Uniform { .. }
            | Kind::Exponential { .. }
            | Kind::Normal { .. }
            | Kind::LogNormal { .. } => unreachable!("sampled inline by Dist::sample"),
            // Inversion: scale · U^(-1/shape) with U in (0, 1].
            Kind::Pareto { scale, shape } => scale * libm::pow(rng.open01(), -1.0 / shape),
            Kind::Zipf { sampler, .. } => sampler.sample(rng),
            Kind::HyperExp { branches } => {
                let u = rng.unit();
                let mean = branches
                    .iter()
                    .find(|(cum, _)| u < *cum)
                    .map_or(branches[branches.len() - 1].1, |b| b.1);
                -mean * libm::log(rng.open01())
            }
            Kind::Empirical { points } => {
                let u = rng.unit();
                let i = points
                    .partition_point(|(q, _)| *q <= u)
                    .clamp(1, points.len() - 1);
                let ((q0, v0), (q1, v1)) = (points[i - 1], points[i]);
                v0 + (v1 - v0) * (u - q0) / (q1 - q0)
            }
        }
    }

    /// One sample read as seconds and rounded to whole nanoseconds (negative → 0).
    #[inline]
    pub fn sample_duration(&self, rng: &mut SimRng) -> SimDuration {
        SimDuration::from_secs_f64(self.sample(rng))
    }

    /// The exact mean, where it is finite and has a closed form.
    pub fn mean(&self) -> Option<f64> {
        match &self.0 {
            Kind::Constant(v) => Some(*v),
            Kind::Uniform { low, high } => Some((low + high) / 2.0),
            Kind::Exponential { mean, .. } => Some(*mean),
            Kind::Normal { mean, .. } => Some(*mean),
            Kind::LogNormal { mu, sigma, .. } => Some(libm::exp(mu + sigma * sigma / 2.0)),
            Kind::Pareto { scale, shape, .. } => {
                (*shape > 1.0).then(|| shape * scale / (shape - 1.0))
            }
            Kind::Zipf { n, s, .. } => zipf_moment(*n, *s, 1),
            Kind::HyperExp { .. } => Some(self.hyperexp_moments().0),
            Kind::Empirical { points } => Some(
                points
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
                    .sum(),
            ),
        }
    }

    /// The squared coefficient of variation (variance / mean²), where it is finite and has a
    /// closed form. It is what the Pollaczek–Khinchine formula needs.
    pub fn cs2(&self) -> Option<f64> {
        let mean = self.mean()?;
        let var = match &self.0 {
            Kind::Constant(_) => 0.0,
            Kind::Uniform { low, high } => (high - low) * (high - low) / 12.0,
            Kind::Exponential { mean, .. } => mean * mean,
            Kind::Normal { sd, .. } => sd * sd,
            Kind::LogNormal { sigma, .. } => (libm::exp(sigma * sigma) - 1.0) * mean * mean,
            Kind::Pareto { scale, shape, .. } => {
                if *shape <= 2.0 {
                    return None;
                }
                scale * scale * shape / ((shape - 1.0) * (shape - 1.0) * (shape - 2.0))
            }
            Kind::Zipf { n, s, .. } => zipf_moment(*n, *s, 2)? - mean * mean,
            Kind::HyperExp { .. } => self.hyperexp_moments().1 - mean * mean,
            Kind::Empirical { points } => {
                // E[X²] of a piecewise-uniform mixture: each segment is uniform on [v0, v1].
                let m2: f64 = points
                    .windows(2)
                    .map(|w| {
                        (w[1].0 - w[0].0) * (w[0].1 * w[0].1 + w[0].1 * w[1].1 + w[1].1 * w[1].1)
                            / 3.0
                    })
                    .sum();
                m2 - mean * mean
            }
        };
        (mean != 0.0).then(|| var.max(0.0) / (mean * mean))
    }

    fn hyperexp_moments(&self) -> (f64, f64) {
        let Kind::HyperExp { branches } = &self.0 else {
            unreachable!("only called on hyperexp")
        };
        let (mut prev, mut m1, mut m2) = (0.0, 0.0, 0.0);
        for &(cum, mean) in branches {
            let p = cum - prev;
            prev = cum;
            m1 += p * mean;
            m2 += p * 2.0 * mean * mean;
        }
        (m1, m2)
    }

    /// Whether every sample is exactly the same value.
    pub fn is_constant(&self) -> bool {
        matches!(self.0, Kind::Constant(_))
    }

    /// Whether this is an exponential distribution (memoryless: the M in M/M/c).
    pub fn is_exponential(&self) -> bool {
        matches!(self.0, Kind::Exponential { .. })
    }
}

fn zipf_moment(n: u64, s: f64, k: i32) -> Option<f64> {
    if n > 10_000_000 {
        return None;
    }
    let (mut num, mut den) = (0.0, 0.0);
    for i in 1..=n {
        let w = libm::pow(i as f64, -s);
        den += w;
        num += w * libm::pow(i as f64, f64::from(k));
    }
    Some(num / den)
}

impl fmt::Display for Dist {
    /// The canonical short form, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Constant(v) => write!(f, "det:{v}"),
            Kind::Uniform { low, high } => write!(f, "uniform:{low}:{high}"),
            Kind::Exponential { mean, .. } => write!(f, "exp:{mean}"),
            Kind::Normal { mean, sd, .. } => write!(f, "normal:{mean}:{sd}"),
            Kind::LogNormal { mu, sigma, .. } => write!(f, "lognormal_mu_sigma:{mu}:{sigma}"),
            Kind::Pareto { scale, shape, .. } => write!(f, "pareto:{scale}:{shape}"),
            Kind::Zipf { n, s, .. } => write!(f, "zipf:{n}:{s}"),
            Kind::HyperExp { branches } => {
                f.write_str("hyperexp")?;
                let mut prev = 0.0;
                for &(cum, mean) in branches {
                    write!(f, ":{}:{mean}", cum - prev)?;
                    prev = cum;
                }
                Ok(())
            }
            Kind::Empirical { points } => {
                f.write_str("empirical")?;
                for &(q, v) in points {
                    write!(f, ":{q}:{v}")?;
                }
                Ok(())
            }
        }
    }
}

/// A number, or a duration with a unit read as seconds (`"40ms"` → 0.04).
fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    s.parse::<SimDuration>()
        .ok()
        .map(|d| d.as_ns() as f64 / 1e9)
}

impl FromStr for Dist {
    type Err = DistError;

    /// Short forms (values are numbers in seconds or durations such as `40ms`):
    /// `det:V` (`const:V`), `exp:MEAN`, `uniform:LO:HI`, `normal:MEAN:SD`,
    /// `lognormal:MEAN:CS2`, `lognormal_p:P50:P99`, `lognormal_mu_sigma:MU:SIGMA`,
    /// `pareto:SCALE:SHAPE`, `zipf:N:S`, `h2:MEAN:CS2`, `hyperexp:P1:M1:P2:M2…`,
    /// `empirical:Q0:V0:Q1:V1…`.
    fn from_str(input: &str) -> Result<Dist, DistError> {
        let mut parts = input.trim().split(':');
        let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let args: Vec<&str> = parts.collect();
        let example = match kind.as_str() {
            "det" | "const" | "constant" => "det:0.01",
            "exp" | "exponential" => "exp:40ms",
            "uniform" => "uniform:1ms:5ms",
            "normal" => "normal:10ms:2ms",
            "lognormal" => "lognormal:20ms:4 (mean and squared coefficient of variation)",
            "lognormal_p" => "lognormal_p:20ms:200ms (p50 and p99)",
            "lognormal_mu_sigma" => "lognormal_mu_sigma:-4:0.5",
            "pareto" => "pareto:1ms:1.5",
            "zipf" => "zipf:1000:1.1",
            "h2" => "h2:1:4 (mean and cs2 >= 1)",
            "hyperexp" => "hyperexp:0.9:1ms:0.1:50ms",
            "empirical" => "empirical:0:1ms:0.5:3ms:1:20ms",
            _ => return Err(DistError::UnknownKind(kind)),
        };
        let short = |problem: String| DistError::ShortForm {
            input: input.to_string(),
            problem,
            example,
        };
        let nums: Vec<f64> = args
            .iter()
            .map(|a| {
                quantity(a).ok_or_else(|| short(format!("`{a}` is not a number or a duration")))
            })
            .collect::<Result<_, _>>()?;
        let want = |n: usize| -> Result<(), DistError> {
            if nums.len() == n {
                Ok(())
            } else {
                Err(short(format!(
                    "expected {n} value(s) after `{kind}:`, got {}",
                    nums.len()
                )))
            }
        };
        match kind.as_str() {
            "det" | "const" | "constant" => {
                want(1)?;
                Dist::constant(nums[0])
            }
            "exp" | "exponential" => {
                want(1)?;
                Dist::exponential(nums[0])
            }
            "uniform" => {
                want(2)?;
                Dist::uniform(nums[0], nums[1])
            }
            "normal" => {
                want(2)?;
                Dist::normal(nums[0], nums[1])
            }
            "lognormal" => {
                want(2)?;
                Dist::lognormal_mean_cs2(nums[0], nums[1])
            }
            "lognormal_p" => {
                want(2)?;
                Dist::lognormal_p50_p99(nums[0], nums[1])
            }
            "lognormal_mu_sigma" => {
                want(2)?;
                Dist::lognormal(nums[0], nums[1])
            }
            "pareto" => {
                want(2)?;
                Dist::pareto(nums[0], nums[1])
            }
            "zipf" => {
                want(2)?;
                if nums[0].fract() != 0.0 || nums[0] < 1.0 {
                    return Err(short(format!(
                        "n must be a whole number >= 1, got {}",
                        nums[0]
                    )));
                }
                Dist::zipf(nums[0] as u64, nums[1])
            }
            "h2" => {
                want(2)?;
                Dist::hyperexponential_mean_cs2(nums[0], nums[1])
            }
            "hyperexp" | "empirical" => {
                if nums.len() < 2 || nums.len() % 2 != 0 {
                    return Err(short(format!(
                        "expected pairs of values, got {}",
                        nums.len()
                    )));
                }
                let pairs: Vec<(f64, f64)> = nums.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                if kind == "hyperexp" {
                    Dist::hyperexponential(&pairs)
                } else {
                    Dist::empirical(&pairs)
                }
            }
            _ => unreachable!("kind checked above"),
        }
    }
}

/// A number or a duration string, as written in a scenario file.
#[derive(Clone, Copy, Debug)]
struct Quantity(f64);

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a duration such as \"40ms\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                quantity(v).map(Quantity).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a number or a duration such as \"40ms\""
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The table form in scenario files: `{ kind = "...", ... }`. Raw layer: parsed, not yet checked.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawDist {
    #[serde(alias = "det")]
    Constant {
        value: Quantity,
    },
    Uniform {
        low: Quantity,
        high: Quantity,
    },
    #[serde(alias = "exp")]
    Exponential {
        mean: Quantity,
    },
    Normal {
        mean: Quantity,
        sd: Quantity,
    },
    Lognormal {
        mu: Option<f64>,
        sigma: Option<f64>,
        p50: Option<Quantity>,
        p99: Option<Quantity>,
        mean: Option<Quantity>,
        cs2: Option<f64>,
    },
    Pareto {
        scale: Quantity,
        shape: f64,
    },
    Zipf {
        n: u64,
        s: f64,
    },
    #[serde(alias = "h2")]
    Hyperexponential {
        branches: Option<Vec<RawBranch>>,
        mean: Option<Quantity>,
        cs2: Option<f64>,
    },
    Empirical {
        points: Vec<(f64, Quantity)>,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    p: f64,
    mean: Quantity,
}

impl RawDist {
    fn validate(self) -> Result<Dist, DistError> {
        match self {
            RawDist::Constant { value } => Dist::constant(value.0),
            RawDist::Uniform { low, high } => Dist::uniform(low.0, high.0),
            RawDist::Exponential { mean } => Dist::exponential(mean.0),
            RawDist::Normal { mean, sd } => Dist::normal(mean.0, sd.0),
            RawDist::Lognormal {
                mu,
                sigma,
                p50,
                p99,
                mean,
                cs2,
            } => match (mu, sigma, p50, p99, mean, cs2) {
                (Some(mu), Some(sigma), None, None, None, None) => Dist::lognormal(mu, sigma),
                (None, None, Some(p50), Some(p99), None, None) => {
                    Dist::lognormal_p50_p99(p50.0, p99.0)
                }
                (None, None, None, None, Some(mean), Some(cs2)) => {
                    Dist::lognormal_mean_cs2(mean.0, cs2)
                }
                _ => Err(DistError::LognormalParameters),
            },
            RawDist::Pareto { scale, shape } => Dist::pareto(scale.0, shape),
            RawDist::Zipf { n, s } => Dist::zipf(n, s),
            RawDist::Hyperexponential {
                branches,
                mean,
                cs2,
            } => match (branches, mean, cs2) {
                (Some(b), None, None) => {
                    Dist::hyperexponential(&b.iter().map(|b| (b.p, b.mean.0)).collect::<Vec<_>>())
                }
                (None, Some(mean), Some(cs2)) => Dist::hyperexponential_mean_cs2(mean.0, cs2),
                _ => Err(DistError::HyperExpParameters),
            },
            RawDist::Empirical { points } => {
                Dist::empirical(&points.iter().map(|&(q, v)| (q, v.0)).collect::<Vec<_>>())
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Dist {
    /// Either the short string form (`"exp:40ms"`) or a table (`{ kind = "exp", mean = "40ms" }`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dist, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Dist;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a distribution: a string such as \"exp:40ms\" or a table with `kind`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dist, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Dist, A::Error> {
                let raw = <RawDist as serde::Deserialize>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                raw.validate().map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::rng::RootSeed;

    fn moments(d: &Dist, n: usize, label: &str) -> (f64, f64) {
        let mut rng = RootSeed::new(42).fork(label);
        let (mut s1, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let x = d.sample(&mut rng);
            s1 += x;
            s2 += x * x;
        }
        let mean = s1 / n as f64;
        (mean, (s2 / n as f64 - mean * mean) / (mean * mean))
    }

    /// Sample mean within 4 standard errors of the exact mean, and sample cs2 within 5%.
    fn check_moments(d: &Dist, n: usize) {
        let mean = d.mean().unwrap();
        let cs2 = d.cs2().unwrap();
        let (m, c) = moments(d, n, &d.to_string());
        let se = (cs2 * mean * mean / n as f64).sqrt();
        assert!(
            (m - mean).abs() <= 4.0 * se + 1e-12,
            "{d}: mean {m} vs {mean} (se {se})"
        );
        if cs2 > 0.0 {
            assert!((c / cs2 - 1.0).abs() < 0.05, "{d}: cs2 {c} vs {cs2}");
        } else {
            assert!(c.abs() < 1e-9);
        }
    }

    #[test]
    fn samples_match_exact_moments() {
        let n = 2_000_000;
        check_moments(&Dist::constant(0.25).unwrap(), 1000);
        check_moments(&Dist::uniform(1.0, 3.0).unwrap(), n);
        check_moments(&Dist::exponential(0.04).unwrap(), n);
        check_moments(&Dist::normal(10.0, 2.0).unwrap(), n);
        check_moments(&Dist::lognormal_mean_cs2(1.0, 0.5).unwrap(), n);
        check_moments(&Dist::pareto(1.0, 5.0).unwrap(), n);
        check_moments(&Dist::zipf(100, 1.2).unwrap(), n);
        check_moments(&Dist::hyperexponential_mean_cs2(1.0, 4.0).unwrap(), n);
        check_moments(
            &Dist::hyperexponential(&[(0.9, 0.001), (0.1, 0.05)]).unwrap(),
            n,
        );
        check_moments(
            &Dist::empirical(&[(0.0, 1.0), (0.5, 3.0), (1.0, 20.0)]).unwrap(),
            n,
        );
    }

    #[test]
    fn lognormal_from_quantiles_hits_them() {
        let d = Dist::lognormal_p50_p99(0.020, 0.200).unwrap();
        let mut rng = RootSeed::new(5).fork("q");
        let mut v: Vec<f64> = (0..1_000_000).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[500_000];
        let p99 = v[990_000];
        assert!((p50 / 0.020 - 1.0).abs() < 0.01, "p50 {p50}");
        assert!((p99 / 0.200 - 1.0).abs() < 0.02, "p99 {p99}");
        let m = Dist::lognormal_mean_cs2(2.0, 3.0).unwrap();
        assert!((m.mean().unwrap() - 2.0).abs() < 1e-12);
        assert!((m.cs2().unwrap() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn zipf_is_rank_valued_and_skewed() {
        let d = Dist::zipf(10, 1.0).unwrap();
        let mut rng = RootSeed::new(9).fork("z");
        let mut counts = [0u32; 11];
        for _ in 0..100_000 {
            let k = d.sample(&mut rng);
            assert!(k.fract() == 0.0 && (1.0..=10.0).contains(&k));
            counts[k as usize] += 1;
        }
        // P(1)/P(2) = 2 for s = 1.
        let ratio = f64::from(counts[1]) / f64::from(counts[2]);
        assert!((ratio - 2.0).abs() < 0.1, "{counts:?}");
    }

    #[test]
    fn short_forms_parse_and_round_trip() {
        let exp: Dist = "exp:0.5".parse().unwrap();
        assert_eq!(exp.mean(), Some(0.5));
        let det: Dist = "det:40ms".parse().unwrap();
        assert_eq!(det.mean(), Some(0.04));
        assert!(det.is_constant());
        let ln: Dist = "lognormal:1:4".parse().unwrap();
        assert!((ln.cs2().unwrap() - 4.0).abs() < 1e-9);
        for s in [
            "exp:0.5",
            "det:2",
            "uniform:1:2",
            "normal:1:0.5",
            "pareto:1:3",
            "zipf:100:1.1",
            "hyperexp:0.25:1:0.75:3",
            "empirical:0:1:0.5:2:1:4",
            "lognormal_mu_sigma:0:1",
        ] {
            let d: Dist = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<Dist>().unwrap(), d);
        }
    }

    #[test]
    fn bad_distributions_say_what_to_fix() {
        let e = |s: &str| s.parse::<Dist>().unwrap_err();
        assert_eq!(e("gamma:1"), DistError::UnknownKind("gamma".into()));
        assert!(matches!(
            e("exp:0"),
            DistError::NotPositive { param: "mean", .. }
        ));
        assert!(matches!(e("exp:abc"), DistError::ShortForm { .. }));
        assert!(e("exp:1:2").to_string().contains("expected 1 value"));
        assert!(matches!(e("uniform:3:1"), DistError::EmptyRange { .. }));
        assert!(matches!(e("h2:1:0.5"), DistError::HyperExpCs2(_)));
        assert!(matches!(
            e("hyperexp:0.5:1:0.4:2"),
            DistError::Probabilities(_)
        ));
        assert!(matches!(
            e("empirical:0:5:1:2"),
            DistError::EmpiricalTable(_)
        ));
        assert!(matches!(
            e("lognormal_p:2:1"),
            DistError::QuantilesOutOfOrder { .. }
        ));
        assert!(e("exp:nan").to_string().contains("finite"));
    }

    #[derive(serde::Deserialize)]
    struct Holder {
        d: Dist,
    }

    #[test]
    fn deserializes_from_scenario_tables() {
        let h: Holder =
            toml::from_str(r#"d = { kind = "lognormal", p50 = "20ms", p99 = "200ms" }"#).unwrap();
        assert_eq!(h.d, Dist::lognormal_p50_p99(0.02, 0.2).unwrap());
        let h: Holder = toml::from_str(r#"d = "exp:40ms""#).unwrap();
        assert_eq!(h.d, Dist::exponential(0.04).unwrap());
        let h: Holder = toml::from_str(r#"d = { kind = "hyperexponential", branches = [{ p = 0.5, mean = 1 }, { p = 0.5, mean = "3s" }] }"#).unwrap();
        assert_eq!(h.d.mean(), Some(2.0));
        let h: Holder =
            toml::from_str(r#"d = { kind = "empirical", points = [[0.0, "1ms"], [1.0, "3ms"]] }"#)
                .unwrap();
        assert!((h.d.mean().unwrap() - 0.002).abs() < 1e-15);
        let err = toml::from_str::<Holder>(r#"d = { kind = "exp", mean = "40ms", meen = 3 }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("meen"), "{err}");
        let err = toml::from_str::<Holder>(r#"d = { kind = "lognormal", p50 = "20ms" }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("exactly one pair"), "{err}");
    }

    #[test]
    fn durations_are_whole_nanoseconds() {
        let d = Dist::constant(0.0015).unwrap();
        let mut rng = RootSeed::new(0).fork("x");
        assert_eq!(d.sample_duration(&mut rng).as_ns(), 1_500_000);
        let neg = Dist::constant(-1.0).unwrap();
        assert_eq!(neg.sample_duration(&mut rng).as_ns(), 0);
    }
}

#[cfg(test)]
mod golden {
    use super::*;
    use crate::kernel::rng::RootSeed;

    /// The first samples of every kind for seed 0, as exact bit patterns. They pin the samplers
    /// and the pinned `libm`: if this fails, recorded results and baselines changed meaning.
    #[test]
    fn golden_samples_of_every_kind_for_seed_zero() {
        let kinds = [
            "det:0.25",
            "uniform:1:3",
            "exp:0.04",
            "normal:10:2",
            "lognormal:1:0.5",
            "pareto:1:2.5",
            "zipf:1000:1.1",
            "h2:1:4",
            "empirical:0:1:0.5:3:1:20",
        ];
        let got: Vec<[u64; 3]> = kinds
            .iter()
            .map(|k| {
                let d: Dist = k.parse().unwrap();
                let mut rng = RootSeed::new(0).fork(k);
                std::array::from_fn(|_| d.sample(&mut rng).to_bits())
            })
            .collect();
        assert_eq!(got, GOLDEN, "{got:?}");
    }

    const GOLDEN: [[u64; 3]; 9] = [
        [
            4598175219545276416,
            4598175219545276416,
            4598175219545276416,
        ],
        [
            4607242271817245911,
            4608839912559209003,
            4611802905720582848,
        ],
        [
            4574268019112430620,
            4586354823330627195,
            4589594470760971785,
        ],
        [
            4621453371790812274,
            4622376841804495249,
            4619611564897327612,
        ],
        [
            4608216840608607707,
            4604453075565121870,
            4592872927929624192,
        ],
        [
            4608717297124411484,
            4607662081709095592,
            4607821647641626337,
        ],
        [
            4620693217682128896,
            4644864881307156480,
            4611686018427387904,
        ],
        [
            4599042398135141422,
            4599159449111493046,
            4596942096773957504,
        ],
        [
            4621576615677274243,
            4610706001041754018,
            4612820043935618741,
        ],
    ];
}
