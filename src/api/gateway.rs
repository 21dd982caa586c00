//! The gateway in front of the API nodes: throttling and quotas, load balancing, the client's
//! deadline, and the client-side measurement of every response (latency from the intended start
//! time, status per API).
//!
//! # Crashed nodes
//!
//! A node that crashes is not known to be down at once: the gateway's health check notices it
//! [`Gateway::health_check_detection`] later *(assumed default: 1 s, an active check every
//! 500 ms with an unhealthy threshold of 2)*. Until then the balancer still routes requests to
//! it, and each one fails fast with 502 `BadGateway` (the node refuses the connection). Once
//! detected, the node gets no new requests; when it restarts it is routed to again at once.

use super::lb::{Balancer, LbPolicy};
use super::throttle::{Throttle, Verdict};
use super::types::{AccountId, Api, ErrorCode, Request, Response, Status};
use crate::kernel::{ComponentId, Handle, Outbox, SimDuration, SimRng, SimTime, Slab};
use crate::metrics::series::ResponseWindow;
use crate::metrics::{CounterId, HistogramId, Registry};
use crate::world::Msg;
use std::collections::VecDeque;

/// Number of distinct statuses counted per API (OK + every error code).
pub const STATUSES: usize = ErrorCode::ALL.len() + 1;

/// Whether `ErrorCode::ALL` lists the codes in declaration order, so a code's discriminant is
/// its position there (checked at compile time below).
const fn codes_in_declaration_order() -> bool {
    let mut i = 0;
    while i < ErrorCode::ALL.len() {
        if ErrorCode::ALL[i] as usize != i {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(
    codes_in_declaration_order(),
    "status_index needs ErrorCode::ALL in declaration order"
);

/// Dense index of a status in per-API counter arrays: 0 for OK, then `ErrorCode::ALL` order.
#[inline]
pub fn status_index(s: Status) -> usize {
    match s {
        Status::Ok => 0,
        Status::Err(c) => 1 + c as usize,
    }
}

/// The status at a dense index.
pub fn status_at(i: usize) -> Status {
    if i == 0 {
        Status::Ok
    } else {
        Status::Err(ErrorCode::ALL[i - 1])
    }
}

/// Per-API metric ids, registered once.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub latency: [HistogramId; Api::COUNT],
    pub status: [[CounterId; STATUSES]; Api::COUNT],
    pub late_responses: CounterId,
}

impl ApiMetrics {
    pub fn register(reg: &mut Registry) -> ApiMetrics {
        ApiMetrics {
            latency: Api::ALL.map(|a| reg.histogram(&format!("api.{a}.latency_ns"))),
            status: Api::ALL.map(|a| {
                std::array::from_fn(|i| {
                    reg.counter(&format!("api.{a}.status.{}", status_at(i).name()))
                })
            }),
            late_responses: reg.counter("gateway.late_responses"),
        }
    }
}

struct InFlight {
    req: Request,
    node: u16,
}

/// What one account's requests got at the gateway (every answer: served, rejected, expired),
/// to tell one tenant's experience from another's (e.g. under an account-scoped fault).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountOutcomes {
    pub answered: u64,
    pub ok: u64,
    /// 4XX answers (throttling included).
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Of `status_4xx`: `Throttling`.
    pub throttled: u64,
    /// Sum of the answers' latencies from their intended starts, ns (saturating).
    pub latency_ns_sum: u64,
}

impl AccountOutcomes {
    /// Adds `other` field by field.
    pub fn merge(&mut self, other: &AccountOutcomes) {
        self.answered += other.answered;
        self.ok += other.ok;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.throttled += other.throttled;
        self.latency_ns_sum = self.latency_ns_sum.saturating_add(other.latency_ns_sum);
    }
    /// The share of answers that were 5XX (0 without answers).
    pub fn rate_5xx(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.status_5xx as f64 / self.answered as f64
        }
    }
    /// The mean latency from the intended start, ns (0 without answers).
    pub fn mean_latency_ns(&self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.latency_ns_sum as f64 / self.answered as f64
        }
    }
}

/// The gateway component.
pub struct Gateway {
    throttle: Throttle,
    balancer: Balancer,
    nodes: Vec<ComponentId>,
    up: Vec<bool>,
    outstanding: Vec<u32>,
    in_flight: Slab<InFlight>,
    /// In-flight requests by deadline (ties in arrival order). Completed requests are dropped
    /// lazily from the front, so a request costs no timer of its own: one sweep timer, armed at
    /// the earliest live deadline, expires requests exactly at their deadlines.
    deadlines: VecDeque<(SimTime, Handle)>,
    /// The earliest pending sweep, if any.
    sweep_at: Option<SimTime>,
    max_in_flight: usize,
    /// One-way network delay gateway ↔ node.
    hop: SimDuration,
    /// Where successful creations are echoed (the traffic, to learn instance ids).
    client: Option<ComponentId>,
    /// Echo every response to the client (`Msg::ClientResponse`) instead of only creations
    /// (`Msg::Created`): client behaviour (retries, polling, closed loop) needs them all.
    echo_all: bool,
    metrics: ApiMetrics,
    /// The responses of the current time-series bucket, when the world samples one.
    window: Option<ResponseWindow>,
    /// Crashed nodes the health check has not noticed yet: (node, noticed at).
    undetected: Vec<(usize, SimTime)>,
    /// From a node's crash to the health check marking it down.
    detection: SimDuration,
    /// Requests received and answered (every answer: served, rejected, expired), for the
    /// one-response invariant.
    received: u64,
    answered: u64,
    /// Per account, by its number (grown on first answer).
    by_account: Vec<AccountOutcomes>,
}

/// Default delay from a node's crash to the gateway marking it down *(assumed)*.
pub const DEFAULT_HEALTH_CHECK_DETECTION: SimDuration = SimDuration::from_secs(1);

impl Gateway {
    pub fn new(
        throttle: Throttle,
        policy: LbPolicy,
        rng: SimRng,
        nodes: Vec<ComponentId>,
        hop: SimDuration,
        max_in_flight: usize,
        metrics: ApiMetrics,
    ) -> Gateway {
        let n = nodes.len();
        Gateway {
            throttle,
            balancer: Balancer::new(policy, rng),
            nodes,
            up: vec![true; n],
            outstanding: vec![0; n],
            in_flight: Slab::new(),
            received: 0,
            answered: 0,
            by_account: Vec::new(),
            deadlines: VecDeque::new(),
            sweep_at: None,
            max_in_flight,
            hop,
            client: None,
            echo_all: false,
            metrics,
            window: None,
            undetected: Vec::new(),
            detection: DEFAULT_HEALTH_CHECK_DETECTION,
        }
    }

    /// How long after a crash the health check marks the node down (zero: at once).
    pub fn set_health_check_detection(&mut self, d: SimDuration) {
        self.detection = d;
    }
    pub fn health_check_detection(&self) -> SimDuration {
        self.detection
    }

    /// Node `node` crashed at `now`: the health check marks it down after the detection delay
    /// (until then requests routed to it fail fast with 502).
    pub fn node_crashed(&mut self, node: usize, now: SimTime) {
        self.undetected.retain(|&(n, _)| n != node);
        if self.detection.is_zero() {
            self.up[node] = false;
        } else {
            self.undetected
                .push((node, now.saturating_add(self.detection)));
        }
    }

    /// Node `node` restarted: it is routed to again (its health check passes at once).
    pub fn node_restarted(&mut self, node: usize) {
        self.undetected.retain(|&(n, _)| n != node);
        self.up[node] = true;
    }

    /// Adds node `id` (a runbook's scale-out): up, no request outstanding, routed to from the
    /// next request on by every policy. Returns its index.
    pub fn add_node(&mut self, id: ComponentId) -> usize {
        self.nodes.push(id);
        self.up.push(true);
        self.outstanding.push(0);
        self.nodes.len() - 1
    }

    /// The nodes the gateway routes to, by index.
    pub fn nodes(&self) -> &[ComponentId] {
        &self.nodes
    }

    /// Whether the gateway routes to node `node` now.
    pub fn node_up(&self, node: usize) -> bool {
        self.up[node]
    }

    /// Marks down the crashed nodes whose detection instant has come.
    fn detect(&mut self, now: SimTime) {
        let up = &mut self.up;
        self.undetected.retain(|&(n, at)| {
            if at <= now {
                up[n] = false;
                false
            } else {
                true
            }
        });
    }

    pub fn set_client(&mut self, client: ComponentId) {
        self.client = Some(client);
    }

    /// Echoes every response to the client as `Msg::ClientResponse` (successful creations
    /// included, instead of `Msg::Created`).
    pub fn echo_all_responses(&mut self) {
        self.echo_all = true;
    }

    /// Marks a node up or down (crash, restart, scale-in): down nodes get no new requests.
    pub fn set_node_up(&mut self, node: usize, up: bool) {
        self.up[node] = up;
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }
    pub fn throttle_mut(&mut self) -> &mut Throttle {
        &mut self.throttle
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts filling a per-bucket window of responses (latency, 5XX) for the time series.
    pub fn enable_window(&mut self) {
        self.window.get_or_insert_with(ResponseWindow::default);
    }
    /// Moves the responses since the last swap into `spare` (emptied first; it stays empty
    /// when the window is off) and goes on recording into `spare`'s old memory: the two
    /// windows trade places bucket after bucket and never grow again.
    pub fn swap_window(&mut self, spare: &mut ResponseWindow) {
        spare.reset();
        if let Some(w) = &mut self.window {
            std::mem::swap(w, spare);
        }
    }

    /// Requests received and answered so far.
    pub fn request_counts(&self) -> (u64, u64) {
        (self.received, self.answered)
    }

    /// What the requests of every account but `except` got so far, together.
    pub fn outcomes_except(&self, except: &[AccountId]) -> AccountOutcomes {
        let mut all = AccountOutcomes::default();
        for (a, o) in self.by_account.iter().enumerate() {
            if !except.iter().any(|e| e.0 as usize == a) {
                all.merge(o);
            }
        }
        all
    }

    /// What `account`'s requests got so far.
    pub fn account_outcomes(&self, account: AccountId) -> AccountOutcomes {
        self.by_account
            .get(account.0 as usize)
            .copied()
            .unwrap_or_default()
    }

    fn finish(&mut self, resp: &Response, out: &mut Outbox<'_, Msg>) {
        self.answered += 1;
        let i = resp.api.index();
        let latency_ns = out.now().saturating_since(resp.intended).as_ns();
        let a = resp.account.0 as usize;
        if a >= self.by_account.len() {
            self.by_account.resize(a + 1, AccountOutcomes::default());
        }
        let acc = &mut self.by_account[a];
        acc.answered += 1;
        acc.latency_ns_sum = acc.latency_ns_sum.saturating_add(latency_ns);
        match resp.status {
            Status::Ok => acc.ok += 1,
            Status::Err(code) => match code.http_status() {
                500.. => acc.status_5xx += 1,
                _ => {
                    acc.status_4xx += 1;
                    acc.throttled += u64::from(code == ErrorCode::Throttling);
                }
            },
        }
        out.record(self.metrics.latency[i], latency_ns);
        if let Some(w) = &mut self.window {
            w.record(latency_ns, resp.status.is_5xx());
        }
        out.count(self.metrics.status[i][status_index(resp.status)], 1);
        match (self.client, resp.instances) {
            (Some(client), _) if self.echo_all => {
                out.send(client, SimDuration::ZERO, Msg::ClientResponse(*resp));
            }
            (Some(client), Some(_)) => {
                out.send(client, SimDuration::ZERO, Msg::Created(*resp));
            }
            _ => {}
        }
    }

    fn reject(&mut self, req: &Request, code: ErrorCode, out: &mut Outbox<'_, Msg>) {
        let resp = Response {
            id: req.id,
            api: req.api,
            account: req.account,
            intended: req.intended,
            status: Status::Err(code),
            instances: None,
            state: None,
        };
        self.finish(&resp, out);
    }

    pub fn on_request(&mut self, req: Request, out: &mut Outbox<'_, Msg>) {
        self.received += 1;
        let instances = match req.api {
            Api::RunInstances | Api::CreateInstance => u32::from(req.params.amount),
            _ => 0,
        };
        match self
            .throttle
            .check(out.now(), req.account, req.api, instances)
        {
            Verdict::Admit => {}
            Verdict::Throttled => return self.reject(&req, ErrorCode::Throttling, out),
            Verdict::CreationCapped => return self.reject(&req, ErrorCode::QuotaExceed, out),
        }
        if self.in_flight.len() >= self.max_in_flight {
            return self.reject(&req, ErrorCode::ServiceUnavailable, out);
        }
        if !self.undetected.is_empty() {
            self.detect(out.now());
        }
        let Some(node) = self.balancer.pick(&self.outstanding, &self.up) else {
            return self.reject(&req, ErrorCode::ServiceUnavailable, out);
        };
        self.outstanding[node] += 1;
        let handle = self.in_flight.insert(InFlight {
            req,
            node: node as u16,
        });
        self.track_deadline(req.deadline, handle, out);
        out.send(self.nodes[node], self.hop, Msg::Dispatch { handle, req });
    }

    fn track_deadline(&mut self, deadline: SimTime, handle: Handle, out: &mut Outbox<'_, Msg>) {
        // Drop completed requests from the front (amortised O(1)).
        while let Some(&(_, h)) = self.deadlines.front() {
            if self.in_flight.get(h).is_some() {
                break;
            }
            self.deadlines.pop_front();
        }
        // Deadlines usually arrive in order (one client timeout); otherwise insert in place.
        if self.deadlines.back().is_none_or(|&(d, _)| d <= deadline) {
            self.deadlines.push_back((deadline, handle));
        } else {
            let at = self.deadlines.partition_point(|&(d, _)| d <= deadline);
            self.deadlines.insert(at, (deadline, handle));
        }
        self.arm_sweep(out);
    }

    /// Arms a sweep at the earliest live deadline unless one is pending no later.
    fn arm_sweep(&mut self, out: &mut Outbox<'_, Msg>) {
        let Some(&(first, _)) = self.deadlines.front() else {
            return;
        };
        if self.sweep_at.is_none_or(|t| first < t) {
            self.sweep_at = Some(first);
            out.send_at(out.me(), first, Msg::DeadlineSweep);
        }
    }

    pub fn on_response(&mut self, handle: Handle, resp: Response, out: &mut Outbox<'_, Msg>) {
        let Some(f) = self.in_flight.remove(handle) else {
            // The client already gave up (deadline): the node's work was wasted.
            out.count(self.metrics.late_responses, 1);
            return;
        };
        debug_assert_eq!(f.req.id, resp.id);
        self.outstanding[usize::from(f.node)] -= 1;
        self.finish(&resp, out);
    }

    /// Expires every in-flight request whose deadline has come, then re-arms.
    pub fn on_sweep(&mut self, out: &mut Outbox<'_, Msg>) {
        let now = out.now();
        if self.sweep_at == Some(now) {
            self.sweep_at = None;
        }
        while let Some(&(deadline, h)) = self.deadlines.front() {
            let live = self.in_flight.get(h).is_some();
            if live && deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(f) = self.in_flight.remove(h) {
                self.outstanding[usize::from(f.node)] -= 1;
                self.reject(&f.req, ErrorCode::DeadlineExceeded, out);
            }
        }
        self.arm_sweep(out);
    }
}
