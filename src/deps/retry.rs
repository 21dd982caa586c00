//! Caller-side retry policy (pure): which outcomes are worth another attempt (domain §4: only
//! 500 `InternalError`, 503 `ServiceUnavailable`, throttling and timeouts by default, never other
//! 4xx) and capped exponential backoff with full jitter,
//! `sleep = uniform(0, min(cap, base · 2^attempt))`, exactly, in integer nanoseconds.
//!
//! Attempts are numbered from 0. After attempt `k` fails, [`RetryPolicy::should_retry`]`(k, ..)`
//! says whether attempt `k + 1` happens and [`RetryPolicy::backoff`]`(k, ..)` how long to wait
//! before it. With `max_attempts = 3`: attempt 0, wait U(0, base), attempt 1, wait U(0, 2·base),
//! attempt 2, give up.

use crate::api::types::ErrorCode;
use crate::kernel::{SimDuration, SimRng};
use std::fmt;

/// How the backoff ceiling is randomised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// uniform(0, ceiling): spreads retries of synchronised callers apart.
    Full,
    /// Exactly the ceiling.
    None,
}

/// How one attempt ended, as the caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallOutcome {
    Ok,
    Error(ErrorCode),
    /// No reply before the caller's deadline.
    Timeout,
}

/// An outcome a policy retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetryOn {
    Code(ErrorCode),
    Timeout,
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::Code(c) => f.write_str(c.name()),
            RetryOn::Timeout => f.write_str("timeout"),
        }
    }
}

/// Codes that may be retried at all (domain §4): transient server-side failures, throttling, a
/// gateway timeout, and the two create-flow conflicts that clear by themselves.
pub const RETRYABLE_CODES: [ErrorCode; 6] = [
    ErrorCode::InternalError,
    ErrorCode::ServiceUnavailable,
    ErrorCode::Throttling,
    ErrorCode::DeadlineExceeded,
    ErrorCode::LastTokenProcessing,
    ErrorCode::IncorrectInstanceStatus,
];

/// Most attempts a policy may make (3 attempts at each of 5 layers is already 243×).
pub const MAX_ATTEMPTS: u32 = 20;
/// Longest backoff ceiling.
pub const MAX_CAP: SimDuration = SimDuration::HOUR;

/// Why a retry policy is not valid; each variant says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    #[error("max_attempts must be 1 to {MAX_ATTEMPTS} (1 = never retry), got {0}")]
    Attempts(u32),
    #[error("base must be greater than 0 when retries are allowed")]
    ZeroBase,
    #[error("cap ({cap}) must be at least base ({base})")]
    CapBelowBase { base: SimDuration, cap: SimDuration },
    #[error("cap must be at most {MAX_CAP}, got {0}")]
    CapTooLong(SimDuration),
    #[error(
        "never retry `{0}`: the same request fails the same way again; retry only InternalError, ServiceUnavailable, Throttling, DeadlineExceeded, timeouts, and in create flows LastTokenProcessing and IncorrectInstanceStatus"
    )]
    NotRetryable(&'static str),
    #[error("`{0}` is listed twice in retry_on")]
    Duplicate(RetryOn),
    #[error(
        "unknown retry_on entry `{0}`: use an error code such as \"InternalError\" or \"timeout\""
    )]
    UnknownCode(String),
}

/// A validated retry policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawRetryPolicy")]
pub struct RetryPolicy {
    max_attempts: u32,
    base: SimDuration,
    cap: SimDuration,
    jitter: Jitter,
    retry_on: Vec<ErrorCode>,
    retry_timeouts: bool,
}

impl Default for RetryPolicy {
    /// 3 attempts, base 100 ms, cap 2 s *(assumed)*, full jitter; retries InternalError,
    /// ServiceUnavailable, Throttling and timeouts (domain §4).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base: SimDuration::from_ms(100),
            cap: SimDuration::from_secs(2),
            jitter: Jitter::Full,
            retry_on: vec![
                ErrorCode::InternalError,
                ErrorCode::ServiceUnavailable,
                ErrorCode::Throttling,
            ],
            retry_timeouts: true,
        }
    }
}

impl RetryPolicy {
    pub fn new(
        max_attempts: u32,
        base: SimDuration,
        cap: SimDuration,
        jitter: Jitter,
        retry_on: &[RetryOn],
    ) -> Result<RetryPolicy, RetryPolicyError> {
        if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(RetryPolicyError::Attempts(max_attempts));
        }
        if base.is_zero() && max_attempts > 1 {
            return Err(RetryPolicyError::ZeroBase);
        }
        if cap < base {
            return Err(RetryPolicyError::CapBelowBase { base, cap });
        }
        if cap > MAX_CAP {
            return Err(RetryPolicyError::CapTooLong(cap));
        }
        let mut codes = Vec::new();
        let mut retry_timeouts = false;
        for (i, r) in retry_on.iter().enumerate() {
            if retry_on[..i].contains(r) {
                return Err(RetryPolicyError::Duplicate(*r));
            }
            match *r {
                RetryOn::Timeout => retry_timeouts = true,
                RetryOn::Code(c) if RETRYABLE_CODES.contains(&c) => codes.push(c),
                RetryOn::Code(c) => return Err(RetryPolicyError::NotRetryable(c.name())),
            }
        }
        Ok(RetryPolicy {
            max_attempts,
            base,
            cap,
            jitter,
            retry_on: codes,
            retry_timeouts,
        })
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    pub fn base(&self) -> SimDuration {
        self.base
    }
    pub fn cap(&self) -> SimDuration {
        self.cap
    }
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }
    /// The error codes retried.
    pub fn retry_codes(&self) -> &[ErrorCode] {
        &self.retry_on
    }
    pub fn retries_timeouts(&self) -> bool {
        self.retry_timeouts
    }

    /// Whether the policy retries `outcome` at all (ignoring the attempt budget).
    pub fn retries(&self, outcome: CallOutcome) -> bool {
        match outcome {
            CallOutcome::Ok => false,
            CallOutcome::Timeout => self.retry_timeouts,
            CallOutcome::Error(c) => self.retry_on.contains(&c),
        }
    }

    /// After attempt `attempt` (0-based) ended with `outcome`: whether to make another.
    pub fn should_retry(&self, attempt: u32, outcome: CallOutcome) -> bool {
        self.retries(outcome) && attempt.saturating_add(1) < self.max_attempts
    }

    /// The backoff ceiling after attempt `attempt`: min(cap, base · 2^attempt).
    pub fn ceiling(&self, attempt: u32) -> SimDuration {
        if attempt >= 64 {
            return self.cap;
        }
        let grown = u128::from(self.base.as_ns()) << attempt;
        let cap = self.cap.as_ns();
        SimDuration::from_ns(if grown >= u128::from(cap) {
            cap
        } else {
            grown as u64
        })
    }

    /// The wait after attempt `attempt` fails: uniform over the integer nanoseconds
    /// [0, ceiling] with full jitter (one draw), exactly the ceiling without (no draw).
    pub fn backoff(&self, attempt: u32, rng: &mut SimRng) -> SimDuration {
        let ceiling = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => ceiling,
            // ceiling <= MAX_CAP, so + 1 cannot overflow.
            Jitter::Full => SimDuration::from_ns(rng.below(ceiling.as_ns() + 1)),
        }
    }
}

/// The table form in scenario and mock files:
/// `{ max_attempts = 3, base = "100ms", cap = "2s", jitter = "full", retry_on = ["InternalError", "timeout"] }`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryPolicy {
    max_attempts: u32,
    base: SimDuration,
    cap: SimDuration,
    #[serde(default = "full")]
    jitter: Jitter,
    retry_on: Vec<String>,
}

fn full() -> Jitter {
    Jitter::Full
}

impl TryFrom<RawRetryPolicy> for RetryPolicy {
    type Error = RetryPolicyError;
    fn try_from(raw: RawRetryPolicy) -> Result<RetryPolicy, RetryPolicyError> {
        let retry_on = raw
            .retry_on
            .iter()
            .map(|s| match s.as_str() {
                "timeout" => Ok(RetryOn::Timeout),
                "NoStock" => Ok(RetryOn::Code(ErrorCode::NoStock)),
                _ => ErrorCode::from_name(s)
                    .map(RetryOn::Code)
                    .ok_or_else(|| RetryPolicyError::UnknownCode(s.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        RetryPolicy::new(raw.max_attempts, raw.base, raw.cap, raw.jitter, &retry_on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;

    fn ms(n: u64) -> SimDuration {
        SimDuration::from_ms(n)
    }

    #[test]
    fn default_retries_only_transient_failures_and_timeouts() {
        let p = RetryPolicy::default();
        for c in [
            ErrorCode::InternalError,
            ErrorCode::ServiceUnavailable,
            ErrorCode::Throttling,
        ] {
            assert!(p.should_retry(0, CallOutcome::Error(c)), "{c:?}");
        }
        assert!(p.should_retry(0, CallOutcome::Timeout));
        for c in [
            ErrorCode::InvalidParameter,
            ErrorCode::IdempotentParameterMismatch,
            ErrorCode::NoStock,
            ErrorCode::QuotaExceed,
            ErrorCode::InstanceNotFound,
            ErrorCode::LastTokenProcessing,
            ErrorCode::IncorrectInstanceStatus,
        ] {
            assert!(!p.should_retry(0, CallOutcome::Error(c)), "{c:?}");
        }
        assert!(!p.should_retry(0, CallOutcome::Ok));
        // 3 attempts: after attempt 0 and 1 retry, after attempt 2 give up.
        assert!(p.should_retry(1, CallOutcome::Timeout));
        assert!(!p.should_retry(2, CallOutcome::Timeout));
        assert!(!p.should_retry(u32::MAX, CallOutcome::Timeout));
    }

    #[test]
    fn validation_refuses_bad_policies() {
        use RetryPolicyError::*;
        let ok = [RetryOn::Timeout];
        assert_eq!(
            RetryPolicy::new(0, ms(1), ms(2), Jitter::Full, &ok),
            Err(Attempts(0))
        );
        assert_eq!(
            RetryPolicy::new(21, ms(1), ms(2), Jitter::Full, &ok),
            Err(Attempts(21))
        );
        assert_eq!(
            RetryPolicy::new(3, SimDuration::ZERO, ms(2), Jitter::Full, &ok),
            Err(ZeroBase)
        );
        assert!(matches!(
            RetryPolicy::new(3, ms(5), ms(2), Jitter::Full, &ok),
            Err(CapBelowBase { .. })
        ));
        assert!(matches!(
            RetryPolicy::new(3, ms(5), SimDuration::from_secs(7200), Jitter::Full, &ok),
            Err(CapTooLong(_))
        ));
        assert_eq!(
            RetryPolicy::new(
                3,
                ms(5),
                ms(50),
                Jitter::Full,
                &[RetryOn::Code(ErrorCode::InvalidParameter)]
            ),
            Err(NotRetryable("InvalidParameter"))
        );
        assert_eq!(
            RetryPolicy::new(
                3,
                ms(5),
                ms(50),
                Jitter::Full,
                &[RetryOn::Timeout, RetryOn::Timeout]
            ),
            Err(Duplicate(RetryOn::Timeout))
        );
        // A create-flow policy may retry the documented conflicts.
        let create = RetryPolicy::new(
            4,
            ms(5),
            ms(50),
            Jitter::None,
            &[
                RetryOn::Code(ErrorCode::LastTokenProcessing),
                RetryOn::Code(ErrorCode::IncorrectInstanceStatus),
            ],
        )
        .unwrap();
        assert!(create.should_retry(0, CallOutcome::Error(ErrorCode::LastTokenProcessing)));
        assert!(!create.should_retry(0, CallOutcome::Timeout));
    }

    #[test]
    fn reads_the_table_form() {
        let p: RetryPolicy = toml::from_str(
            "max_attempts = 4\nbase = \"50ms\"\ncap = \"1s\"\nretry_on = [\"InternalError\", \"timeout\"]\n",
        )
        .unwrap();
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.jitter(), Jitter::Full);
        assert_eq!(p.retry_codes(), &[ErrorCode::InternalError]);
        assert!(p.retries_timeouts());
        let e = toml::from_str::<RetryPolicy>(
            "max_attempts = 4\nbase = \"50ms\"\ncap = \"1s\"\nretry_on = [\"OperationDenied.NoStock\"]\n",
        )
        .unwrap_err();
        assert!(
            e.message()
                .contains("never retry `OperationDenied.NoStock`"),
            "{e}"
        );
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap_exactly() {
        let p = RetryPolicy::new(10, ms(100), ms(1000), Jitter::None, &[RetryOn::Timeout]).unwrap();
        let mut rng = RootSeed::new(1).fork("unused");
        let got: Vec<u64> = (0..6)
            .map(|k| p.backoff(k, &mut rng).as_ns() / 1_000_000)
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.ceiling(63), ms(1000));
        assert_eq!(p.ceiling(64), ms(1000));
        assert_eq!(p.ceiling(u32::MAX), ms(1000));
    }

    #[test]
    fn full_jitter_is_bounded_with_mean_half_the_ceiling() {
        let p = RetryPolicy::new(20, ms(10), ms(300), Jitter::Full, &[RetryOn::Timeout]).unwrap();
        let mut rng = RootSeed::new(42).fork("backoff");
        let n = 1_000_000u64;
        for k in [0u32, 1, 3, 5, 12] {
            let ceiling = p.ceiling(k).as_ns();
            assert_eq!(ceiling, (10_000_000u64 << k).min(300_000_000));
            let (mut sum, mut lo, mut hi) = (0u128, u64::MAX, 0u64);
            for _ in 0..n {
                let b = p.backoff(k, &mut rng).as_ns();
                assert!(b <= ceiling);
                sum += u128::from(b);
                lo = lo.min(b);
                hi = hi.max(b);
            }
            let mean = sum as f64 / n as f64;
            let want = ceiling as f64 / 2.0;
            assert!(
                (mean / want - 1.0).abs() < 0.01,
                "k={k}: mean {mean} vs {want}"
            );
            // The draws cover the whole range.
            assert!(
                lo < ceiling / 1000 && hi > ceiling - ceiling / 1000,
                "k={k}: [{lo}, {hi}]"
            );
        }
    }
}
