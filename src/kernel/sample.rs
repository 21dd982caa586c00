//! Samplers for [`super::Dist`] whose every floating-point operation is either IEEE-exact
//! (+, −, ×, ÷, √) or a call into the pure-Rust `libm` crate: the same bits on every platform and
//! toolchain.
//!
//! Why not `rand_distr`: its `f64` samplers call the inherent `f64::ln`/`exp` (the platform's C
//! maths library) in their ziggurat tails, and its generic ones go through `num_traits::Float`,
//! whose `std` feature (switched on in the build by other crates, e.g. `hdrhistogram`) routes
//! them to the platform library too. Platform maths libraries differ in the last bit, and one
//! different bit is a different run.
//!
//! - exponential: Marsaglia & Tsang's 256-layer ziggurat (tables built with `libm` on first use),
//!   ~1 table lookup per sample, `libm::log` only in the tail;
//! - normal: the same ziggurat construction for the normal density, with Marsaglia's tail;
//! - Zipf: Hörmann & Derflinger's rejection-inversion (as in `rand_distr`), with `libm::pow`.

use super::rng::SimRng;
use std::sync::OnceLock;

const ZIG_EXP_R: f64 = 7.697_117_470_131_05;
const ZIG_EXP_V: f64 = 0.003_949_659_822_581_557;

struct ExpTables {
    x: [f64; 257],
    f: [f64; 257],
}

fn exp_tables() -> &'static ExpTables {
    static TABLES: OnceLock<ExpTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; 257];
        let mut f = [0.0; 257];
        x[0] = ZIG_EXP_V * libm::exp(ZIG_EXP_R);
        x[1] = ZIG_EXP_R;
        for i in 1..255 {
            x[i + 1] = -libm::log(ZIG_EXP_V / x[i] + libm::exp(-x[i]));
        }
        x[256] = 0.0;
        for i in 0..257 {
            f[i] = libm::exp(-x[i]);
        }
        ExpTables { x, f }
    })
}

/// A standard exponential sample (mean 1).
///
/// The first draw's common case is inline; the rest is out of line (see [`normal1`]).
#[inline(always)]
pub fn exp1(rng: &mut SimRng) -> f64 {
    let t = exp_tables();
    let bits = rng.next_bits();
    let i = (bits & 0xff) as usize;
    // 53 random bits for the position within the layer (independent of the 8 index bits).
    let u = (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let x = u * t.x[i];
    if x < t.x[i + 1] {
        return x;
    }
    exp1_edge(rng, t, i, x)
}

/// The rest of [`exp1`] once a draw fell outside its rectangle.
#[cold]
#[inline(never)]
fn exp1_edge(rng: &mut SimRng, t: &ExpTables, i: usize, x: f64) -> f64 {
    let (mut i, mut x) = (i, x);
    loop {
        if i == 0 {
            // The tail beyond R is again exponential: R + Exp(1).
            return ZIG_EXP_R - libm::log(rng.open01());
        }
        if t.f[i + 1] + (t.f[i] - t.f[i + 1]) * rng.unit() < libm::exp(-x) {
            return x;
        }
        let bits = rng.next_bits();
        i = (bits & 0xff) as usize;
        let u = (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        x = u * t.x[i];
        if x < t.x[i + 1] {
            return x;
        }
    }
}

const ZIG_NORM_R: f64 = 3.654_152_885_361_009;
const ZIG_NORM_V: f64 = 0.004_928_673_233_99;

fn norm_tables() -> &'static ExpTables {
    static TABLES: OnceLock<ExpTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let pdf = |x: f64| libm::exp(-x * x / 2.0);
        let mut x = [0.0; 257];
        let mut f = [0.0; 257];
        x[0] = ZIG_NORM_V / pdf(ZIG_NORM_R);
        x[1] = ZIG_NORM_R;
        for i in 1..255 {
            x[i + 1] = libm::sqrt(-2.0 * libm::log(ZIG_NORM_V / x[i] + pdf(x[i])));
        }
        x[256] = 0.0;
        for i in 0..257 {
            f[i] = pdf(x[i]);
        }
        ExpTables { x, f }
    })
}

/// A standard normal sample (mean 0, sd 1): Marsaglia & Tsang's 256-layer ziggurat, with
/// Marsaglia's exponential method in the tail beyond R.
///
/// The first draw's common case (inside its layer's rectangle, ≈98.8%) is inline; the rest of
/// that draw and any further ones are out of line, consuming the generator exactly as one loop.
#[inline(always)]
pub fn normal1(rng: &mut SimRng) -> f64 {
    let t = norm_tables();
    let bits = rng.next_bits();
    let i = (bits & 0xff) as usize;
    // A symmetric position in (-1, 1) from the 53 high bits.
    let u = 2.0 * ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64) - 1.0;
    let x = u * t.x[i];
    if x.abs() < t.x[i + 1] {
        return x;
    }
    normal1_edge(rng, t, i, u, x)
}

/// The rest of [`normal1`] once a draw fell outside its rectangle: the tail or wedge test of
/// that draw, then whole draws until one is accepted.
#[cold]
#[inline(never)]
fn normal1_edge(rng: &mut SimRng, t: &ExpTables, i: usize, u: f64, x: f64) -> f64 {
    let (mut i, mut u, mut x) = (i, u, x);
    loop {
        if i == 0 {
            loop {
                let a = -libm::log(rng.open01()) / ZIG_NORM_R;
                let b = -libm::log(rng.open01());
                if 2.0 * b > a * a {
                    return if u < 0.0 {
                        -(ZIG_NORM_R + a)
                    } else {
                        ZIG_NORM_R + a
                    };
                }
            }
        }
        if t.f[i + 1] + (t.f[i] - t.f[i + 1]) * rng.unit() < libm::exp(-x * x / 2.0) {
            return x;
        }
        let bits = rng.next_bits();
        i = (bits & 0xff) as usize;
        u = 2.0 * ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64) - 1.0;
        x = u * t.x[i];
        if x.abs() < t.x[i + 1] {
            return x;
        }
    }
}

/// Zipf over ranks 1..=n with exponent s. Up to [`Zipf::TABLE_MAX`] ranks it samples by
/// inversion of the exact cumulative table (no transcendental call per sample), the search
/// narrowed by a guide table; beyond, by Hörmann & Derflinger's rejection-inversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Zipf {
    s: f64,
    t: f64,
    q: f64,
    /// Cumulative probabilities of ranks 1..=n (last = 1), when n ≤ TABLE_MAX.
    cdf: Option<std::sync::Arc<[f64]>>,
    /// With `cdf`: `guide[j]` is the rank index inversion gives for `j / G` (G = `guide.len() - 1`,
    /// a power of two, so `u · G` is exact), so the answer for `u` lies between
    /// `guide[⌊u·G⌋]` and `guide[⌊u·G⌋ + 1]`: the same index a search of the whole table finds,
    /// in about n / G steps (Chen & Asau's guide-table method).
    guide: Option<std::sync::Arc<[u32]>>,
}

impl Zipf {
    /// Most ranks sampled from a table (512 KiB of f64).
    pub const TABLE_MAX: u64 = 65_536;

    /// `n >= 1`, `s >= 0` (checked by the caller).
    pub fn new(n: f64, s: f64) -> Zipf {
        let q = if s != 1.0 { 1.0 / (1.0 - s) } else { 0.0 };
        let t = if s != 1.0 {
            (libm::pow(n, 1.0 - s) - s) * q
        } else {
            1.0 + libm::log(n)
        };
        let cdf = (n <= Self::TABLE_MAX as f64).then(|| {
            let n = n as usize;
            let mut acc = 0.0;
            let mut v: Vec<f64> = (1..=n)
                .map(|k| {
                    acc += libm::pow(k as f64, -s);
                    acc
                })
                .collect();
            let total = acc;
            for c in &mut v {
                *c /= total;
            }
            v[n - 1] = 1.0;
            std::sync::Arc::<[f64]>::from(v)
        });
        let guide = cdf.as_ref().map(|cdf| {
            let g = cdf.len().next_power_of_two();
            let mut guide = Vec::with_capacity(g + 1);
            let mut i = 0;
            for j in 0..=g {
                let u = j as f64 / g as f64;
                while i < cdf.len() && cdf[i] <= u {
                    i += 1;
                }
                guide.push(u32::try_from(i).expect("at most TABLE_MAX ranks"));
            }
            std::sync::Arc::from(guide)
        });
        Zipf {
            s,
            t,
            q,
            cdf,
            guide,
        }
    }

    fn inv_cdf(&self, p: f64) -> f64 {
        let pt = p * self.t;
        if pt <= 1.0 {
            pt
        } else if self.s != 1.0 {
            libm::pow(pt * (1.0 - self.s) + self.s, self.q)
        } else {
            libm::exp(pt - 1.0)
        }
    }

    #[inline]
    pub fn sample(&self, rng: &mut SimRng) -> f64 {
        if let (Some(cdf), Some(guide)) = (&self.cdf, &self.guide) {
            let u = rng.unit();
            // u < 1 and G a power of two: j = ⌊u·G⌋ < G exactly.
            let j = (u * (guide.len() - 1) as f64) as usize;
            let (lo, hi) = (guide[j] as usize, guide[j + 1] as usize);
            let i = lo + cdf[lo..hi].partition_point(|c| *c <= u);
            return (i.min(cdf.len() - 1) + 1) as f64;
        }
        loop {
            let inv_b = self.inv_cdf(rng.unit());
            let x = libm::floor(inv_b + 1.0);
            let mut ratio = libm::pow(x, -self.s);
            if x > 1.0 {
                ratio *= libm::pow(inv_b, self.s);
            }
            if rng.unit() < ratio {
                return x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;

    /// The guide table only narrows the search: every u gives the index a search of the whole
    /// table gives, at and around every guide point and at random.
    #[test]
    fn zipf_guide_finds_what_the_full_search_finds() {
        for (n, s) in [
            (1.0, 1.1),
            (2.0, 0.0),
            (10.0, 1.0),
            (10_000.0, 1.1),
            (65_536.0, 0.7),
        ] {
            let z = Zipf::new(n, s);
            let (cdf, guide) = (z.cdf.clone().unwrap(), z.guide.clone().unwrap());
            let g = guide.len() - 1;
            assert!(g.is_power_of_two() && g >= cdf.len());
            let full = |u: f64| (cdf.partition_point(|c| *c <= u).min(cdf.len() - 1) + 1) as f64;
            let guided = |u: f64| {
                let j = (u * g as f64) as usize;
                let (lo, hi) = (guide[j] as usize, guide[j + 1] as usize);
                (lo + cdf[lo..hi].partition_point(|c| *c <= u)).min(cdf.len() - 1) as f64 + 1.0
            };
            let mut us: Vec<f64> = Vec::new();
            for j in 0..g {
                let b = j as f64 / g as f64;
                us.extend([b, f64::from_bits(b.to_bits() + 1)]);
                if j > 0 {
                    us.push(f64::from_bits(b.to_bits() - 1));
                }
            }
            us.extend(cdf.iter().flat_map(|&c| {
                [
                    c,
                    f64::from_bits(c.to_bits().saturating_sub(1)),
                    f64::from_bits(c.to_bits() + 1),
                ]
            }));
            let mut rng = RootSeed::new(3).fork("guide");
            us.extend((0..100_000).map(|_| rng.unit()));
            for u in us.into_iter().filter(|u| (0.0..1.0).contains(u)) {
                assert_eq!(guided(u), full(u), "n {n} s {s} u {u}");
            }
            let (mut a, mut b) = (RootSeed::new(9).fork("z"), RootSeed::new(9).fork("z"));
            for _ in 0..10_000 {
                let u = b.unit();
                assert_eq!(z.sample(&mut a), full(u));
            }
        }
    }

    #[test]
    fn tables_close_the_ziggurat() {
        let t = exp_tables();
        // Each layer has area V: x[i] * (f[i+1] - f[i]) = V for the layers above the base.
        for i in 1..255 {
            let area = t.x[i] * (t.f[i + 1] - t.f[i]);
            assert!((area / ZIG_EXP_V - 1.0).abs() < 1e-9, "layer {i}: {area}");
        }
        // The top layer [0, x255] × [f(x255), 1] has area V too: the layers tile the density.
        let top = t.x[255] * (1.0 - t.f[255]);
        assert!((top / ZIG_EXP_V - 1.0).abs() < 1e-6, "top layer area {top}");
    }

    #[test]
    fn exponential_moments_and_tail() {
        let mut rng = RootSeed::new(1).fork("exp1");
        let n = 4_000_000;
        let (mut s1, mut s2, mut beyond_r, mut beyond_3) = (0.0, 0.0, 0u64, 0u64);
        for _ in 0..n {
            let x = exp1(&mut rng);
            assert!(x >= 0.0);
            s1 += x;
            s2 += x * x;
            beyond_r += u64::from(x > ZIG_EXP_R);
            beyond_3 += u64::from(x > 3.0);
        }
        let mean = s1 / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!((mean - 1.0).abs() < 4.0 / (n as f64).sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        // P(X > 3) = e^-3 ≈ 0.0498; P(X > R) = e^-7.697 ≈ 4.5e-4: the tail path is exercised.
        let p3 = beyond_3 as f64 / n as f64;
        assert!(
            (p3 - libm::exp(-3.0)).abs() < 4.0 * (0.05 * 0.95 / n as f64).sqrt(),
            "P(X>3) {p3}"
        );
        let pr = beyond_r as f64 / n as f64;
        assert!(
            (pr / libm::exp(-ZIG_EXP_R) - 1.0).abs() < 0.1,
            "P(X>R) {pr}"
        );
    }

    #[test]
    fn normal_tables_close_the_ziggurat() {
        let t = norm_tables();
        for i in 1..255 {
            let area = t.x[i] * (t.f[i + 1] - t.f[i]);
            assert!((area / ZIG_NORM_V - 1.0).abs() < 1e-6, "layer {i}: {area}");
        }
        let top = t.x[255] * (1.0 - t.f[255]);
        assert!(
            (top / ZIG_NORM_V - 1.0).abs() < 1e-3,
            "top layer area {top}"
        );
    }

    #[test]
    fn normal_moments() {
        let mut rng = RootSeed::new(2).fork("normal1");
        let n = 2_000_000;
        let (mut s1, mut s2, mut s4, mut above_2) = (0.0, 0.0, 0.0, 0u64);
        for _ in 0..n {
            let z = normal1(&mut rng);
            s1 += z;
            s2 += z * z;
            s4 += z * z * z * z;
            above_2 += u64::from(z > 1.959_963_985);
        }
        let nf = n as f64;
        assert!((s1 / nf).abs() < 4.0 / nf.sqrt());
        assert!((s2 / nf - 1.0).abs() < 0.005);
        assert!((s4 / nf - 3.0).abs() < 0.05, "kurtosis {}", s4 / nf);
        assert!((above_2 as f64 / nf - 0.025).abs() < 4.0 * (0.025f64 * 0.975 / nf).sqrt());
    }

    #[test]
    fn zipf_rejection_path_agrees_with_the_table() {
        // Beyond the table size the rejection sampler runs: its rank-1 and rank-2 shares match
        // the exact law.
        let n = 200_000.0;
        let z = Zipf::new(n, 1.1);
        assert!(z.cdf.is_none());
        let h: f64 = (1..=200_000).map(|k| libm::pow(f64::from(k), -1.1)).sum();
        let mut rng = RootSeed::new(4).fork("zipf-big");
        let draws = 1_000_000;
        let (mut one, mut two) = (0u64, 0u64);
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1.0..=n).contains(&k));
            one += u64::from(k == 1.0);
            two += u64::from(k == 2.0);
        }
        for (count, rank) in [(one, 1.0f64), (two, 2.0)] {
            let p = libm::pow(rank, -1.1) / h;
            let got = count as f64 / draws as f64;
            assert!(
                (got - p).abs() < 4.0 * (p * (1.0 - p) / draws as f64).sqrt(),
                "rank {rank}: {got} vs {p}"
            );
        }
    }

    #[test]
    fn zipf_frequencies_follow_the_power_law() {
        let z = Zipf::new(100.0, 1.2);
        let mut rng = RootSeed::new(3).fork("zipf");
        let mut counts = [0u64; 101];
        let n = 1_000_000;
        for _ in 0..n {
            let k = z.sample(&mut rng);
            assert!((1.0..=100.0).contains(&k) && k.fract() == 0.0);
            counts[k as usize] += 1;
        }
        let h: f64 = (1..=100).map(|k| libm::pow(f64::from(k), -1.2)).sum();
        for k in [1usize, 2, 5, 50] {
            let p = libm::pow(k as f64, -1.2) / h;
            let got = counts[k] as f64 / n as f64;
            assert!(
                (got - p).abs() < 4.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-6,
                "rank {k}: {got} vs {p}"
            );
        }
    }
}
