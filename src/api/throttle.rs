//! Admission control at the front door: per account × API rate limits (ECS-style fixed one-minute
//! windows, or EC2-style token buckets) and the per-account instance-creation cap.
//!
//! State is kept in dense vectors indexed by account and API (accounts are small integers), so
//! a check is O(1) and iteration order never depends on hashing. Token buckets count in
//! nano-tokens so refill is exact integer arithmetic.

use super::types::{AccountId, Api};
use crate::kernel::{SimDuration, SimTime};

/// One API's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// At most `max` calls per fixed window (ECS: per minute, counted from the epoch; throttled in
    /// window T, allowed again in window T + 1).
    FixedWindow { max: u32, window: SimDuration },
    /// A bucket of `capacity` tokens refilled at `refill_per_s` tokens per second; one token per call
    /// (EC2 style).
    TokenBucket { capacity: u32, refill_per_s: u32 },
    /// No limit.
    Unlimited,
}

/// Why a limit is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("a fixed window needs max >= 1 and a window longer than 0 (e.g. 200 per \"60s\")")]
    EmptyWindow,
    #[error(
        "a token bucket needs capacity >= 1 and refill >= 1 per second (e.g. capacity 100, refill 20)"
    )]
    EmptyBucket,
}

impl Limit {
    pub fn validate(self) -> Result<Limit, LimitError> {
        match self {
            Limit::FixedWindow { max, window } if max == 0 || window.is_zero() => {
                Err(LimitError::EmptyWindow)
            }
            Limit::TokenBucket {
                capacity,
                refill_per_s,
            } if capacity == 0 || refill_per_s == 0 => Err(LimitError::EmptyBucket),
            other => Ok(other),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    /// Fixed window: index of the current window; bucket: last refill instant (ns).
    stamp: u64,
    /// Fixed window: calls admitted in the window; bucket: nano-tokens available.
    level: u64,
    /// Whether the cell has been used (a bucket starts full).
    touched: bool,
}

const NANO: u64 = 1_000_000_000;

impl Cell {
    #[inline]
    fn admit(&mut self, limit: Limit, now: SimTime, cost: u64) -> bool {
        match limit {
            Limit::Unlimited => true,
            Limit::FixedWindow { max, window } => {
                let w = now.as_ns() / window.as_ns();
                if !self.touched || w != self.stamp {
                    self.touched = true;
                    self.stamp = w;
                    self.level = 0;
                }
                if self.level + cost <= u64::from(max) {
                    self.level += cost;
                    true
                } else {
                    false
                }
            }
            Limit::TokenBucket {
                capacity,
                refill_per_s,
            } => {
                let cap = u64::from(capacity) * NANO;
                if !self.touched {
                    self.touched = true;
                    self.level = cap;
                } else {
                    let dt = now.as_ns().saturating_sub(self.stamp);
                    // refill_per_s tokens per second = refill_per_s nano-tokens per ns.
                    self.level = self
                        .level
                        .saturating_add(dt.saturating_mul(u64::from(refill_per_s)))
                        .min(cap);
                }
                self.stamp = now.as_ns();
                let need = cost * NANO;
                if self.level >= need {
                    self.level -= need;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Per account × API limits plus the per-account instance-creation cap.
#[derive(Clone, Debug)]
pub struct Throttle {
    limits: [Limit; Api::COUNT],
    /// The limits as configured (or set by `set_limit`); `limits` is these scaled by the quota
    /// factor of a quota fault times the runbook's factor (`raise_quota`).
    base: [Limit; Api::COUNT],
    quota_factor: f64,
    /// An operator's multiplier of every limit (1 until a runbook raises the quotas).
    runbook_factor: f64,
    /// Calls throttled while the quota factor was below 1.
    throttled_under_fault: u64,
    /// Accounts with a quota fault of their own: (account, its quota factor, its limits: the
    /// configured ones × its factor × the runbook's), sorted by account. The unscoped
    /// `quota_factor` is already part of each account's factor.
    by_account: Vec<(AccountId, f64, [Limit; Api::COUNT])>,
    creation_cap: Limit,
    cells: Vec<[Cell; Api::COUNT]>,
    creation: Vec<Cell>,
    max_accounts: u32,
    throttled: [u64; Api::COUNT],
    creation_capped: u64,
}

/// What the throttle says about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Over the account × API rate: `Throttling` (400).
    Throttled,
    /// Over the account's instances-per-minute cap: `QuotaExceed` (403).
    CreationCapped,
}

impl Throttle {
    /// `limits[api.index()]` per API; `creation_cap` counts instances (not calls) per account.
    /// Accounts are numbered 0..max_accounts.
    pub fn new(
        limits: [Limit; Api::COUNT],
        creation_cap: Limit,
        max_accounts: u32,
    ) -> Result<Throttle, LimitError> {
        for l in limits {
            l.validate()?;
        }
        creation_cap.validate()?;
        Ok(Throttle {
            limits,
            base: limits,
            quota_factor: 1.0,
            runbook_factor: 1.0,
            throttled_under_fault: 0,
            by_account: Vec::new(),
            creation_cap,
            cells: Vec::new(),
            creation: Vec::new(),
            max_accounts,
            throttled: [0; Api::COUNT],
            creation_capped: 0,
        })
    }

    /// ECS defaults *(assumed figures)*: 200 calls per minute per account and mutating API, 2,000 for
    /// Describe*, and the documented 5,000 instances per minute per account.
    pub fn ecs_defaults(max_accounts: u32) -> Throttle {
        let minute = SimDuration::MINUTE;
        let limits = Api::ALL.map(|api| {
            if api.is_mutating() {
                Limit::FixedWindow {
                    max: 200,
                    window: minute,
                }
            } else {
                Limit::FixedWindow {
                    max: 2_000,
                    window: minute,
                }
            }
        });
        Throttle::new(
            limits,
            Limit::FixedWindow {
                max: 5_000,
                window: minute,
            },
            max_accounts,
        )
        .expect("the defaults are valid")
    }

    /// EC2's documented token buckets: reads 100/20, mutating 50/5, RunInstances 5/2, and an
    /// instance bucket of 1,000 refilled at 2 per second.
    pub fn ec2_defaults(max_accounts: u32) -> Throttle {
        let limits = Api::ALL.map(|api| match api {
            Api::RunInstances => Limit::TokenBucket {
                capacity: 5,
                refill_per_s: 2,
            },
            a if a.is_mutating() => Limit::TokenBucket {
                capacity: 50,
                refill_per_s: 5,
            },
            _ => Limit::TokenBucket {
                capacity: 100,
                refill_per_s: 20,
            },
        });
        Throttle::new(
            limits,
            Limit::TokenBucket {
                capacity: 1_000,
                refill_per_s: 2,
            },
            max_accounts,
        )
        .expect("the defaults are valid")
    }

    fn ensure(&mut self, account: AccountId) -> usize {
        let i = account.0 as usize;
        assert!(
            account.0 < self.max_accounts,
            "account {} beyond the configured {}",
            account.0,
            self.max_accounts
        );
        if i >= self.cells.len() {
            self.cells.resize(i + 1, [Cell::default(); Api::COUNT]);
            self.creation.resize(i + 1, Cell::default());
        }
        i
    }

    /// Checks one call that would create `instances` instances (0 for other APIs), and counts it
    /// if admitted. A call throttled by its API limit does not consume creation quota.
    pub fn check(&mut self, now: SimTime, account: AccountId, api: Api, instances: u32) -> Verdict {
        let i = self.ensure(account);
        let (limit, factor) = match self.account_entry(account) {
            Some(k) => (self.by_account[k].2[api.index()], self.by_account[k].1),
            None => (self.limits[api.index()], self.quota_factor),
        };
        if !self.cells[i][api.index()].admit(limit, now, 1) {
            self.throttled[api.index()] += 1;
            if factor < 1.0 {
                self.throttled_under_fault += 1;
            }
            return Verdict::Throttled;
        }
        if instances > 0 && !self.creation[i].admit(self.creation_cap, now, u64::from(instances)) {
            self.creation_capped += 1;
            return Verdict::CreationCapped;
        }
        Verdict::Admit
    }

    pub fn throttled(&self, api: Api) -> u64 {
        self.throttled[api.index()]
    }
    pub fn creation_capped(&self) -> u64 {
        self.creation_capped
    }
    /// Replaces one API's limit (a runbook action or a fault: "a quota set too low"); accounts
    /// with their own quota factor get it scaled by theirs.
    pub fn set_limit(&mut self, api: Api, limit: Limit) -> Result<(), LimitError> {
        self.base[api.index()] = limit.validate()?;
        self.limits[api.index()] = scaled(self.base[api.index()], self.factor());
        Ok(())
    }

    /// Scales every API's limit by `factor` in (0, 1] (a quota fault: "quotas set too low"):
    /// a fixed window's `max`, a bucket's capacity and refill, each rounded and at least 1;
    /// unlimited APIs stay unlimited. 1 restores the configured limits. Out-of-range factors
    /// are clamped. Composes with the runbook's factor: the limits in force are the configured
    /// ones × this factor × [`Throttle::runbook_factor`].
    pub fn set_quota_factor(&mut self, factor: f64) {
        let f = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.quota_factor = f;
        self.rescale();
    }

    /// Multiplies the runbook's factor by `factor` (a runbook's `raise_quota`; two raises
    /// compound). The limits in force are the configured ones × the quota fault's factor × the
    /// runbook's factor, so a raise outlives the fault and the fault's end keeps the raise.
    /// The creation cap (instances per minute) is not a throttling quota and is not scaled.
    /// A factor that is not finite or not above 0 changes nothing; the product is kept within
    /// [1e-6, 1e6].
    pub fn raise_quota(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        self.runbook_factor = (self.runbook_factor * factor).clamp(1e-6, 1e6);
        self.rescale();
    }

    /// The runbook's factor (1 until a `raise_quota`).
    pub fn runbook_factor(&self) -> f64 {
        self.runbook_factor
    }

    /// The factor the configured limits are scaled by now: the quota fault's × the runbook's.
    pub fn factor(&self) -> f64 {
        self.quota_factor * self.runbook_factor
    }

    fn rescale(&mut self) {
        let f = self.factor();
        self.limits = self.base.map(|l| scaled(l, f));
        let (base, runbook) = (self.base, self.runbook_factor);
        for (_, factor, limits) in &mut self.by_account {
            *limits = base.map(|l| scaled(l, *factor * runbook));
        }
    }

    /// Where `account`'s own quota factor is kept, if it has one.
    #[inline]
    fn account_entry(&self, account: AccountId) -> Option<usize> {
        if self.by_account.is_empty() {
            return None;
        }
        self.by_account
            .binary_search_by_key(&account, |(a, _, _)| *a)
            .ok()
    }

    /// Scales the limits of each listed account by its own factor in (0, 1] instead of
    /// [`Throttle::set_quota_factor`]'s (a quota fault scoped to an account; the caller folds
    /// any unscoped fault's factor into each), composed with the runbook's factor as for
    /// every account. Other accounts keep the common limits. An empty list clears them.
    /// Factors are clamped as in `set_quota_factor`; an account listed twice keeps its last.
    pub fn set_account_quota_factors(&mut self, factors: &[(AccountId, f64)]) {
        self.by_account.clear();
        for &(account, factor) in factors {
            let f = if factor.is_finite() {
                factor.clamp(0.0, 1.0)
            } else {
                1.0
            };
            self.by_account.retain(|(a, _, _)| *a != account);
            self.by_account.push((account, f, self.base));
        }
        self.by_account.sort_by_key(|(a, _, _)| *a);
        self.rescale();
    }

    /// The quota factor of `account` now (its own if a scoped quota fault gave it one, else
    /// the common [`Throttle::quota_factor`]).
    pub fn account_quota_factor(&self, account: AccountId) -> f64 {
        self.account_entry(account)
            .map_or(self.quota_factor, |k| self.by_account[k].1)
    }

    /// The quota factor now (1 without a quota fault).
    pub fn quota_factor(&self) -> f64 {
        self.quota_factor
    }

    /// Calls throttled while a quota factor below 1 applied.
    pub fn throttled_under_fault(&self) -> u64 {
        self.throttled_under_fault
    }

    /// One API's limit now.
    pub fn limit(&self, api: Api) -> Limit {
        self.limits[api.index()]
    }

    /// One API's limit for `account` now (its own under a scoped quota fault).
    pub fn account_limit(&self, account: AccountId, api: Api) -> Limit {
        self.account_entry(account)
            .map_or(self.limits[api.index()], |k| {
                self.by_account[k].2[api.index()]
            })
    }
}

/// `limit` with its amounts scaled by `f` (rounded, at least 1, at most `u32::MAX`).
fn scaled(limit: Limit, f: f64) -> Limit {
    if f == 1.0 {
        return limit;
    }
    // `as` saturates a float above `u32::MAX`.
    let s = |n: u32| ((f64::from(n) * f).round() as u32).max(1);
    match limit {
        Limit::FixedWindow { max, window } => Limit::FixedWindow {
            max: s(max),
            window,
        },
        Limit::TokenBucket {
            capacity,
            refill_per_s,
        } => Limit::TokenBucket {
            capacity: s(capacity),
            refill_per_s: s(refill_per_s),
        },
        Limit::Unlimited => Limit::Unlimited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> SimTime {
        SimTime::from_ns(n * 1_000_000)
    }

    /// StartInstance 200 a minute (fixed window), StopInstance a 50-token bucket refilled at
    /// 5/s, everything else unlimited; 4 accounts.
    fn start_stop_throttle() -> Throttle {
        let mut limits = [Limit::Unlimited; Api::COUNT];
        limits[Api::StartInstance.index()] = Limit::FixedWindow {
            max: 200,
            window: SimDuration::MINUTE,
        };
        limits[Api::StopInstance.index()] = Limit::TokenBucket {
            capacity: 50,
            refill_per_s: 5,
        };
        Throttle::new(limits, Limit::Unlimited, 4).unwrap()
    }

    #[test]
    fn a_quota_factor_scales_every_limit_and_restores_them() {
        let mut t = start_stop_throttle();
        t.set_quota_factor(0.1);
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 20,
                window: SimDuration::MINUTE
            }
        );
        assert_eq!(
            t.limit(Api::StopInstance),
            Limit::TokenBucket {
                capacity: 5,
                refill_per_s: 1
            }
        );
        assert_eq!(t.limit(Api::RunInstances), Limit::Unlimited);
        let a = AccountId(0);
        let admitted = (0..100)
            .filter(|k| t.check(ms(*k), a, Api::StartInstance, 0) == Verdict::Admit)
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(t.throttled_under_fault(), 80);
        // A runbook's new limit is scaled while the fault lasts, and kept after it.
        t.set_limit(
            Api::StartInstance,
            Limit::FixedWindow {
                max: 1_000,
                window: SimDuration::MINUTE,
            },
        )
        .unwrap();
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 100,
                window: SimDuration::MINUTE
            }
        );
        t.set_quota_factor(1.0);
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 1_000,
                window: SimDuration::MINUTE
            }
        );
        assert_eq!(
            t.limit(Api::StopInstance),
            start_stop_throttle().limit(Api::StopInstance)
        );
        assert_eq!(t.check(ms(2), a, Api::StartInstance, 0), Verdict::Admit);
        assert_eq!(t.throttled_under_fault(), 80, "no fault: not counted");
    }

    /// A quota fault scoped to account 1 (×0.1) and an unscoped one (×0.5) folded into it:
    /// account 1 gets 200 × 0.05 = 10 calls a minute, account 0 gets 100; a runbook raise
    /// scales both; clearing the scoped factors gives account 1 the common limit again.
    #[test]
    fn an_account_quota_factor_scales_that_accounts_limits_only() {
        let mut limits = [Limit::Unlimited; Api::COUNT];
        limits[Api::StartInstance.index()] = Limit::FixedWindow {
            max: 200,
            window: SimDuration::MINUTE,
        };
        let mut t = Throttle::new(limits, Limit::Unlimited, 4).unwrap();
        let fixed = |max| Limit::FixedWindow {
            max,
            window: SimDuration::MINUTE,
        };
        t.set_quota_factor(0.5);
        t.set_account_quota_factors(&[(AccountId(1), 0.5 * 0.1)]);
        assert_eq!(t.account_limit(AccountId(1), Api::StartInstance), fixed(10));
        assert_eq!(
            t.account_limit(AccountId(0), Api::StartInstance),
            fixed(100)
        );
        assert_eq!(t.account_quota_factor(AccountId(1)), 0.05);
        assert_eq!(t.account_quota_factor(AccountId(2)), 0.5);
        let admitted = |t: &mut Throttle, a: u32, base_ms: u64| {
            (0..300)
                .filter(|k| {
                    t.check(ms(base_ms + k), AccountId(a), Api::StartInstance, 0) == Verdict::Admit
                })
                .count()
        };
        assert_eq!(admitted(&mut t, 1, 0), 10);
        assert_eq!(admitted(&mut t, 0, 0), 100);
        assert_eq!(t.throttled(Api::StartInstance), 290 + 200);
        assert_eq!(t.throttled_under_fault(), 490);
        t.raise_quota(4.0);
        assert_eq!(t.account_limit(AccountId(1), Api::StartInstance), fixed(40));
        assert_eq!(t.limit(Api::StartInstance), fixed(400));
        t.set_quota_factor(1.0);
        t.set_account_quota_factors(&[]);
        assert_eq!(
            t.account_limit(AccountId(1), Api::StartInstance),
            fixed(800)
        );
        assert_eq!(t.account_quota_factor(AccountId(1)), 1.0);
    }

    #[test]
    fn a_runbook_raise_composes_with_the_quota_fault_and_outlives_it() {
        let mut t = start_stop_throttle();
        t.set_quota_factor(0.1);
        t.raise_quota(20.0);
        assert_eq!(t.factor(), 0.1 * 20.0);
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 400,
                window: SimDuration::MINUTE
            }
        );
        assert_eq!(
            t.limit(Api::StopInstance),
            Limit::TokenBucket {
                capacity: 100,
                refill_per_s: 10
            }
        );
        assert_eq!(t.limit(Api::RunInstances), Limit::Unlimited);
        // The fault ends: the raise stays (configured × 20).
        t.set_quota_factor(1.0);
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 4_000,
                window: SimDuration::MINUTE
            }
        );
        // Raises compound; nonsense factors change nothing; the product is bounded.
        t.raise_quota(0.5);
        t.raise_quota(f64::NAN);
        t.raise_quota(-3.0);
        assert_eq!(t.runbook_factor(), 10.0);
        t.raise_quota(1e9);
        assert_eq!(t.runbook_factor(), 1e6);
        assert_eq!(
            t.limit(Api::StartInstance),
            Limit::FixedWindow {
                max: 200_000_000,
                window: SimDuration::MINUTE
            }
        );
    }

    #[test]
    fn fixed_window_admits_exactly_max_per_window() {
        let limits = [Limit::FixedWindow {
            max: 200,
            window: SimDuration::MINUTE,
        }; Api::COUNT];
        let mut t = Throttle::new(limits, Limit::Unlimited, 4).unwrap();
        let a = AccountId(1);
        // 1,000 calls per minute, evenly spread, for 10 minutes.
        let mut admitted_per_minute = [0u32; 10];
        for k in 0..10_000u64 {
            let now = ms(k * 60);
            if t.check(now, a, Api::StartInstance, 0) == Verdict::Admit {
                admitted_per_minute[(k / 1_000) as usize] += 1;
            }
        }
        assert_eq!(admitted_per_minute, [200; 10]);
        assert_eq!(t.throttled(Api::StartInstance), 8_000);
        // Other accounts and other APIs are independent.
        assert_eq!(
            t.check(ms(1), AccountId(2), Api::StartInstance, 0),
            Verdict::Admit
        );
        assert_eq!(
            t.check(ms(599_999), a, Api::StopInstance, 0),
            Verdict::Admit
        );
    }

    #[test]
    fn token_bucket_admits_burst_plus_refill() {
        let limits = [Limit::TokenBucket {
            capacity: 100,
            refill_per_s: 20,
        }; Api::COUNT];
        let mut t = Throttle::new(limits, Limit::Unlimited, 1).unwrap();
        let a = AccountId(0);
        // 1,000 calls per second for 60 s: admitted = burst 100 + 20/s × 60 s (minus the first instant).
        let mut admitted = 0u32;
        for k in 0..60_000u64 {
            if t.check(ms(k), a, Api::DescribeInstances, 0) == Verdict::Admit {
                admitted += 1;
            }
        }
        // Refill from t = 0 to t = 59.999 s is 1,199.98 tokens: 1,199 whole calls after the burst.
        assert_eq!(admitted, 100 + 1_199);
        // After a long idle the bucket is full again, not more.
        let mut burst = 0;
        for k in 0..500u64 {
            if t.check(
                SimTime::from_ns(3_600 * NANO + k),
                a,
                Api::DescribeInstances,
                0,
            ) == Verdict::Admit
            {
                burst += 1;
            }
        }
        assert_eq!(burst, 100);
    }

    #[test]
    fn creation_cap_counts_instances_not_calls() {
        let mut t = Throttle::ecs_defaults(2);
        let a = AccountId(0);
        // 60 RunInstances of Amount 100 in one minute: 50 fit (5,000 instances).
        let verdicts: Vec<_> = (0..60)
            .map(|k| t.check(ms(k * 100), a, Api::RunInstances, 100))
            .collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Admit).count(),
            50
        );
        assert_eq!(t.creation_capped(), 10);
        // The next minute admits again.
        assert_eq!(
            t.check(ms(60_000), a, Api::RunInstances, 100),
            Verdict::Admit
        );
    }

    #[test]
    fn ec2_defaults_follow_the_documented_buckets() {
        let mut t = Throttle::ec2_defaults(1);
        let a = AccountId(0);
        let run: usize = (0..20)
            .filter(|_| t.check(ms(0), a, Api::RunInstances, 1) == Verdict::Admit)
            .count();
        assert_eq!(run, 5, "RunInstances bucket holds 5");
        assert_eq!(
            t.check(ms(500), a, Api::RunInstances, 1),
            Verdict::Admit,
            "2 per second refill"
        );
        assert_eq!(
            t.check(ms(500), a, Api::RunInstances, 1),
            Verdict::Throttled
        );
    }

    #[test]
    fn invalid_limits_are_refused() {
        assert_eq!(
            Limit::FixedWindow {
                max: 0,
                window: SimDuration::MINUTE
            }
            .validate(),
            Err(LimitError::EmptyWindow)
        );
        assert_eq!(
            Limit::TokenBucket {
                capacity: 5,
                refill_per_s: 0
            }
            .validate(),
            Err(LimitError::EmptyBucket)
        );
    }
}
