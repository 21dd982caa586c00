use super::*;
use crate::api::types::{AccountId, Api, InstanceId};

fn key(token: u64) -> IdemKey {
    IdemKey {
        account: AccountId(7),
        api: Api::RunInstances,
        token,
    }
}
fn range(first: u64, count: u32) -> InstanceIdRange {
    InstanceIdRange {
        first: InstanceId(first),
        count,
    }
}
fn at(s: u64) -> SimTime {
    SimTime::ZERO.saturating_add(SimDuration::from_secs(s))
}
const TTL: SimDuration = SimDuration::from_secs(86_400);

/// Token 1's first answer, at 1 s: a fresh set of instances 10 to 12.
fn first_answer() -> TokenAnswer {
    TokenAnswer {
        at: at(1),
        key: key(1),
        instances: range(10, 3),
        fresh: true,
    }
}

#[test]
fn a_token_answered_twice_with_its_first_set_is_fine() {
    let mut l = TokenLedger::default();
    let a = first_answer();
    assert_eq!(l.observe(a, TTL), None);
    let replay = TokenAnswer {
        at: at(2),
        fresh: false,
        ..a
    };
    assert_eq!(l.observe(replay, TTL), None);
    assert_eq!(l.len(), 1);
}

#[test]
fn a_second_fresh_set_or_a_replay_with_other_ids_is_a_violation() {
    let mut l = TokenLedger::default();
    let a = first_answer();
    l.observe(a, TTL);
    let dup = TokenAnswer {
        at: at(2),
        instances: range(20, 3),
        ..a
    };
    let v = l.observe(dup, TTL).expect("a second set");
    assert_eq!(v.invariant, Invariant::TokenOneInstanceSet);
    assert_eq!(v.at, at(2));
    let replay = TokenAnswer {
        fresh: false,
        ..dup
    };
    assert_eq!(
        l.observe(replay, TTL).map(|v| v.invariant),
        Some(Invariant::TokenSameIds)
    );
    // Another token, or the same after its TTL, starts afresh.
    assert_eq!(l.observe(TokenAnswer { key: key(2), ..dup }, TTL), None);
    assert_eq!(
        l.observe(
            TokenAnswer {
                at: at(1).saturating_add(TTL),
                ..dup
            },
            TTL
        ),
        None
    );
}

#[test]
fn lifecycle_moves_follow_the_state_machine() {
    use InstanceState::*;
    assert!(legal_move(Pending, Starting));
    assert!(legal_move(Running, Running));
    assert!(!legal_move(Deleted, Running));
    assert!(!legal_move(Stopped, Running));
    assert!(!legal_move(Pending, Running));
}

#[test]
fn names_round_trip() {
    for i in Invariant::ALL {
        assert_eq!(Invariant::from_name(i.name()), Some(i));
    }
}

/// The ledger holds the tokens of one TTL and the slack, not every token of the run, and still
/// finds a second set within the TTL after dropping older entries.
#[test]
fn the_ledger_drops_tokens_past_their_ttl() {
    let ttl = SimDuration::from_secs(100);
    let mut l = TokenLedger::default();
    let slack_s = LEDGER_SLACK.as_secs_f64() as u64;
    // One token a second for 20,000 s.
    for t in 0..20_000u64 {
        let a = TokenAnswer {
            at: at(t),
            key: key(t + 1),
            instances: range(10 * t, 2),
            fresh: true,
        };
        assert_eq!(l.observe(a, ttl), None);
    }
    let held = l.len() as u64;
    assert!(
        (100 + slack_s..=100 + slack_s + 1).contains(&held),
        "{held} tokens held"
    );
    // Token 20,000 (answered at 19,999 s) answered again with other ids within its TTL.
    let dup = TokenAnswer {
        at: at(20_050),
        key: key(20_000),
        instances: range(7, 1),
        fresh: true,
    };
    assert_eq!(
        l.observe(dup, ttl).map(|v| v.invariant),
        Some(Invariant::TokenOneInstanceSet)
    );
    // Token 1, long dropped, starts afresh.
    let again = TokenAnswer {
        at: at(20_060),
        key: key(1),
        instances: range(9, 1),
        fresh: true,
    };
    assert_eq!(l.observe(again, ttl), None);
}
