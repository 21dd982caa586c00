//! Load balancing across API nodes: round-robin, least-outstanding and power-of-two-choices,
//! all skipping nodes that are down. Ties go to the lowest index after the policy's own
//! rotation, so a choice never depends on anything but the state and the run's random stream.

use crate::kernel::SimRng;

/// How the load balancer picks a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastOutstanding,
    PowerOfTwoChoices,
}

impl std::str::FromStr for LbPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<LbPolicy, String> {
        match s {
            "round_robin" => Ok(LbPolicy::RoundRobin),
            "least_outstanding" => Ok(LbPolicy::LeastOutstanding),
            "power_of_two" | "p2c" => Ok(LbPolicy::PowerOfTwoChoices),
            other => Err(format!(
                "unknown load-balancing policy `{other}`: use round_robin, least_outstanding or power_of_two"
            )),
        }
    }
}

/// The balancer's state: the policy, a rotation cursor and its random stream.
#[derive(Clone, Debug)]
pub struct Balancer {
    policy: LbPolicy,
    cursor: usize,
    rng: SimRng,
}

impl Balancer {
    pub fn new(policy: LbPolicy, rng: SimRng) -> Balancer {
        Balancer {
            policy,
            cursor: 0,
            rng,
        }
    }

    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Picks a node among those with `up[i]`, given each node's outstanding requests.
    /// `None` when every node is down.
    pub fn pick(&mut self, outstanding: &[u32], up: &[bool]) -> Option<usize> {
        let n = outstanding.len();
        debug_assert_eq!(n, up.len());
        if n == 0 {
            return None;
        }
        if self.cursor >= n {
            self.cursor = 0;
        }
        match self.policy {
            LbPolicy::RoundRobin => {
                let mut i = self.cursor;
                for _ in 0..n {
                    if up[i] {
                        self.cursor = if i + 1 == n { 0 } else { i + 1 };
                        return Some(i);
                    }
                    i = if i + 1 == n { 0 } else { i + 1 };
                }
                None
            }
            LbPolicy::LeastOutstanding => {
                // Scan from the cursor so equal loads rotate instead of piling on node 0: the
                // node up with the least load, ties to the first in the order cursor..n,
                // 0..cursor. Branch-free: the least (load, rank in that order) key wins.
                let c = self.cursor;
                let (loads, up) = (&outstanding[..n], &up[..n]);
                let key = |i: usize, rank: usize| {
                    if up[i] {
                        (u64::from(loads[i]) << 32) | rank as u64
                    } else {
                        u64::MAX
                    }
                };
                let mut least = u64::MAX;
                for i in c..n {
                    least = least.min(key(i, i - c));
                }
                for i in 0..c {
                    least = least.min(key(i, i + n - c));
                }
                if least == u64::MAX {
                    return None;
                }
                let rank = (least & u64::from(u32::MAX)) as usize;
                let best = if rank + c >= n {
                    rank + c - n
                } else {
                    rank + c
                };
                self.cursor = if best + 1 == n { 0 } else { best + 1 };
                Some(best)
            }
            LbPolicy::PowerOfTwoChoices => {
                let live = up.iter().filter(|u| **u).count() as u64;
                if live == 0 {
                    return None;
                }
                let nth_up = |k: u64| {
                    up.iter()
                        .enumerate()
                        .filter(|(_, u)| **u)
                        .nth(k as usize)
                        .map(|(i, _)| i)
                };
                let a = nth_up(self.rng.below(live)).expect("k < live");
                let b = nth_up(self.rng.below(live)).expect("k < live");
                Some(if outstanding[b] < outstanding[a] {
                    b
                } else {
                    a
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::RootSeed;

    fn bal(p: LbPolicy) -> Balancer {
        Balancer::new(p, RootSeed::new(1).fork("lb"))
    }

    #[test]
    fn round_robin_cycles_and_skips_down_nodes() {
        let mut b = bal(LbPolicy::RoundRobin);
        let up = [true, false, true, true];
        let picks: Vec<_> = (0..6).map(|_| b.pick(&[0; 4], &up).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 3, 0, 2, 3]);
        assert_eq!(b.pick(&[0; 4], &[false; 4]), None);
    }

    #[test]
    fn least_outstanding_picks_the_minimum_and_rotates_ties() {
        let mut b = bal(LbPolicy::LeastOutstanding);
        assert_eq!(b.pick(&[3, 1, 2], &[true; 3]), Some(1));
        assert_eq!(b.pick(&[3, 1, 2], &[true, false, true]), Some(2));
        let picks: Vec<_> = (0..3)
            .map(|_| b.pick(&[0, 0, 0], &[true; 3]).unwrap())
            .collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2], "ties rotate: {picks:?}");
    }

    #[test]
    fn power_of_two_never_picks_the_busiest_of_two_and_balances() {
        let mut b = bal(LbPolicy::PowerOfTwoChoices);
        let mut load = [0u32; 8];
        for _ in 0..80_000 {
            let i = b.pick(&load, &[true; 8]).unwrap();
            load[i] += 1;
        }
        let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        // Uniform random choice would spread these by ~±300 (3 sd); two choices keep them within a few.
        assert!(max - min <= 8, "p2c keeps loads within a few: {load:?}");
        let up = [false, false, true, false];
        for _ in 0..100 {
            assert_eq!(b.pick(&[0; 4], &up), Some(2));
        }
    }
}
