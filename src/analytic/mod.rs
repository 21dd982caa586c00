//! Exact queueing-theory answers (Erlang B/C, M/M/c, M/M/c/K, M/G/1) printed beside simulated ones
//! and used by tests as the oracle; a port of `reference/queueing_reference.py`.
//!
//! Conventions: times in seconds, rates per second, `lam` = Poisson arrival rate, `mu` = service
//! rate per server, `c` = servers, `K` = system capacity (in service + waiting), `a = lam / mu`
//! the offered load in erlangs and `rho = a / c` the per-server utilisation. Response time `T` is
//! wait plus service under FCFS. Transcendental functions come from `libm`, so every result is
//! the same bits on every platform.

/// Erlang B blocking probability `B(c, a)` of an M/M/c/c loss system offered `a` erlangs, by the
/// stable recursion `B(k) = a B(k-1) / (k + a B(k-1))`, `B(0) = 1`.
///
/// Returns NaN if `offered_erlangs` is negative or NaN, and 1 if it is infinite.
pub fn erlang_b(c: u32, offered_erlangs: f64) -> f64 {
    let a = offered_erlangs;
    if a.is_nan() || a < 0.0 {
        return f64::NAN;
    }
    if a.is_infinite() {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    b
}

/// Erlang C probability that an arrival to an M/M/c queue offered `a` erlangs has to wait,
/// `C = B / (1 - rho (1 - B))` with `B` from [`erlang_b`].
///
/// `None` when `offered_erlangs >= c` (unstable, including `c == 0`) or it is negative or NaN.
pub fn erlang_c(c: u32, offered_erlangs: f64) -> Option<f64> {
    let a = offered_erlangs;
    if c == 0 || a.is_nan() || a < 0.0 {
        return None;
    }
    let rho = a / f64::from(c);
    if rho >= 1.0 {
        return None;
    }
    let b = erlang_b(c, a);
    Some(b / (1.0 - rho * (1.0 - b)))
}

/// An M/M/c queue (Poisson arrivals, exponential service, `c` servers, infinite FCFS queue) in
/// steady state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mmc {
    /// Number of servers `c`.
    pub servers: u32,
    /// Arrival rate `lam` (per second).
    pub arrival_rate: f64,
    /// Service rate per server `mu` (per second).
    pub service_rate: f64,
    /// Per-server utilisation `rho = lam / (c mu)`.
    pub utilization: f64,
    /// Probability an arrival waits (Erlang C).
    pub p_wait: f64,
    /// Mean wait in queue `Wq = C / (c mu - lam)` (seconds).
    pub mean_wait: f64,
    /// Mean response time `W = Wq + 1/mu` (seconds).
    pub mean_response: f64,
}

impl Mmc {
    /// Steady-state M/M/c. `None` if `servers == 0`, a rate is not finite and positive, or
    /// `rho >= 1` (unstable).
    pub fn new(servers: u32, arrival_rate: f64, service_rate: f64) -> Option<Mmc> {
        if servers == 0 || !positive_finite(arrival_rate) || !positive_finite(service_rate) {
            return None;
        }
        let a = arrival_rate / service_rate;
        if !positive_finite(a) {
            return None;
        }
        let rho = a / f64::from(servers);
        let p_wait = erlang_c(servers, a)?;
        let theta = f64::from(servers) * service_rate - arrival_rate;
        let mean_wait = p_wait / theta;
        Some(Mmc {
            servers,
            arrival_rate,
            service_rate,
            utilization: rho,
            p_wait,
            mean_wait,
            mean_response: mean_wait + 1.0 / service_rate,
        })
    }

    /// Rate `c mu - lam` of the exponential wait of a customer that does wait.
    fn wait_rate(&self) -> f64 {
        f64::from(self.servers) * self.service_rate - self.arrival_rate
    }

    /// `P(T > t)` for the FCFS response time `T = Wq + S`:
    /// `(1 - C) e^{-mu t} + C h(t)`, with `h` the survival of `Exp(c mu - lam) + Exp(mu)`.
    pub fn response_survival(&self, t: f64) -> f64 {
        if let Some(p) = survival_at_the_ends(t) {
            return p;
        }
        let mu = self.service_rate;
        let c = self.p_wait;
        let s = (1.0 - c) * libm::exp(-mu * t) + c * hypo_survival(self.wait_rate(), mu, t);
        s.clamp(0.0, 1.0)
    }

    /// Response-time quantile: the smallest `t` with `P(T > t) <= 1 - p`, by bisection on
    /// [`Mmc::response_survival`] to full `f64` precision. 0 for `p <= 0`, infinity for `p >= 1`.
    pub fn response_quantile(&self, p: f64) -> f64 {
        let guess = 10.0 * self.mean_response + 10.0 / self.service_rate;
        bisect_quantile(|t| self.response_survival(t), p, guess)
    }

    /// Waiting-time quantile from `P(Wq > t) = C e^{-(c mu - lam) t}`: 0 when `p <= 1 - C`,
    /// otherwise `ln(C / (1 - p)) / (c mu - lam)`; infinity for `p >= 1`.
    pub fn wait_quantile(&self, p: f64) -> f64 {
        if p.is_nan() {
            return f64::NAN;
        }
        if p >= 1.0 {
            return f64::INFINITY;
        }
        if p <= 1.0 - self.p_wait {
            return 0.0;
        }
        libm::log(self.p_wait / (1.0 - p)) / self.wait_rate()
    }
}

/// An M/M/c/K queue (`c` servers, at most `K` customers in the system; arrivals that find it full
/// are rejected) in steady state. Stable for any offered load, including overload (`rho > 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Mmck {
    /// Number of servers `c`.
    pub servers: u32,
    /// System capacity `K >= c` (in service + waiting).
    pub capacity: u32,
    /// Offered arrival rate `lam` (per second).
    pub arrival_rate: f64,
    /// Service rate per server `mu` (per second).
    pub service_rate: f64,
    /// Probability an arrival finds the system full and is rejected (`p_K`, by PASTA).
    pub p_block: f64,
    /// Admitted (= departure) rate `lam (1 - p_block)` (per second).
    pub throughput: f64,
    /// Carried per-server utilisation: mean number of busy servers / `c`.
    pub utilization: f64,
    /// Mean number in the system `L`.
    pub mean_in_system: f64,
    /// Mean response time of admitted customers, `L / throughput` (seconds).
    pub mean_response: f64,
    /// Mean wait in queue of admitted customers, `Lq / throughput` (seconds).
    pub mean_wait: f64,
    probs: Vec<f64>,
}

impl Mmck {
    /// Steady-state M/M/c/K, stationary distribution computed in log space. `None` if
    /// `servers == 0`, `capacity < servers`, or a rate (or `lam / mu`) is not finite and
    /// positive. Memory and the cost of each survival evaluation are `O(K)`.
    pub fn new(servers: u32, capacity: u32, arrival_rate: f64, service_rate: f64) -> Option<Mmck> {
        if servers == 0
            || capacity < servers
            || !positive_finite(arrival_rate)
            || !positive_finite(service_rate)
        {
            return None;
        }
        let a = arrival_rate / service_rate;
        if !positive_finite(a) {
            return None;
        }
        let c = servers as usize;
        let cf = f64::from(servers);
        let ln_a = libm::log(a);
        let ln_top = cf * ln_a - ln_factorial(c);
        let ln_ratio = libm::log(a / cf);
        // Unnormalised log p_n: a^n / n! up to c, then a^c / c! (a / c)^(n - c).
        let logp: Vec<f64> = (0..=capacity as usize)
            .map(|n| {
                if n <= c {
                    n as f64 * ln_a - ln_factorial(n)
                } else {
                    ln_top + (n - c) as f64 * ln_ratio
                }
            })
            .collect();
        let m = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logp.iter().map(|&x| libm::exp(x - m)).collect();
        let z: f64 = w.iter().sum();
        let probs: Vec<f64> = w.iter().map(|&x| x / z).collect();

        let p_block = probs[capacity as usize];
        let throughput = arrival_rate * (1.0 - p_block);
        let mut mean_in_system = 0.0;
        let mut mean_queue = 0.0;
        let mut busy = 0.0;
        for (n, &pn) in probs.iter().enumerate() {
            mean_in_system += n as f64 * pn;
            busy += n.min(c) as f64 * pn;
            if n > c {
                mean_queue += (n - c) as f64 * pn;
            }
        }
        Some(Mmck {
            servers,
            capacity,
            arrival_rate,
            service_rate,
            p_block,
            throughput,
            utilization: busy / cf,
            mean_in_system,
            mean_response: mean_in_system / throughput,
            mean_wait: mean_queue / throughput,
            probs,
        })
    }

    /// `P(T > t)` for an admitted customer, FCFS. An arrival that finds `n < c` in the system is
    /// served at once, `T ~ Exp(mu)`; one that finds `c <= n < K` waits for `k = n - c + 1`
    /// departures at rate `theta = c mu`, then is served: `T ~ Erlang(k, theta) + Exp(mu)`, whose
    /// survival is `P(Erlang_k(theta) > t) + e^{-mu t} (theta / (theta - mu))^k
    /// F_{Erlang(k, theta - mu)}(t)` (`c > 1`) or `P(Erlang_k(mu) > t) + e^{-mu t} (mu t)^k / k!`
    /// (`c == 1`). Arrival states are weighted `p_n / (1 - p_K)` (PASTA). The Erlang tails are
    /// Poisson sums accumulated in log space, so `K` up to a few thousand is stable.
    pub fn response_survival(&self, t: f64) -> f64 {
        if let Some(p) = survival_at_the_ends(t) {
            return p;
        }
        if self.service_rate * t == 0.0 {
            return 1.0; // t underflows against every rate
        }
        let c = self.servers as usize;
        let k_max = (self.capacity - self.servers) as usize;
        let mu = self.service_rate;
        let theta = f64::from(self.servers) * mu;
        let admitted: f64 = self.probs[..self.probs.len() - 1].iter().sum();
        let free: f64 = self.probs[..c].iter().sum();
        let mut s = free * libm::exp(-mu * t);

        // k = n - c + 1 runs over 1..=k_max for the waiting states n = c..K-1.
        let waiting = &self.probs[c..c + k_max];
        let x = theta * t;
        let ln_x = libm::log(x);
        // ln P(Poisson(x) <= k - 1) = ln P(Erlang_k(theta) > t), accumulated forwards.
        let mut ln_tail_x = f64::NEG_INFINITY;
        if self.servers == 1 {
            for (j, &pn) in waiting.iter().enumerate() {
                let k = j + 1;
                ln_tail_x = log_add_exp(ln_tail_x, ln_poisson(j, x, ln_x));
                // e^{-mu t} (mu t)^k / k! with theta == mu: the Poisson(x) pmf at k.
                let conv = libm::exp(ln_poisson(k, x, ln_x));
                s += pn * (libm::exp(ln_tail_x) + conv);
            }
        } else {
            let r = theta - mu;
            let y = r * t;
            let ln_y = libm::log(y);
            let ln_gain = libm::log(theta / r);
            // ln P(Poisson(y) >= k) = ln F_{Erlang(k, r)}(t): for k <= y it is 1 - lower tail (at
            // least ~0.3, so no cancellation); above y it is summed downwards from the top.
            let k_split = if y >= k_max as f64 { k_max } else { y as usize };
            let mut ln_upper = vec![f64::NEG_INFINITY; k_max + 1];
            if k_split < k_max {
                ln_upper[k_max] = ln_poisson_upper_tail(k_max, y, ln_y);
                for k in (k_split + 1..k_max).rev() {
                    ln_upper[k] = log_add_exp(ln_upper[k + 1], ln_poisson(k, y, ln_y));
                }
            }
            let mut ln_lower_y = f64::NEG_INFINITY;
            for (j, &pn) in waiting.iter().enumerate() {
                let k = j + 1;
                let ln_fact = ln_factorial(j);
                ln_tail_x = log_add_exp(ln_tail_x, -x + j as f64 * ln_x - ln_fact);
                let ln_f = if k <= k_split {
                    ln_lower_y = log_add_exp(ln_lower_y, -y + j as f64 * ln_y - ln_fact);
                    libm::log1p(-libm::exp(ln_lower_y))
                } else {
                    ln_upper[k]
                };
                let conv = libm::exp(-mu * t + k as f64 * ln_gain + ln_f);
                s += pn * (libm::exp(ln_tail_x) + conv);
            }
        }
        (s / admitted).clamp(0.0, 1.0)
    }

    /// Response-time quantile of admitted customers: the smallest `t` with `P(T > t) <= 1 - p`,
    /// by bisection on [`Mmck::response_survival`]. 0 for `p <= 0`, infinity for `p >= 1`.
    pub fn response_quantile(&self, p: f64) -> f64 {
        let guess = 10.0 * self.mean_response + 10.0 / self.service_rate;
        bisect_quantile(|t| self.response_survival(t), p, guess)
    }

    /// Stationary distribution `p_0..=p_K` of the number in the system (length `K + 1`).
    pub fn state_probabilities(&self) -> &[f64] {
        &self.probs
    }
}

/// An M/G/1 FCFS queue (Poisson arrivals, general service) by Pollaczek–Khinchine:
/// `Wq = lam E[S^2] / (2 (1 - rho))` with `E[S^2] = (1 + cs2) E[S]^2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mg1 {
    /// Arrival rate `lam` (per second).
    pub arrival_rate: f64,
    /// Mean service time `E[S]` (seconds).
    pub mean_service: f64,
    /// Squared coefficient of variation of the service time, `Var[S] / E[S]^2`.
    pub service_cs2: f64,
    /// Utilisation `rho = lam E[S]`.
    pub utilization: f64,
    /// Mean wait in queue `Wq` (seconds).
    pub mean_wait: f64,
    /// Mean response time `W = Wq + E[S]` (seconds).
    pub mean_response: f64,
}

impl Mg1 {
    /// Pollaczek–Khinchine. `None` if `rho >= 1`, the rate or mean service time is not finite and
    /// positive, or `service_cs2` is negative or not finite.
    pub fn new(arrival_rate: f64, mean_service: f64, service_cs2: f64) -> Option<Mg1> {
        if !positive_finite(arrival_rate)
            || !positive_finite(mean_service)
            || !service_cs2.is_finite()
            || service_cs2 < 0.0
        {
            return None;
        }
        let rho = arrival_rate * mean_service;
        if rho >= 1.0 {
            return None;
        }
        let es2 = (1.0 + service_cs2) * mean_service * mean_service;
        let mean_wait = arrival_rate * es2 / (2.0 * (1.0 - rho));
        Some(Mg1 {
            arrival_rate,
            mean_service,
            service_cs2,
            utilization: rho,
            mean_wait,
            mean_response: mean_wait + mean_service,
        })
    }
}

/// `P(T > t)` where `t` alone decides it, for any response time `T`: NaN at NaN, 1 at `t <= 0`,
/// 0 at infinity; `None` for a finite positive `t`.
fn survival_at_the_ends(t: f64) -> Option<f64> {
    if t.is_nan() {
        Some(f64::NAN)
    } else if t <= 0.0 {
        Some(1.0)
    } else if t.is_infinite() {
        Some(0.0)
    } else {
        None
    }
}

fn positive_finite(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// `ln n!`.
fn ln_factorial(n: usize) -> f64 {
    libm::lgamma(n as f64 + 1.0)
}

/// `ln(e^a + e^b)`, exact when either is `-inf`.
fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + libm::log1p(libm::exp(lo - hi))
}

/// `ln P(Poisson(x) = j)` for `x > 0`, given `ln_x = ln x`.
fn ln_poisson(j: usize, x: f64, ln_x: f64) -> f64 {
    -x + j as f64 * ln_x - ln_factorial(j)
}

/// `ln P(Poisson(y) >= k)` for `k > y`, summing the series `pmf(k) (1 + y/(k+1) + ...)`, whose
/// ratios are below 1 and decreasing.
fn ln_poisson_upper_tail(k: usize, y: f64, ln_y: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut j = k as f64;
    for _ in 0..1_000_000 {
        j += 1.0;
        term *= y / j;
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    ln_poisson(k, y, ln_y) + libm::log(sum)
}

/// Survival at `t` of `Exp(a) + Exp(b)` (hypoexponential), symmetric in the rates:
/// `(a e^{-b t} - b e^{-a t}) / (a - b)`, written as `e^{-lo t} (1 + lo (1 - e^{-d t}) / d)` with
/// `lo = min(a, b)`, `d = |a - b|` so it stays accurate as `a -> b`, where it becomes
/// `(1 + a t) e^{-a t}`.
fn hypo_survival(a: f64, b: f64, t: f64) -> f64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let d = hi - lo;
    let extra = if d == 0.0 {
        lo * t
    } else {
        -lo * libm::expm1(-d * t) / d
    };
    libm::exp(-lo * t) * (1.0 + extra)
}

/// Smallest `t` with `survival(t) <= 1 - p` for a continuous decreasing survival function with
/// `survival(0) = 1`: double `hi` from `hi_guess` until it brackets, then bisect until `lo` and
/// `hi` are adjacent floats.
fn bisect_quantile(survival: impl Fn(f64) -> f64, p: f64, hi_guess: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let target = 1.0 - p;
    let mut lo = 0.0;
    let mut hi = if positive_finite(hi_guess) {
        hi_guess
    } else {
        1.0
    };
    while survival(hi) > target {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    for _ in 0..2_000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if survival(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `|actual - expected| <= max(1e-15, rel * max(|actual|, |expected|))`.
    #[track_caller]
    fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
        let tol = f64::max(1e-15, rel * actual.abs().max(expected.abs()));
        assert!(
            (actual - expected).abs() <= tol,
            "{what}: got {actual:e}, expected {expected:e} (rel tol {rel:e})"
        );
    }

    const VALUE_REL: f64 = 1e-9;
    const QUANTILE_REL: f64 = 1e-7;

    struct MmcRef {
        id: &'static str,
        c: u32,
        lam: f64,
        mu: f64,
        rho: f64,
        p_wait: f64,
        w: f64,
        wq: f64,
        l: f64,
        lq: f64,
        t_p50: f64,
        t_p90: f64,
        t_p99: f64,
        t_p999: f64,
        wq_p90: f64,
        wq_p99: f64,
    }

    struct Mg1Ref {
        id: &'static str,
        lam: f64,
        es: f64,
        cs2: f64,
        rho: f64,
        w: f64,
        wq: f64,
        l: f64,
        lq: f64,
    }

    struct MmckRef {
        id: &'static str,
        c: u32,
        k: u32,
        lam: f64,
        mu: f64,
        carried_rho: f64,
        p_block: f64,
        throughput: f64,
        p_wait_admitted: f64,
        w: f64,
        wq: f64,
        l: f64,
        lq: f64,
        p0: f64,
    }

    /// `reference/queueing_reference.py` M/M/1 and M/M/c cases (M/M/1 as `c = 1`).
    const MMC_CASES: &[MmcRef] = &[
        MmcRef {
            id: "mm1_rho030",
            c: 1,
            lam: 0.3,
            mu: 1.0,
            rho: 0.3,
            p_wait: 0.3,
            w: 1.4285714285714286,
            wq: 0.4285714285714286,
            l: 0.4285714285714286,
            lq: 0.1285714285714286,
            t_p50: 0.9902102579427791,
            t_p90: 3.28940727570578,
            t_p99: 6.578814551411559,
            t_p999: 9.868221827117338,
            wq_p90: 1.5694461266687283,
            wq_p99: 4.858853402374507,
        },
        MmcRef {
            id: "mm1_rho050",
            c: 1,
            lam: 0.5,
            mu: 1.0,
            rho: 0.5,
            p_wait: 0.5,
            w: 2.0,
            wq: 1.0,
            l: 1.0,
            lq: 0.5,
            t_p50: 1.3862943611198906,
            t_p90: 4.605170185988092,
            t_p99: 9.210340371976182,
            t_p999: 13.815510557964272,
            wq_p90: 3.218875824868201,
            wq_p99: 7.82404601085629,
        },
        MmcRef {
            id: "mm1_rho080",
            c: 1,
            lam: 0.8,
            mu: 1.0,
            rho: 0.8,
            p_wait: 0.8,
            w: 5.000000000000001,
            wq: 4.000000000000001,
            l: 4.000000000000001,
            lq: 3.2000000000000015,
            t_p50: 3.465735902799727,
            t_p90: 11.512925464970232,
            t_p99: 23.02585092994046,
            t_p999: 34.538776394910684,
            wq_p90: 10.397207708399183,
            wq_p99: 21.910133173369406,
        },
        MmcRef {
            id: "mm1_rho095",
            c: 1,
            lam: 0.95,
            mu: 1.0,
            rho: 0.95,
            p_wait: 0.95,
            w: 19.999999999999982,
            wq: 18.999999999999982,
            l: 18.999999999999982,
            lq: 18.049999999999983,
            t_p50: 13.862943611198894,
            t_p90: 46.05170185988088,
            t_p99: 92.10340371976173,
            t_p999: 138.1551055796426,
            wq_p90: 45.02583597212987,
            wq_p99: 91.07753783201072,
        },
        MmcRef {
            id: "mmc_c2_rho050",
            c: 2,
            lam: 1.0,
            mu: 1.0,
            rho: 0.5,
            p_wait: 0.33333333333333337,
            w: 1.3333333333333335,
            wq: 0.33333333333333337,
            l: 1.3333333333333335,
            lq: 0.33333333333333337,
            t_p50: 0.974411605189929,
            t_p90: 2.9948782908174136,
            t_p99: 5.665960683792996,
            t_p999: 8.227510007644486,
            wq_p90: 1.2039728043259363,
            wq_p99: 3.506557897319981,
        },
        MmcRef {
            id: "mmc_c8_rho090",
            c: 8,
            lam: 7.2,
            mu: 1.0,
            rho: 0.9,
            p_wait: 0.701532990146257,
            w: 1.8769162376828215,
            wq: 0.8769162376828215,
            l: 13.513796911316314,
            lq: 6.313796911316315,
            t_p50: 1.489355347219242,
            t_p90: 3.957521355677599,
            t_p99: 7.087347447758011,
            t_p999: 10.07826160616003,
            wq_p90: 2.435122175568389,
            wq_p99: 5.313353541810946,
        },
        MmcRef {
            id: "mmc_c16_rho070",
            c: 16,
            lam: 11.2,
            mu: 1.0,
            rho: 0.7,
            p_wait: 0.12967579207251123,
            w: 1.0270157900151065,
            wq: 0.027015790015106504,
            l: 11.502576848169191,
            lq: 0.30257684816919284,
            t_p50: 0.724598582692155,
            t_p90: 2.3361363491095553,
            t_p99: 4.6387260453484505,
            t_p999: 6.941311139072047,
            wq_p90: 0.05413900882636013,
            wq_p99: 0.5338442365334526,
        },
        MmcRef {
            id: "mmc_c64_rho095",
            c: 64,
            lam: 60.8,
            mu: 1.0,
            rho: 0.95,
            p_wait: 0.5880109319099819,
            w: 1.1837534162218692,
            wq: 0.18375341622186916,
            l: 71.97220770628965,
            lq: 11.172207706289644,
            t_p50: 0.9004989814198623,
            t_p90: 2.538664189544873,
            t_p99: 4.84203625326758,
            t_p999: 7.14462630110552,
            wq_p90: 0.553617297944173,
            wq_p99: 1.2731751395048112,
        },
    ];

    /// `reference/queueing_reference.py` M/D/1 and M/G/1 cases.
    const MG1_CASES: &[Mg1Ref] = &[
        Mg1Ref {
            id: "md1_rho090",
            lam: 0.9,
            es: 1.0,
            cs2: 0.0,
            rho: 0.9,
            w: 5.500000000000001,
            wq: 4.500000000000001,
            l: 4.950000000000001,
            lq: 4.050000000000001,
        },
        Mg1Ref {
            id: "mg1_h2_cs2_4_rho070",
            lam: 0.7,
            es: 1.0,
            cs2: 4.0,
            rho: 0.7,
            w: 6.833333333333332,
            wq: 5.833333333333332,
            l: 4.783333333333332,
            lq: 4.083333333333332,
        },
    ];

    /// `reference/queueing_reference.py` M/M/c/K and M/M/c/c cases.
    const MMCK_CASES: &[MmckRef] = &[
        MmckRef {
            id: "mmck_c8_K16_rho090",
            c: 8,
            k: 16,
            lam: 7.2,
            mu: 1.0,
            carried_rho: 0.8626773042841764,
            p_block: 0.041469661906470855,
            throughput: 6.90141843427341,
            p_wait_admitted: 0.572404829075342,
            w: 1.2828680669612569,
            wq: 0.2828680669612568,
            l: 8.853609326067113,
            lq: 1.952190891793703,
            p0: 0.000537837365748222,
        },
        MmckRef {
            id: "mmck_c64_K128_rho095",
            c: 64,
            k: 128,
            lam: 60.8,
            mu: 1.0,
            carried_rho: 0.9489294919881736,
            p_block: 0.0011268505387634943,
            throughput: 60.73148748724318,
            p_wait_admitted: 0.5787154552302298,
            w: 1.158286144491838,
            wq: 0.15828614449183961,
            l: 70.3444404908532,
            lq: 9.612953003610123,
            p0: 2.5771719870204644e-27,
        },
        MmckRef {
            id: "mmck_c4_K8_overload120",
            c: 4,
            k: 8,
            lam: 4.8,
            mu: 1.0,
            carried_rho: 0.9252901018487499,
            p_block: 0.22892491512604182,
            throughput: 3.701160407394999,
            p_wait_admitted: 0.7685708601744186,
            w: 1.5237392337030597,
            wq: 0.5237392337030594,
            l: 5.63960332297616,
            lq: 1.93844291558116,
            p0: 0.004991308000484376,
        },
        MmckRef {
            id: "erlangB_c16_a12",
            c: 16,
            k: 16,
            lam: 12.0,
            mu: 1.0,
            carried_rho: 0.7046905556530766,
            p_block: 0.060412592462564536,
            throughput: 11.275048890449225,
            p_wait_admitted: 0.0,
            w: 1.0,
            wq: 0.0,
            l: 11.275048890449225,
            lq: 0.0,
            p0: 6.836709551358905e-06,
        },
    ];

    /// Composite Simpson's rule for `∫_0^upper f` with `n` (even) panels.
    fn simpson(f: impl Fn(f64) -> f64, upper: f64, n: usize) -> f64 {
        let h = upper / n as f64;
        let inner: f64 = (1..n)
            .map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h))
            .sum();
        (f(0.0) + f(upper) + inner) * h / 3.0
    }

    /// Erlang C by the textbook sum in log space (the reference's cross-check).
    fn erlang_c_direct(c: u32, a: f64) -> f64 {
        let rho = a / f64::from(c);
        let ln_a = libm::log(a);
        let terms: Vec<f64> = (0..c)
            .map(|k| f64::from(k) * ln_a - libm::lgamma(f64::from(k) + 1.0))
            .collect();
        let top = f64::from(c) * ln_a - libm::lgamma(f64::from(c) + 1.0) - libm::log(1.0 - rho);
        let m = terms.iter().copied().fold(top, f64::max);
        let s: f64 = terms.iter().map(|&t| libm::exp(t - m)).sum();
        let t = libm::exp(top - m);
        t / (s + t)
    }

    // ------------------------------------------------------------ Erlang B / C

    #[test]
    fn erlang_b_matches_reference() {
        assert_close(
            erlang_b(16, 12.0),
            0.06041259246256451,
            VALUE_REL,
            "B(16, 12)",
        );
        assert_close(
            erlang_b(8, 7.2),
            0.19031316866395676,
            VALUE_REL,
            "B(8, 7.2)",
        );
        assert_close(
            erlang_b(64, 60.8),
            0.06660905834054678,
            VALUE_REL,
            "B(64, 60.8)",
        );
        // B(1, a) = a / (1 + a); B(c, 0) = 0; B(0, a) = 1.
        assert_close(erlang_b(1, 3.0), 0.75, VALUE_REL, "B(1, 3)");
        assert_eq!(erlang_b(5, 0.0), 0.0);
        assert_eq!(erlang_b(0, 2.5), 1.0);
        assert_eq!(erlang_b(4, f64::INFINITY), 1.0);
        assert!(erlang_b(4, -1.0).is_nan());
        assert!(erlang_b(4, f64::NAN).is_nan());
        // Stays finite and in (0, 1) for large c.
        let b = erlang_b(10_000, 9_500.0);
        assert!(b > 0.0 && b < 1.0, "B(10000, 9500) = {b}");
    }

    #[test]
    fn erlang_c_recursion_equals_direct_sum() {
        for case in MMC_CASES {
            let a = case.lam / case.mu;
            let x = erlang_c(case.c, a).unwrap();
            assert_close(x, erlang_c_direct(case.c, a), VALUE_REL, case.id);
            assert_close(x, case.p_wait, VALUE_REL, case.id);
        }
    }

    #[test]
    fn erlang_c_two_servers_closed_form() {
        for rho in [0.3, 0.5, 0.9] {
            let x = erlang_c(2, 2.0 * rho).unwrap();
            assert_close(x, 2.0 * rho * rho / (1.0 + rho), VALUE_REL, "C(2, 2 rho)");
        }
        assert_close(
            erlang_c(2, 0.6).unwrap(),
            0.1384615384615384,
            VALUE_REL,
            "C(2, 0.6)",
        );
        assert_close(
            erlang_c(2, 1.8).unwrap(),
            0.8526315789473683,
            VALUE_REL,
            "C(2, 1.8)",
        );
    }

    #[test]
    fn erlang_c_none_when_unstable_or_invalid() {
        assert_eq!(erlang_c(4, 4.0), None);
        assert_eq!(erlang_c(4, 5.0), None);
        assert_eq!(erlang_c(0, 0.5), None);
        assert_eq!(erlang_c(4, -0.5), None);
        assert_eq!(erlang_c(4, f64::NAN), None);
        assert_eq!(erlang_c(4, f64::INFINITY), None);
        assert_eq!(erlang_c(4, 0.0), Some(0.0));
    }

    // ------------------------------------------------------------ M/M/c

    #[test]
    fn mmc_matches_reference_table() {
        for case in MMC_CASES {
            let m = Mmc::new(case.c, case.lam, case.mu).unwrap();
            let id = case.id;
            assert_eq!(m.servers, case.c);
            assert_close(m.utilization, case.rho, VALUE_REL, id);
            assert_close(m.p_wait, case.p_wait, VALUE_REL, id);
            assert_close(m.mean_response, case.w, VALUE_REL, id);
            assert_close(m.mean_wait, case.wq, VALUE_REL, id);
            // Little's law against the reference's L and Lq.
            assert_close(case.lam * m.mean_response, case.l, VALUE_REL, id);
            assert_close(case.lam * m.mean_wait, case.lq, VALUE_REL, id);
            assert_close(m.response_quantile(0.50), case.t_p50, QUANTILE_REL, id);
            assert_close(m.response_quantile(0.90), case.t_p90, QUANTILE_REL, id);
            assert_close(m.response_quantile(0.99), case.t_p99, QUANTILE_REL, id);
            assert_close(m.response_quantile(0.999), case.t_p999, QUANTILE_REL, id);
            assert_close(m.wait_quantile(0.90), case.wq_p90, QUANTILE_REL, id);
            assert_close(m.wait_quantile(0.99), case.wq_p99, QUANTILE_REL, id);
        }
    }

    #[test]
    fn mm1_equals_mmc_with_one_server() {
        for lam in [0.3, 0.5, 0.8, 0.95] {
            let m = Mmc::new(1, lam, 1.0).unwrap();
            let r = 1.0 - lam;
            assert_close(m.p_wait, lam, VALUE_REL, "M/M/1 p_wait");
            assert_close(m.mean_response, 1.0 / r, VALUE_REL, "M/M/1 W");
            assert_close(m.mean_wait, lam / r, VALUE_REL, "M/M/1 Wq");
            for t in [0.1, 1.0, 7.0, 40.0] {
                let exact = libm::exp(-r * t);
                assert_close(m.response_survival(t), exact, VALUE_REL, "M/M/1 P(T>t)");
            }
            for p in [0.5, 0.9, 0.99, 0.999] {
                let exact = -libm::log(1.0 - p) / r;
                assert_close(
                    m.response_quantile(p),
                    exact,
                    QUANTILE_REL,
                    "M/M/1 quantile",
                );
            }
            let exact_wq99 = libm::log(lam / 0.01) / r;
            assert_close(
                m.wait_quantile(0.99),
                exact_wq99,
                QUANTILE_REL,
                "M/M/1 Wq p99",
            );
        }
    }

    #[test]
    fn mmc_survival_when_wait_rate_equals_service_rate() {
        // c = 2, lam = mu: c mu - lam == mu, the hypoexponential's repeated-rate case.
        let m = Mmc::new(2, 1.0, 1.0).unwrap();
        let c = 1.0 / 3.0;
        for t in [0.25, 1.0, 3.0, 12.0] {
            let exact = (1.0 - c) * libm::exp(-t) + c * (1.0 + t) * libm::exp(-t);
            assert_close(m.response_survival(t), exact, VALUE_REL, "th == mu");
            // Continuous in the rates across the special case.
            for lam in [1.0 - 1e-9, 1.0 + 1e-9, 1.0 - 1e-13, 1.0 + 1e-13] {
                let near = Mmc::new(2, lam, 1.0).unwrap();
                assert_close(near.response_survival(t), exact, 1e-8, "th ~ mu");
            }
        }
    }

    #[test]
    fn mmc_survival_integrates_to_mean_and_inverts_quantile() {
        for case in MMC_CASES.iter().filter(|c| c.c > 1) {
            let m = Mmc::new(case.c, case.lam, case.mu).unwrap();
            let upper = 80.0 * m.mean_response + 80.0 / case.mu;
            let mean = simpson(|t| m.response_survival(t), upper, 20_000);
            assert_close(mean, m.mean_response, 1e-6, case.id);
            let q = m.response_quantile(0.99);
            assert_close(m.response_survival(q), 0.01, VALUE_REL, case.id);
        }
    }

    #[test]
    fn mmc_edges() {
        let m = Mmc::new(8, 7.2, 1.0).unwrap();
        assert_eq!(m.response_survival(0.0), 1.0);
        assert_eq!(m.response_survival(-3.0), 1.0);
        assert_eq!(m.response_survival(f64::INFINITY), 0.0);
        assert!(m.response_survival(f64::NAN).is_nan());
        assert_eq!(m.response_quantile(0.0), 0.0);
        assert_eq!(m.response_quantile(1.0), f64::INFINITY);
        assert!(m.response_quantile(f64::NAN).is_nan());
        // An arrival waits with probability C, so quantiles at or below 1 - C are 0.
        assert_eq!(m.wait_quantile(1.0 - m.p_wait), 0.0);
        assert_eq!(m.wait_quantile(0.1), 0.0);
        assert_eq!(m.wait_quantile(1.0), f64::INFINITY);
        // Survival is decreasing.
        let mut prev = 1.0;
        for i in 1..200 {
            let s = m.response_survival(f64::from(i) * 0.1);
            assert!(s < prev);
            prev = s;
        }
    }

    // ------------------------------------------------------------ M/G/1

    #[test]
    fn mg1_matches_reference_table() {
        for case in MG1_CASES {
            let g = Mg1::new(case.lam, case.es, case.cs2).unwrap();
            assert_close(g.utilization, case.rho, VALUE_REL, case.id);
            assert_close(g.mean_response, case.w, VALUE_REL, case.id);
            assert_close(g.mean_wait, case.wq, VALUE_REL, case.id);
            assert_close(case.lam * g.mean_response, case.l, VALUE_REL, case.id);
            assert_close(case.lam * g.mean_wait, case.lq, VALUE_REL, case.id);
        }
    }

    #[test]
    fn pollaczek_khinchine_special_cases() {
        for rho in [0.3, 0.7, 0.9] {
            // Exponential service (cs2 = 1) is M/M/1.
            let g = Mg1::new(rho, 1.0, 1.0).unwrap();
            let m = Mmc::new(1, rho, 1.0).unwrap();
            assert_close(
                g.mean_wait,
                m.mean_wait,
                VALUE_REL,
                "P-K(cs2=1) vs M/M/1 Wq",
            );
            assert_close(
                g.mean_response,
                m.mean_response,
                VALUE_REL,
                "P-K(cs2=1) vs M/M/1 W",
            );
            // Deterministic service: Wq = rho / (2 mu (1 - rho)), half the M/M/1 wait.
            let d = Mg1::new(rho, 1.0, 0.0).unwrap();
            assert_close(
                d.mean_wait,
                rho / (2.0 * (1.0 - rho)),
                VALUE_REL,
                "M/D/1 Wq",
            );
            assert_close(
                d.mean_wait,
                0.5 * m.mean_wait,
                VALUE_REL,
                "M/D/1 = M/M/1 / 2",
            );
        }
        // Time scaling: mean service 10 ms at the same rho scales the waits by 0.01.
        let g = Mg1::new(70.0, 0.01, 4.0).unwrap();
        assert_close(
            g.mean_wait,
            5.833333333333332 * 0.01,
            VALUE_REL,
            "scaled P-K",
        );
    }

    // ------------------------------------------------------------ M/M/c/K

    #[test]
    fn mmck_matches_reference_table() {
        for case in MMCK_CASES {
            let q = Mmck::new(case.c, case.k, case.lam, case.mu).unwrap();
            let id = case.id;
            let p = q.state_probabilities();
            assert_eq!(p.len(), case.k as usize + 1, "{id}");
            assert_close(p.iter().sum::<f64>(), 1.0, 1e-12, id);
            assert_close(p[0], case.p0, VALUE_REL, id);
            assert_close(q.p_block, case.p_block, VALUE_REL, id);
            assert_close(q.throughput, case.throughput, VALUE_REL, id);
            assert_close(q.utilization, case.carried_rho, VALUE_REL, id);
            assert_close(q.mean_in_system, case.l, VALUE_REL, id);
            assert_close(q.mean_response, case.w, VALUE_REL, id);
            assert_close(q.mean_wait, case.wq, VALUE_REL, id);
            let c = case.c as usize;
            let lq: f64 = p
                .iter()
                .skip(c + 1)
                .zip(1..)
                .map(|(pn, j)| f64::from(j) * pn)
                .sum();
            assert_close(lq, case.lq, VALUE_REL, id);
            let waiting: f64 = p[c..case.k as usize].iter().sum();
            assert_close(
                waiting / (1.0 - q.p_block),
                case.p_wait_admitted,
                VALUE_REL,
                id,
            );
        }
    }

    #[test]
    fn mmck_little_law_and_flow_balance() {
        let extra = [
            (1, 10, 0.9, 1.0),
            (2, 5, 3.0, 2.0),
            (3, 3, 10.0, 0.5),
            (5, 40, 50.0, 1.0),
        ];
        let all = MMCK_CASES
            .iter()
            .map(|r| (r.c, r.k, r.lam, r.mu))
            .chain(extra);
        for (c, k, lam, mu) in all {
            let q = Mmck::new(c, k, lam, mu).unwrap();
            let p = q.state_probabilities();
            let l: f64 = p.iter().zip(0..).map(|(pn, n)| f64::from(n) * pn).sum();
            let lq: f64 = p
                .iter()
                .zip(0..)
                .map(|(pn, n)| f64::from(n.max(c) - c) * pn)
                .sum();
            assert_close(
                l,
                q.throughput * q.mean_response,
                VALUE_REL,
                "L = lam_eff W",
            );
            assert_close(lq, q.throughput * q.mean_wait, VALUE_REL, "Lq = lam_eff Wq");
            assert_close(
                q.mean_response - q.mean_wait,
                1.0 / mu,
                VALUE_REL,
                "W - Wq = 1/mu",
            );
            assert_close(
                q.throughput,
                lam * (1.0 - q.p_block),
                VALUE_REL,
                "throughput",
            );
            assert_close(
                q.utilization * f64::from(c),
                q.throughput / mu,
                VALUE_REL,
                "carried",
            );
        }
    }

    #[test]
    fn mmcc_blocking_is_erlang_b() {
        for (c, a) in [(16, 12.0), (8, 7.2), (64, 60.8), (1, 0.5), (200, 260.0)] {
            let q = Mmck::new(c, c, a, 1.0).unwrap();
            assert_close(q.p_block, erlang_b(c, a), VALUE_REL, "M/M/c/c p_block");
            // No queue: the response time is the service time.
            assert_eq!(q.mean_wait, 0.0);
            for t in [0.5, 2.0] {
                assert_close(
                    q.response_survival(t),
                    libm::exp(-t),
                    VALUE_REL,
                    "M/M/c/c T",
                );
            }
        }
    }

    #[test]
    fn mm1k_blocking_closed_form() {
        let cases = [
            (0.5, 5, 0.015873015873015872),
            (0.9, 10, 0.05081373132741239),
            (1.2, 8, 0.2067328847270828),
        ];
        for (rho, k, reference) in cases {
            let q = Mmck::new(1, k, rho, 1.0).unwrap();
            let closed = (1.0 - rho) * libm::pow(rho, f64::from(k))
                / (1.0 - libm::pow(rho, f64::from(k + 1)));
            assert_close(q.p_block, closed, VALUE_REL, "M/M/1/K closed form");
            assert_close(q.p_block, reference, VALUE_REL, "M/M/1/K reference");
        }
        // rho = 1 exactly: uniform over 0..=K, p_block = 1 / (K + 1).
        let q = Mmck::new(1, 9, 2.0, 2.0).unwrap();
        assert_close(q.p_block, 0.1, VALUE_REL, "M/M/1/9 at rho = 1");
    }

    #[test]
    fn mmck_large_capacity_converges_to_mmc() {
        for (c, lam) in [(1, 0.8), (8, 7.2), (64, 60.8)] {
            let big = Mmck::new(c, c + 4000, lam, 1.0).unwrap();
            let inf = Mmc::new(c, lam, 1.0).unwrap();
            assert!(big.p_block < 1e-12, "p_block {}", big.p_block);
            assert_close(big.mean_response, inf.mean_response, VALUE_REL, "W");
            assert_close(big.mean_wait, inf.mean_wait, VALUE_REL, "Wq");
            for t in [0.5, 2.0, 6.0] {
                let (b, i) = (big.response_survival(t), inf.response_survival(t));
                assert_close(b, i, VALUE_REL, "P(T > t)");
            }
            for p in [0.5, 0.99] {
                let (b, i) = (big.response_quantile(p), inf.response_quantile(p));
                assert_close(b, i, QUANTILE_REL, "quantile");
            }
        }
    }

    #[test]
    fn mmck_survival_integrates_to_mean_and_inverts_quantile() {
        // c8_K16 (rho 0.9), c1_K10 (rho 0.9), c4_K8 overload (rho 1.2).
        for (c, k, lam, mu) in [(8, 16, 7.2, 1.0), (1, 10, 0.9, 1.0), (4, 8, 4.8, 1.0)] {
            let q = Mmck::new(c, k, lam, mu).unwrap();
            let upper = 80.0 * q.mean_response + 80.0 / mu;
            let mean = simpson(|t| q.response_survival(t), upper, 20_000);
            assert_close(mean, q.mean_response, 1e-6, "integral of P(T > t)");
            let p99 = q.response_quantile(0.99);
            assert_close(q.response_survival(p99), 0.01, VALUE_REL, "P(T > p99)");
        }
    }

    /// `P(T > t)` and quantiles of M/M/c/K response times from an independent 60-digit mpmath
    /// evaluation of the same model (regularised incomplete gamma functions for the Erlang
    /// terms, bisection for quantiles).
    #[test]
    fn mmck_response_distribution_matches_high_precision_oracle() {
        type Oracle = ((u32, u32, f64, f64), [f64; 6], [f64; 4]);
        const TIMES: [f64; 6] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0];
        const PS: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
        let cases: [Oracle; 5] = [
            (
                (8, 16, 7.2, 1.0),
                [
                    0.9555219984140979,
                    0.7569450296118514,
                    0.5105499016280844,
                    0.1952110760244591,
                    0.00972840813708173,
                    6.554949842466007e-05,
                ],
                [
                    1.0236186290505118,
                    2.669834762157478,
                    4.972465186200617,
                    7.275050279400585,
                ],
            ),
            (
                (64, 128, 60.8, 1.0),
                [
                    0.9515273060593468,
                    0.7082428346325564,
                    0.44322775371733103,
                    0.16320821801120508,
                    0.00812565870832163,
                    5.4750257709328415e-05,
                ],
                [
                    0.8771471850363342,
                    2.489856610735001,
                    4.792441703729046,
                    7.095026796723091,
                ],
            ),
            (
                (4, 8, 4.8, 1.0),
                [
                    0.9751305143621443,
                    0.8407378323675687,
                    0.6217293204202329,
                    0.26346320125640127,
                    0.01346486644281706,
                    9.072797741126855e-05,
                ],
                [
                    1.282826332073638,
                    2.9917757574048887,
                    5.297512720151856,
                    7.600110458708592,
                ],
            ),
            (
                (1, 10, 0.9, 1.0),
                [
                    0.984723112417222,
                    0.9251205878913427,
                    0.8538930883843427,
                    0.7216906074223768,
                    0.3970123612421546,
                    0.08663185993031157,
                ],
                [
                    3.942045216102362,
                    9.619395058996467,
                    14.78344160418907,
                    18.922750178652343,
                ],
            ),
            (
                (2, 5, 3.0, 2.0),
                [
                    0.9031847705773843,
                    0.5573947838148042,
                    0.26325510084820797,
                    0.044039963910613524,
                    0.00011728191142107532,
                    5.328065812157717e-09,
                ],
                [
                    0.5789142495920571,
                    1.5589331566193247,
                    2.765726411550747,
                    3.9268327112625685,
                ],
            ),
        ];
        for ((c, k, lam, mu), survival, quantiles) in cases {
            let q = Mmck::new(c, k, lam, mu).unwrap();
            for (t, s) in TIMES.into_iter().zip(survival) {
                assert_close(q.response_survival(t), s, VALUE_REL, "P(T > t) vs mpmath");
            }
            for (p, x) in PS.into_iter().zip(quantiles) {
                assert_close(
                    q.response_quantile(p),
                    x,
                    QUANTILE_REL,
                    "quantile vs mpmath",
                );
            }
        }
    }

    #[test]
    fn mmck_edges() {
        let q = Mmck::new(8, 16, 7.2, 1.0).unwrap();
        assert_eq!(q.response_survival(0.0), 1.0);
        assert_eq!(q.response_survival(-1.0), 1.0);
        assert_eq!(q.response_survival(f64::INFINITY), 0.0);
        assert!(q.response_survival(f64::NAN).is_nan());
        assert_eq!(q.response_quantile(0.0), 0.0);
        assert_eq!(q.response_quantile(1.0), f64::INFINITY);
        let mut prev = 1.0;
        for i in 1..300 {
            let s = q.response_survival(f64::from(i) * 0.05);
            assert!(
                s < prev && s > 0.0,
                "t = {}: {s} vs {prev}",
                f64::from(i) * 0.05
            );
            prev = s;
        }
        // Deep overload stays finite: nearly everyone is shed, the buffer is nearly always full.
        let o = Mmck::new(4, 2000, 400.0, 1.0).unwrap();
        assert!(o.p_block > 0.98 && o.p_block < 1.0, "p_block {}", o.p_block);
        assert_close(o.utilization, 1.0, 1e-9, "saturated servers");
        let p50 = o.response_quantile(0.5);
        assert!(p50.is_finite() && p50 > 400.0, "p50 {p50}");
        assert_close(o.response_survival(p50), 0.5, VALUE_REL, "overload median");
    }

    // ------------------------------------------------------------ invalid inputs

    #[test]
    fn none_for_unstable_or_invalid_inputs() {
        assert_eq!(Mmc::new(0, 1.0, 1.0), None);
        assert_eq!(Mmc::new(1, 1.0, 1.0), None);
        assert_eq!(Mmc::new(8, 8.0, 1.0), None);
        assert_eq!(Mmc::new(8, 9.0, 1.0), None);
        assert_eq!(Mmc::new(2, 0.0, 1.0), None);
        assert_eq!(Mmc::new(2, -1.0, 1.0), None);
        assert_eq!(Mmc::new(2, 1.0, 0.0), None);
        assert_eq!(Mmc::new(2, f64::NAN, 1.0), None);
        assert_eq!(Mmc::new(2, 1.0, f64::INFINITY), None);
        assert_eq!(Mmc::new(2, 1e300, 1e-300), None);

        assert_eq!(Mmck::new(0, 4, 1.0, 1.0), None);
        assert_eq!(Mmck::new(4, 3, 1.0, 1.0), None);
        assert_eq!(Mmck::new(4, 8, 0.0, 1.0), None);
        assert_eq!(Mmck::new(4, 8, 1.0, -1.0), None);
        assert_eq!(Mmck::new(4, 8, f64::INFINITY, 1.0), None);
        assert_eq!(Mmck::new(4, 8, 1.0, f64::NAN), None);
        assert_eq!(Mmck::new(4, 8, 1e-300, 1e300), None);
        assert!(
            Mmck::new(4, 8, 40.0, 1.0).is_some(),
            "overload is fine with a buffer"
        );

        assert_eq!(Mg1::new(1.0, 1.0, 1.0), None);
        assert_eq!(Mg1::new(2.0, 0.6, 0.0), None);
        assert_eq!(Mg1::new(0.5, 1.0, -0.1), None);
        assert_eq!(Mg1::new(0.5, 1.0, f64::NAN), None);
        assert_eq!(Mg1::new(0.5, 1.0, f64::INFINITY), None);
        assert_eq!(Mg1::new(0.0, 1.0, 1.0), None);
        assert_eq!(Mg1::new(0.5, 0.0, 1.0), None);
        assert_eq!(Mg1::new(f64::NAN, 1.0, 1.0), None);
    }
}
