//! Open-loop traffic: requests generated at intended start times drawn from an inter-arrival
//! distribution, whatever the system's state (no coordinated omission), with an API mix,
//! skewed tenants, RunInstances batch sizes, and targets drawn from instances the client created.

use crate::api::types::{
    AccountId, Api, InstanceId, InstanceType, Params, Request, RequestId, Response,
};
use crate::kernel::{ComponentId, Dist, Outbox, SimDuration, SimRng, SimTime};
use crate::world::Msg;

/// The share of each API in the traffic (weights, any positive scale).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiMix {
    /// Cumulative weights over `Api::ALL`, normalised to end at 1.
    cumulative: [f64; Api::COUNT],
}

/// Why an API mix is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MixError {
    #[error("API weights must be finite and >= 0, with at least one > 0")]
    BadWeights,
}

impl ApiMix {
    pub fn new(weights: [f64; Api::COUNT]) -> Result<ApiMix, MixError> {
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(MixError::BadWeights);
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(MixError::BadWeights);
        }
        let mut acc = 0.0;
        let cumulative = weights.map(|w| {
            acc += w / total;
            acc
        });
        Ok(ApiMix { cumulative })
    }

    /// The Describe-heavy default *(assumed, domain.md §5)*: 92% Describe*, 5% Run/Create,
    /// 3% Start/Stop/Reboot/Delete.
    pub fn describe_heavy() -> ApiMix {
        let mut w = [0.0; Api::COUNT];
        w[Api::DescribeInstances.index()] = 46.0;
        w[Api::DescribeInstanceStatus.index()] = 46.0;
        w[Api::RunInstances.index()] = 4.0;
        w[Api::CreateInstance.index()] = 1.0;
        w[Api::StartInstance.index()] = 0.8;
        w[Api::StopInstance.index()] = 0.8;
        w[Api::RebootInstance.index()] = 0.4;
        w[Api::DeleteInstance.index()] = 1.0;
        ApiMix::new(w).expect("valid weights")
    }

    /// Only one API.
    pub fn only(api: Api) -> ApiMix {
        let mut w = [0.0; Api::COUNT];
        w[api.index()] = 1.0;
        ApiMix::new(w).expect("valid weights")
    }

    #[inline]
    pub fn pick(&self, u: f64) -> Api {
        let i = self
            .cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(Api::COUNT - 1);
        Api::ALL[i]
    }

    pub fn share(&self, api: Api) -> f64 {
        let i = api.index();
        self.cumulative[i] - if i == 0 { 0.0 } else { self.cumulative[i - 1] }
    }
}

/// What an open-loop client sends.
#[derive(Clone, Debug)]
pub struct OpenLoopConfig {
    /// Time between intended starts (exponential = Poisson arrivals).
    pub inter_arrival: Dist,
    pub mix: ApiMix,
    /// Accounts are numbered 0..accounts; the account of a request is `account_rank - 1` drawn from
    /// this distribution (e.g. Zipf over 1..=accounts), or uniform when `None`.
    pub accounts: u32,
    pub account_skew: Option<Dist>,
    /// RunInstances `Amount` (clamped to 1..=100).
    pub amount: Dist,
    /// RunInstances `MinAmount` as a fraction of `Amount` (rounded up, at least 1): 0 asks for
    /// "as many as stock allows", 1 for "all or nothing".
    pub min_amount_fraction: f64,
    pub instance_types: u16,
    /// The client's timeout: the request's deadline is intended start + timeout.
    pub timeout: SimDuration,
    /// Requests stop being generated after this instant.
    pub until: SimTime,
    /// Share of DescribeInstances calls that list a page rather than ask for one instance.
    pub describe_list_share: f64,
    /// ClientTokens on RunInstances/CreateInstance, and duplicate submissions.
    pub tokens: TokenPolicy,
}

/// How clients use ClientTokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenPolicy {
    /// Share of RunInstances/CreateInstance calls that carry a token.
    pub share: f64,
    /// Share of tokened calls submitted twice (same token, same parameters): a client that
    /// resubmits, or a retry after a lost response.
    pub duplicate_fraction: f64,
    /// How long after the original the duplicate is sent.
    pub duplicate_delay: SimDuration,
}

impl TokenPolicy {
    /// No tokens, no duplicates.
    pub const NONE: TokenPolicy = TokenPolicy {
        share: 0.0,
        duplicate_fraction: 0.0,
        duplicate_delay: SimDuration::ZERO,
    };
}

/// Instances the client knows about (a bounded ring: the newest `capacity`).
#[derive(Clone, Debug)]
struct Known {
    ids: Vec<(AccountId, InstanceId)>,
    next: usize,
    capacity: usize,
}

impl Known {
    fn push(&mut self, a: AccountId, id: InstanceId) {
        if self.ids.len() < self.capacity {
            self.ids.push((a, id));
        } else {
            self.ids[self.next] = (a, id);
            self.next = (self.next + 1) % self.capacity;
        }
    }
}

/// Requests generated per traffic wake-up.
pub const BATCH: usize = 64;

/// The open-loop traffic component.
pub struct OpenLoop {
    cfg: OpenLoopConfig,
    rng: SimRng,
    gateway: ComponentId,
    next_id: u64,
    known: Known,
    duplicates_sent: u64,
    tokens_sent: u64,
}

impl OpenLoop {
    pub fn new(cfg: OpenLoopConfig, rng: SimRng, gateway: ComponentId) -> OpenLoop {
        OpenLoop {
            cfg,
            rng,
            gateway,
            next_id: 0,
            known: Known {
                ids: Vec::new(),
                next: 0,
                capacity: 100_000,
            },
            duplicates_sent: 0,
            tokens_sent: 0,
        }
    }

    /// The first intended start (schedule a `Tick` there).
    pub fn first_arrival(&mut self) -> SimDuration {
        self.cfg.inter_arrival.sample_duration(&mut self.rng)
    }

    pub fn sent(&self) -> u64 {
        self.next_id
    }
    /// Distinct ClientTokens sent (each once, plus its duplicate if any).
    pub fn tokens_sent(&self) -> u64 {
        self.tokens_sent
    }
    pub fn duplicates_sent(&self) -> u64 {
        self.duplicates_sent
    }

    fn account(&mut self) -> AccountId {
        let n = self.cfg.accounts.max(1);
        let rank = match &self.cfg.account_skew {
            Some(d) => (d.sample(&mut self.rng) as u64).clamp(1, u64::from(n)) - 1,
            None => self.rng.below(u64::from(n)),
        };
        AccountId(rank as u32)
    }

    fn request(&mut self, now: SimTime) -> Request {
        let api = self.cfg.mix.pick(self.rng.unit());
        let mut account = self.account();
        let instance_type =
            InstanceType(self.rng.below(u64::from(self.cfg.instance_types.max(1))) as u16);
        let mut params = Params::single(instance_type);
        match api {
            Api::RunInstances => {
                let amount =
                    (self.cfg.amount.sample(&mut self.rng).round() as i64).clamp(1, 100) as u16;
                params.amount = amount;
                let min = (f64::from(amount) * self.cfg.min_amount_fraction.clamp(0.0, 1.0)).ceil();
                params.min_amount = (min as u16).clamp(1, amount);
            }
            Api::CreateInstance => {}
            Api::DescribeInstances if self.rng.unit() < self.cfg.describe_list_share => {
                params.page = self.rng.below(3) as u32;
            }
            _ => {
                // Target an instance this client created (its own account), or a made-up id when
                // none is known yet (answered with NotFound, as ECS would).
                if self.known.ids.is_empty() {
                    params.instance = Some(InstanceId(u64::MAX - self.rng.below(1_000)));
                } else {
                    let k = self.rng.below(self.known.ids.len() as u64) as usize;
                    let (a, id) = self.known.ids[k];
                    account = a;
                    params.instance = Some(id);
                }
            }
        }
        if api == Api::DeleteInstance {
            params.force = true;
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        Request {
            id,
            api,
            account,
            intended: now,
            deadline: now.saturating_add(self.cfg.timeout),
            client_token: 0,
            params,
        }
    }

    /// Emits the next [`BATCH`] requests, each scheduled to reach the gateway at its own intended
    /// start, then wakes up at the last one to emit more. Open-loop arrival times do not depend on
    /// the system, so generating them a little ahead changes nothing but the event count (one
    /// event per request instead of two); targets are drawn from the instances known at
    /// generation time, at most a batch's span earlier.
    pub fn on_tick(&mut self, out: &mut Outbox<'_, Msg>) {
        let mut at = out.now();
        if at > self.cfg.until {
            return;
        }
        for k in 0..BATCH {
            if k > 0 {
                let gap = self.cfg.inter_arrival.sample_duration(&mut self.rng);
                match at.checked_add(gap) {
                    Some(t) if t <= self.cfg.until => at = t,
                    _ => return,
                }
            }
            let mut req = self.request(at);
            if matches!(req.api, Api::RunInstances | Api::CreateInstance)
                && self.rng.unit() < self.cfg.tokens.share
            {
                // A token is ≤ 64 ASCII characters on the wire; the simulation carries its hash.
                req.client_token = crate::kernel::rng::mix_label(req.id.0, "client-token") | 1;
                self.tokens_sent += 1;
                if self.rng.unit() < self.cfg.tokens.duplicate_fraction {
                    let later = at.saturating_add(self.cfg.tokens.duplicate_delay);
                    let dup = Request {
                        id: RequestId(self.next_id),
                        intended: later,
                        deadline: later.saturating_add(self.cfg.timeout),
                        ..req
                    };
                    self.next_id += 1;
                    self.duplicates_sent += 1;
                    out.send_at(self.gateway, later, Msg::Request(dup));
                }
            }
            out.send_at(self.gateway, at, Msg::Request(req));
        }
        let gap = self.cfg.inter_arrival.sample_duration(&mut self.rng);
        if let Some(next) = at.checked_add(gap).filter(|t| *t <= self.cfg.until) {
            out.send_at(out.me(), next, Msg::TrafficTick);
        }
    }

    pub fn on_created(&mut self, resp: Response) {
        if let Some(range) = resp.instances {
            for id in range.iter() {
                self.known.push(resp.account, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_shares_and_picks() {
        let m = ApiMix::describe_heavy();
        let describe = m.share(Api::DescribeInstances) + m.share(Api::DescribeInstanceStatus);
        assert!((describe - 0.92).abs() < 1e-12);
        assert_eq!(m.pick(0.0), Api::RunInstances);
        assert_eq!(m.pick(0.999_999), Api::DeleteInstance);
        assert_eq!(ApiMix::only(Api::StopInstance).pick(0.3), Api::StopInstance);
        assert!(ApiMix::new([0.0; Api::COUNT]).is_err());
    }
}
