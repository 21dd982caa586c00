//! Client behaviour on top of the traffic: retries with backoff (token reuse), polling of created
//! instances until they are ready, an optional closed loop, and the client-side statistics.
//!
//! Everything here only happens when [`ClientConfig::needs_responses`]: the gateway then echoes
//! every response to the traffic (`Msg::ClientResponse`), and the traffic tracks each request it
//! sent until its answer. Without client behaviour nothing is tracked and no message is added,
//! so default runs keep their event sequence and trace hash.
//!
//! Randomness: retries draw their jitter from the traffic stream's `client.retry` fork, polls
//! their intervals from `client.poll`, the closed loop its think times from `client.think`;
//! requests themselves (API, account, parameters) come from the traffic's own stream as before.
//!
//! Bounds (each hit is counted in [`ClientStats`], never a hang): at most
//! [`MAX_CLIENT_ATTEMPTS`] attempts per call, [`ClientRetry::max_pending_retries`] retries
//! scheduled or in flight at once, [`Polling::max_polls`] polls per creation and
//! [`Polling::max_active`] creations polled at once, [`ClientConfig::max_tracked`] requests
//! tracked at once, [`MAX_CLOSED_LOOP_CLIENTS`] closed-loop clients.

use super::{NoBackoff, OpenLoop};
use crate::api::types::{
    Api, ErrorCode, InstanceId, InstanceState, Params, Request, RequestId, Response, Status,
};
use crate::deps::Jitter;
use crate::kernel::{Dist, Outbox, SimDuration, SimRng, SimTime};
use crate::metrics::LatencyHistogram;
use crate::world::Msg;
use std::collections::BTreeMap;

/// Most attempts a client makes for one call (first attempt included).
pub const MAX_CLIENT_ATTEMPTS: u32 = 10;
/// Longest backoff cap.
pub const MAX_BACKOFF_CAP: SimDuration = SimDuration::HOUR;
/// Most polls per creation a configuration may ask for.
pub const MAX_POLLS: u32 = 10_000;
/// Most closed-loop clients.
pub const MAX_CLOSED_LOOP_CLIENTS: u32 = 100_000;

/// How long a client waits before retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// Retry at once, at the instant the failure arrives: the retry-storm case.
    None,
    /// Before retry k (k = 0 for the first retry): `min(cap, base · 2^k)`, exactly
    /// ([`Jitter::None`]) or uniform in `[0, that]` ([`Jitter::Full`]), in integer nanoseconds.
    Exponential {
        base: SimDuration,
        cap: SimDuration,
        jitter: Jitter,
    },
}

/// Why a client configuration is not valid; each variant says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("max_attempts must be 1 to {MAX_CLIENT_ATTEMPTS} (1 = never retry), got {0}")]
    Attempts(u32),
    #[error("backoff base must be greater than 0 (use Backoff::None for immediate retries)")]
    ZeroBase,
    #[error("backoff cap ({cap}) must be at least base ({base}) and at most 1h")]
    BadCap { base: SimDuration, cap: SimDuration },
    #[error("`{0}` is listed twice in retry_on")]
    DuplicateCode(&'static str),
    #[error("{what} must be at least 1")]
    ZeroBound { what: &'static str },
    #[error("max_polls must be 1 to {MAX_POLLS}, got {0}")]
    Polls(u32),
    #[error("closed-loop clients must be 1 to {MAX_CLOSED_LOOP_CLIENTS}, got {0}")]
    Clients(u32),
}

/// The client's retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRetry {
    retry_on: Vec<ErrorCode>,
    max_attempts: u32,
    backoff: Backoff,
    max_pending_retries: usize,
}

impl ClientRetry {
    /// The codes retried by default: throttling, 500, 503 and the gateway's timeout (504).
    pub const DEFAULT_CODES: [ErrorCode; 4] = [
        ErrorCode::Throttling,
        ErrorCode::ServiceUnavailable,
        ErrorCode::InternalError,
        ErrorCode::DeadlineExceeded,
    ];

    /// Default bound on retries scheduled or in flight at once.
    pub const DEFAULT_MAX_PENDING_RETRIES: usize = 100_000;

    /// `max_attempts` counts the first attempt (1 = never retry, at most
    /// [`MAX_CLIENT_ATTEMPTS`]); `retry_on` lists the codes worth another attempt.
    pub fn new(
        max_attempts: u32,
        backoff: Backoff,
        retry_on: &[ErrorCode],
    ) -> Result<ClientRetry, ClientError> {
        if !(1..=MAX_CLIENT_ATTEMPTS).contains(&max_attempts) {
            return Err(ClientError::Attempts(max_attempts));
        }
        if let Backoff::Exponential { base, cap, .. } = backoff {
            if base.is_zero() {
                return Err(ClientError::ZeroBase);
            }
            if cap < base || cap > MAX_BACKOFF_CAP {
                return Err(ClientError::BadCap { base, cap });
            }
        }
        for (i, c) in retry_on.iter().enumerate() {
            if retry_on[..i].contains(c) {
                return Err(ClientError::DuplicateCode(c.name()));
            }
        }
        Ok(ClientRetry {
            retry_on: retry_on.to_vec(),
            max_attempts,
            backoff,
            max_pending_retries: Self::DEFAULT_MAX_PENDING_RETRIES,
        })
    }

    /// Bounds the retries scheduled or in flight at once (≥ 1); a retry beyond it is not sent
    /// and counted in [`ClientStats::retry_limit_hits`].
    pub fn with_max_pending_retries(mut self, n: usize) -> Result<ClientRetry, ClientError> {
        if n == 0 {
            return Err(ClientError::ZeroBound {
                what: "max_pending_retries",
            });
        }
        self.max_pending_retries = n;
        Ok(self)
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
    pub fn retry_codes(&self) -> &[ErrorCode] {
        &self.retry_on
    }
    pub fn max_pending_retries(&self) -> usize {
        self.max_pending_retries
    }

    /// Whether a response with `status` is retried at all (ignoring the attempt budget).
    pub fn retries(&self, status: Status) -> bool {
        matches!(status, Status::Err(c) if self.retry_on.contains(&c))
    }

    /// The backoff ceiling before retry `k` (0-based): `min(cap, base · 2^k)`; zero without
    /// backoff.
    pub fn ceiling(&self, k: u32) -> SimDuration {
        match self.backoff {
            Backoff::None => SimDuration::ZERO,
            Backoff::Exponential { base, cap, .. } => {
                let factor = 1u64.checked_shl(k).unwrap_or(u64::MAX);
                let ns = base.as_ns().saturating_mul(factor).min(cap.as_ns());
                SimDuration::from_ns(ns)
            }
        }
    }

    /// The wait before retry `k` (0-based), drawing from `rng` only under full jitter.
    pub fn delay(&self, k: u32, rng: &mut SimRng) -> SimDuration {
        let ceiling = self.ceiling(k);
        match self.backoff {
            Backoff::Exponential {
                jitter: Jitter::Full,
                ..
            } => SimDuration::from_ns(rng.below(ceiling.as_ns().saturating_add(1).max(1))),
            _ => ceiling,
        }
    }
}

/// Polling of created instances: after a successful RunInstances (CreateInstance), the client
/// calls DescribeInstanceStatus on the created instance — the last of the returned range — every
/// `interval` until it reports Running (Stopped for CreateInstance) or `max_polls` polls.
#[derive(Clone, Debug, PartialEq)]
pub struct Polling {
    /// Time between polls, seconds (default uniform(1 s, 2 s)).
    pub interval: Dist,
    /// Polls per creation at most (default 60).
    pub max_polls: u32,
    /// Creations polled at once at most (default 100,000); a creation beyond it is not polled
    /// and counted in [`ClientStats::poll_limit_hits`].
    pub max_active: usize,
}

impl Default for Polling {
    fn default() -> Polling {
        Polling {
            interval: Dist::uniform(1.0, 2.0).expect("valid"),
            max_polls: 60,
            max_active: 100_000,
        }
    }
}

impl Polling {
    pub fn validate(&self) -> Result<(), ClientError> {
        if !(1..=MAX_POLLS).contains(&self.max_polls) {
            return Err(ClientError::Polls(self.max_polls));
        }
        if self.max_active == 0 {
            return Err(ClientError::ZeroBound {
                what: "polling max_active",
            });
        }
        Ok(())
    }
}

/// Closed-loop traffic: `clients` clients each send a request, wait for its final answer
/// (retries included), think for `think`, and send the next. Requests are generated with the
/// open-loop configuration's API mix, accounts and parameters; its inter-arrival and rate
/// profile are not used. A request's intended start is its actual send, so latency is measured
/// from the send — which is exactly what hides a stall (coordinated omission).
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedLoop {
    pub clients: u32,
    /// Think time between an answer and the next send, seconds; each client's first send is
    /// one think time after the start.
    pub think: Dist,
}

/// Client behaviour (see [`crate::world::Topology::with_client`]). Every part is optional; with
/// none the traffic is the plain open loop.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    pub retry: Option<ClientRetry>,
    pub polling: Option<Polling>,
    pub closed_loop: Option<ClosedLoop>,
    /// Requests tracked (awaiting an answer) at once at most (default 1,000,000). A request
    /// beyond it is sent untracked — no retry, no poll — and counted in
    /// [`ClientStats::untracked`]; closed-loop requests are always tracked (at most one per
    /// client beyond this bound).
    pub max_tracked: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            retry: None,
            polling: None,
            closed_loop: None,
            max_tracked: 1_000_000,
        }
    }
}

impl ClientConfig {
    /// Whether any part needs the responses (otherwise the client is the plain open loop).
    pub fn needs_responses(&self) -> bool {
        self.retry.is_some() || self.polling.is_some() || self.closed_loop.is_some()
    }

    pub fn validate(&self) -> Result<(), ClientError> {
        if let Some(p) = &self.polling {
            p.validate()?;
        }
        if let Some(c) = &self.closed_loop {
            if !(1..=MAX_CLOSED_LOOP_CLIENTS).contains(&c.clients) {
                return Err(ClientError::Clients(c.clients));
            }
        }
        if self.max_tracked == 0 {
            return Err(ClientError::ZeroBound {
                what: "max_tracked",
            });
        }
        Ok(())
    }
}

/// What the client saw, from its side.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    /// Calls started (first attempts; polls excluded).
    pub first_attempts: u64,
    /// Call attempts sent (first attempts + retries; polls excluded).
    pub attempts: u64,
    /// Retries sent, by the code that caused them (index: position in `ErrorCode::ALL`).
    pub retries: [u64; ErrorCode::ALL.len()],
    /// Calls that ended on a retryable error with no attempt left.
    pub give_ups: u64,
    /// Retries not sent because [`ClientRetry::max_pending_retries`] were pending (the call
    /// ends with its last error).
    pub retry_limit_hits: u64,
    /// Calls whose final answer was OK / an error.
    pub calls_ok: u64,
    pub calls_failed: u64,
    /// Finished calls by the number of attempts they took (index = attempts, 1..=10).
    pub calls_by_attempts: [u64; MAX_CLIENT_ATTEMPTS as usize + 1],
    /// From the first attempt's intended start to the final answer, ns (every finished call).
    pub end_to_end: LatencyHistogram,
    /// Backoff waits drawn before retries, ns.
    pub backoff: LatencyHistogram,
    /// Poll requests sent and answered.
    pub polls: u64,
    /// Creations polled, and those whose polls saw the target state.
    pub polled_creations: u64,
    pub reached: u64,
    /// Creations whose polls ran out ([`Polling::max_polls`]) before the target state.
    pub poll_give_ups: u64,
    /// Creations not polled because [`Polling::max_active`] were being polled.
    pub poll_limit_hits: u64,
    /// RunInstances: from the call's first intended start to the first poll that saw Running.
    pub time_to_running: LatencyHistogram,
    /// CreateInstance: the same, to Stopped.
    pub time_to_stopped: LatencyHistogram,
    /// Requests sent untracked ([`ClientConfig::max_tracked`] reached).
    pub untracked: u64,
    /// Most requests tracked at once.
    pub max_tracked_seen: usize,
}

impl ClientStats {
    /// Attempts per call: attempts / first attempts (1 without retries).
    pub fn retry_amplification(&self) -> f64 {
        if self.first_attempts == 0 {
            1.0
        } else {
            self.attempts as f64 / self.first_attempts as f64
        }
    }
    /// Retries caused by `code`.
    pub fn retries_for(&self, code: ErrorCode) -> u64 {
        let i = ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .expect("every code is listed");
        self.retries[i]
    }
    pub fn total_retries(&self) -> u64 {
        self.retries.iter().sum()
    }
}

/// A tracked request: a call attempt or a poll.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    req: Request,
    /// The intended start of the call's first attempt (of the creation, for a poll).
    first: SimTime,
    kind: Kind,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Call {
        /// 0-based attempt number.
        attempt: u32,
        /// Ending this call lets a closed-loop client send its next.
        chained: bool,
    },
    Poll {
        polls: u32,
        target: InstanceState,
    },
}

/// The client's state inside the traffic component.
pub(crate) struct ClientState {
    cfg: ClientConfig,
    retry_rng: SimRng,
    poll_rng: SimRng,
    think_rng: SimRng,
    /// Requests awaiting an answer, by request id.
    tracked: BTreeMap<u64, Tracked>,
    pending_retries: usize,
    active_polls: usize,
    stats: ClientStats,
}

impl ClientState {
    pub(crate) fn new(cfg: ClientConfig, traffic_rng: &SimRng) -> ClientState {
        ClientState {
            cfg,
            retry_rng: traffic_rng.fork("client.retry"),
            poll_rng: traffic_rng.fork("client.poll"),
            think_rng: traffic_rng.fork("client.think"),
            tracked: BTreeMap::new(),
            pending_retries: 0,
            active_polls: 0,
            stats: ClientStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub(crate) fn closed_loop(&self) -> Option<&ClosedLoop> {
        self.cfg.closed_loop.as_ref()
    }

    fn track(&mut self, t: Tracked, force: bool) -> bool {
        if !force && self.tracked.len() >= self.cfg.max_tracked {
            self.stats.untracked += 1;
            return false;
        }
        self.tracked.insert(t.req.id.0, t);
        self.stats.max_tracked_seen = self.stats.max_tracked_seen.max(self.tracked.len());
        true
    }
}

impl OpenLoop {
    /// Sends the first attempt of a call at its intended start, tracking it when the client
    /// needs answers. `chained`: its end triggers a closed-loop client's next call.
    #[inline]
    pub(super) fn send_call(&mut self, req: Request, chained: bool, out: &mut Outbox<'_, Msg>) {
        if let Some(c) = self.client.as_mut() {
            c.stats.first_attempts += 1;
            c.stats.attempts += 1;
            c.track(
                Tracked {
                    req,
                    first: req.intended,
                    kind: Kind::Call {
                        attempt: 0,
                        chained,
                    },
                },
                chained,
            );
        }
        out.send_at(self.gateway, req.intended, Msg::Request(req));
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Closed loop: starts every client, each one think time after now.
    pub(super) fn start_closed_loop(&mut self, out: &mut Outbox<'_, Msg>) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        let Some(cl) = c.cfg.closed_loop.clone() else {
            return;
        };
        for _ in 0..cl.clients {
            let Some(c) = self.client.as_mut() else {
                return;
            };
            let think = cl.think.sample_duration(&mut c.think_rng);
            self.next_closed(out.now().saturating_add(think), out);
        }
    }

    /// A closed-loop client's next call at `at` (none after the end of traffic).
    fn next_closed(&mut self, at: SimTime, out: &mut Outbox<'_, Msg>) {
        if at > self.cfg.until {
            return;
        }
        self.emit_chained(at, out);
    }

    /// Every response, when the client needs them (`Msg::ClientResponse`).
    pub fn on_response(&mut self, resp: Response, out: &mut Outbox<'_, Msg>) {
        if resp.instances.is_some() {
            self.on_created(resp);
        }
        let Some(c) = self.client.as_mut() else {
            return;
        };
        let Some(t) = c.tracked.remove(&resp.id.0) else {
            return;
        };
        match t.kind {
            Kind::Call { attempt, chained } => self.on_call_answer(t, attempt, chained, resp, out),
            Kind::Poll { polls, target } => self.on_poll_answer(t, polls, target, resp, out),
        }
    }

    fn on_call_answer(
        &mut self,
        t: Tracked,
        attempt: u32,
        chained: bool,
        resp: Response,
        out: &mut Outbox<'_, Msg>,
    ) {
        let now = out.now();
        let timeout = self.cfg.timeout;
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if attempt > 0 {
            c.pending_retries -= 1;
        }
        if let (Some(policy), Status::Err(code)) = (&c.cfg.retry, resp.status) {
            if policy.retries(resp.status) {
                if attempt + 1 < policy.max_attempts() {
                    if c.pending_retries < policy.max_pending_retries() {
                        // A client-without-backoff fault sends the retry at once (see
                        // `NoBackoff` for what is drawn).
                        let delay = match self.faults.no_backoff_at(now, t.req.account) {
                            NoBackoff::No => policy.delay(attempt, &mut c.retry_rng),
                            NoBackoff::Everyone => {
                                self.faults.immediate_retries += 1;
                                SimDuration::ZERO
                            }
                            NoBackoff::Account => {
                                let _ = policy.delay(attempt, &mut c.retry_rng);
                                self.faults.immediate_retries += 1;
                                SimDuration::ZERO
                            }
                        };
                        c.stats.backoff.record(delay.as_ns());
                        let at = now.saturating_add(delay);
                        let id = self.fresh_id();
                        let retry = Request {
                            id,
                            intended: at,
                            deadline: at.saturating_add(timeout),
                            ..t.req
                        };
                        let c = self.client.as_mut().expect("checked");
                        let i = ErrorCode::ALL
                            .iter()
                            .position(|x| *x == code)
                            .expect("every code is listed");
                        c.stats.retries[i] += 1;
                        c.stats.attempts += 1;
                        c.pending_retries += 1;
                        // Retries of a tracked call are always tracked (bounded by the pending
                        // retries).
                        c.track(
                            Tracked {
                                req: retry,
                                first: t.first,
                                kind: Kind::Call {
                                    attempt: attempt + 1,
                                    chained,
                                },
                            },
                            true,
                        );
                        out.send_at(self.gateway, at, Msg::Request(retry));
                        return;
                    }
                    c.stats.retry_limit_hits += 1;
                } else {
                    c.stats.give_ups += 1;
                }
            }
        }
        // The call's final answer.
        let c = self.client.as_mut().expect("checked");
        c.stats
            .end_to_end
            .record(now.saturating_since(t.first).as_ns());
        c.stats.calls_by_attempts[(attempt + 1).min(MAX_CLIENT_ATTEMPTS) as usize] += 1;
        if resp.status == Status::Ok {
            c.stats.calls_ok += 1;
        } else {
            c.stats.calls_failed += 1;
        }
        if let (Status::Ok, Some(range), Some(_)) = (resp.status, resp.instances, &c.cfg.polling) {
            let target = match resp.api {
                Api::RunInstances => Some(InstanceState::Running),
                Api::CreateInstance => Some(InstanceState::Stopped),
                _ => None,
            };
            if let (Some(target), Some(last)) = (target, range.iter().last()) {
                self.start_polling(t, last, target, out);
            }
        }
        if chained {
            let Some(c) = self.client.as_mut() else {
                return;
            };
            if let Some(cl) = &c.cfg.closed_loop {
                let think = cl.think.sample_duration(&mut c.think_rng);
                self.next_closed(now.saturating_add(think), out);
            }
        }
    }

    fn start_polling(
        &mut self,
        call: Tracked,
        instance: InstanceId,
        target: InstanceState,
        out: &mut Outbox<'_, Msg>,
    ) {
        let c = self.client.as_mut().expect("polling needs the client");
        let max_active = c.cfg.polling.as_ref().map_or(0, |p| p.max_active);
        if c.active_polls >= max_active {
            c.stats.poll_limit_hits += 1;
            return;
        }
        c.active_polls += 1;
        c.stats.polled_creations += 1;
        let poll = Request {
            id: RequestId(0),
            api: Api::DescribeInstanceStatus,
            account: call.req.account,
            intended: call.first,
            deadline: call.first,
            client_token: 0,
            params: Params {
                instance: Some(instance),
                ..Params::single(call.req.params.instance_type)
            },
        };
        self.send_poll(
            Tracked {
                req: poll,
                first: call.first,
                kind: Kind::Poll { polls: 0, target },
            },
            out,
        );
    }

    /// Sends the next poll of `t` one interval from now.
    fn send_poll(&mut self, t: Tracked, out: &mut Outbox<'_, Msg>) {
        let now = out.now();
        let timeout = self.cfg.timeout;
        let id = self.fresh_id();
        let c = self.client.as_mut().expect("polling needs the client");
        let Some(p) = &c.cfg.polling else {
            return;
        };
        let at = now.saturating_add(p.interval.sample_duration(&mut c.poll_rng));
        let req = Request {
            id,
            intended: at,
            deadline: at.saturating_add(timeout),
            ..t.req
        };
        let Kind::Poll { polls, target } = t.kind else {
            unreachable!("only polls are polled")
        };
        c.stats.polls += 1;
        c.track(
            Tracked {
                req,
                first: t.first,
                kind: Kind::Poll {
                    polls: polls + 1,
                    target,
                },
            },
            true,
        );
        out.send_at(self.gateway, at, Msg::Request(req));
    }

    fn on_poll_answer(
        &mut self,
        t: Tracked,
        polls: u32,
        target: InstanceState,
        resp: Response,
        out: &mut Outbox<'_, Msg>,
    ) {
        let now = out.now();
        let c = self.client.as_mut().expect("polling needs the client");
        let max_polls = c.cfg.polling.as_ref().map_or(0, |p| p.max_polls);
        if resp.status == Status::Ok && resp.state == Some(target) {
            c.active_polls -= 1;
            c.stats.reached += 1;
            let since = now.saturating_since(t.first).as_ns();
            match target {
                InstanceState::Running => c.stats.time_to_running.record(since),
                _ => c.stats.time_to_stopped.record(since),
            }
        } else if polls >= max_polls {
            c.active_polls -= 1;
            c.stats.poll_give_ups += 1;
        } else {
            self.send_poll(t, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;

    #[test]
    fn backoff_ceilings_and_full_jitter_bounds() {
        let p = ClientRetry::new(
            5,
            Backoff::Exponential {
                base: SimDuration::from_ms(100),
                cap: SimDuration::from_ms(500),
                jitter: Jitter::Full,
            },
            &ClientRetry::DEFAULT_CODES,
        )
        .unwrap();
        let ceilings: Vec<u64> = (0..5).map(|k| p.ceiling(k).as_ns() / 1_000_000).collect();
        assert_eq!(ceilings, [100, 200, 400, 500, 500]);
        assert_eq!(p.ceiling(200), SimDuration::from_ms(500));
        let mut rng = RootSeed::new(1).fork("t");
        for k in 0..5 {
            for _ in 0..1_000 {
                assert!(p.delay(k, &mut rng) <= p.ceiling(k));
            }
        }
        let none = ClientRetry::new(3, Backoff::None, &[ErrorCode::Throttling]).unwrap();
        assert_eq!(none.delay(2, &mut rng), SimDuration::ZERO);
        assert!(none.retries(Status::Err(ErrorCode::Throttling)));
        assert!(!none.retries(Status::Err(ErrorCode::NoStock)));
        assert!(!none.retries(Status::Ok));
        assert_eq!(
            ClientRetry::new(11, Backoff::None, &[]),
            Err(ClientError::Attempts(11))
        );
        assert!(
            ClientRetry::new(
                2,
                Backoff::Exponential {
                    base: SimDuration::from_secs(2),
                    cap: SimDuration::from_secs(1),
                    jitter: Jitter::None
                },
                &[]
            )
            .is_err()
        );
        assert!(
            ClientRetry::new(2, Backoff::None, &[ErrorCode::Throttling; 2]).is_err(),
            "duplicates"
        );
    }
}
