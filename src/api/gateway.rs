//! The gateway in front of the API nodes: throttling and quotas, load balancing, the client's
//! deadline, and the client-side measurement of every response (latency from the intended start
//! time, status per API).

use super::lb::{Balancer, LbPolicy};
use super::throttle::{Throttle, Verdict};
use super::types::{Api, ErrorCode, Request, Response, Status};
use crate::kernel::{ComponentId, Handle, Outbox, SimDuration, SimRng, Slab, TimerId};
use crate::metrics::{CounterId, HistogramId, Registry};
use crate::world::Msg;

/// Number of distinct statuses counted per API (OK + every error code).
pub const STATUSES: usize = ErrorCode::ALL.len() + 1;

/// Dense index of a status in per-API counter arrays.
pub fn status_index(s: Status) -> usize {
    match s {
        Status::Ok => 0,
        Status::Err(c) => {
            1 + ErrorCode::ALL
                .iter()
                .position(|x| *x == c)
                .expect("every code is listed")
        }
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
    deadline: TimerId,
}

/// The gateway component.
pub struct Gateway {
    throttle: Throttle,
    balancer: Balancer,
    nodes: Vec<ComponentId>,
    up: Vec<bool>,
    outstanding: Vec<u32>,
    in_flight: Slab<InFlight>,
    max_in_flight: usize,
    /// One-way network delay gateway ↔ node.
    hop: SimDuration,
    /// Where successful creations are echoed (the traffic, to learn instance ids).
    client: Option<ComponentId>,
    metrics: ApiMetrics,
}

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
            max_in_flight,
            hop,
            client: None,
            metrics,
        }
    }

    pub fn set_client(&mut self, client: ComponentId) {
        self.client = Some(client);
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

    fn finish(&mut self, resp: &Response, out: &mut Outbox<'_, Msg>) {
        let i = resp.api.index();
        out.record(
            self.metrics.latency[i],
            out.now().saturating_since(resp.intended).as_ns(),
        );
        out.count(self.metrics.status[i][status_index(resp.status)], 1);
        if let (Some(client), Some(_)) = (self.client, resp.instances) {
            out.send(client, SimDuration::ZERO, Msg::Created(*resp));
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
        let Some(node) = self.balancer.pick(&self.outstanding, &self.up) else {
            return self.reject(&req, ErrorCode::ServiceUnavailable, out);
        };
        self.outstanding[node] += 1;
        // The handle is needed for the deadline timer, which is needed for the record: insert
        // with a placeholder timer, then fill it in.
        let deadline_at = req.deadline;
        let handle = self.in_flight.insert(InFlight {
            req,
            node: node as u16,
            deadline: placeholder_timer(),
        });
        let timer = out.send_at(out.me(), deadline_at, Msg::Deadline(handle));
        self.in_flight
            .get_mut(handle)
            .expect("just inserted")
            .deadline = timer;
        out.send(self.nodes[node], self.hop, Msg::Dispatch { handle, req });
    }

    pub fn on_response(&mut self, handle: Handle, resp: Response, out: &mut Outbox<'_, Msg>) {
        let Some(f) = self.in_flight.remove(handle) else {
            // The client already gave up (deadline): the node's work was wasted.
            out.count(self.metrics.late_responses, 1);
            return;
        };
        debug_assert_eq!(f.req.id, resp.id);
        out.cancel(f.deadline);
        self.outstanding[usize::from(f.node)] -= 1;
        self.finish(&resp, out);
    }

    pub fn on_deadline(&mut self, handle: Handle, out: &mut Outbox<'_, Msg>) {
        let Some(f) = self.in_flight.remove(handle) else {
            return;
        };
        self.outstanding[usize::from(f.node)] -= 1;
        self.reject(&f.req, ErrorCode::DeadlineExceeded, out);
    }
}

/// A timer id that names nothing (never returned by a queue for a live event once replaced).
fn placeholder_timer() -> TimerId {
    crate::kernel::queue::TimerId::DANGLING
}
