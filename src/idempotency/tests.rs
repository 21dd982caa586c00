use super::*;
use crate::api::types::{InstanceId, InstanceIdRange, InstanceType, RequestId, Status};
use crate::kernel::{SimDuration, SimTime};
use std::collections::BTreeMap;

fn t(ns: u64) -> SimTime {
    SimTime::from_ns(ns)
}

fn secs(s: u64) -> SimTime {
    SimTime::from_ns(s * 1_000_000_000)
}

fn token(s: &str) -> u64 {
    s.parse::<ClientToken>().expect("valid token").as_u64()
}

fn key(token_text: &str) -> IdemKey {
    IdemKey {
        account: AccountId(7),
        api: Api::RunInstances,
        token: token(token_text),
    }
}

fn run_params(amount: u16) -> Params {
    Params {
        amount,
        min_amount: 1,
        instance_type: InstanceType(3),
        instance: None,
        force: false,
        page: 0,
    }
}

fn store(mode: Mode) -> IdempotencyStore {
    IdempotencyStore::new(IdemConfig::builder().mode(mode).build().unwrap())
}

fn range(first: u64, count: u32) -> InstanceIdRange {
    InstanceIdRange {
        first: InstanceId(first),
        count,
    }
}

fn proceed(c: Check) -> Reservation {
    match c {
        Check::Proceed(r) => r,
        other => panic!("expected Proceed, got {other:?}"),
    }
}

#[test]
fn same_token_same_params_replays_the_original_instances() {
    let mut s = store(Mode::Atomic);
    let (k, fp) = (key("run-1"), fingerprint(Api::RunInstances, &run_params(3)));
    let r = proceed(s.check(secs(1), k, fp));
    assert_eq!((r.key(), r.fingerprint(), r.at()), (k, fp, secs(1)));
    assert!(!r.is_duplicate());
    let created = Outcome::Ok {
        instances: Some(range(42, 3)),
    };
    s.complete(secs(2), k, created);
    for i in 0..3 {
        let c = s.check(secs(3 + i), k, fp);
        assert_eq!(c, Check::Replay(created));
        let Check::Replay(o) = c else { unreachable!() };
        assert_eq!(o.status(), Status::Ok);
        let ids: Vec<InstanceId> = o.instances().unwrap().iter().collect();
        assert_eq!(ids, vec![InstanceId(42), InstanceId(43), InstanceId(44)]);
    }
    let st = s.stats();
    assert_eq!((st.checks, st.proceeds, st.replays), (4, 1, 3));
    assert_eq!((st.completions, st.live, st.duplicates_detected), (1, 1, 0));
}

#[test]
fn same_token_different_params_is_a_mismatch_in_any_state() {
    let mut s = store(Mode::Atomic);
    let k = key("run-2");
    let (fp3, fp4) = (
        fingerprint(Api::RunInstances, &run_params(3)),
        fingerprint(Api::RunInstances, &run_params(4)),
    );
    assert_ne!(fp3, fp4);
    proceed(s.check(secs(1), k, fp3));
    // Still in progress: a different fingerprint is a 400, not a 403.
    assert_eq!(s.check(secs(2), k, fp4), Check::Mismatch);
    s.complete(secs(3), k, Outcome::Ok { instances: None });
    assert_eq!(s.check(secs(4), k, fp4), Check::Mismatch);
    assert_eq!(
        Check::Mismatch.error_code(),
        Some(ErrorCode::IdempotentParameterMismatch)
    );
    assert_eq!(ErrorCode::IdempotentParameterMismatch.http_status(), 400);
    assert_eq!(s.stats().mismatches, 2);
    // The record is untouched by the mismatches.
    assert_eq!(
        s.check(secs(5), k, fp3),
        Check::Replay(Outcome::Ok { instances: None })
    );
}

#[test]
fn duplicate_while_in_progress_is_last_token_processing() {
    let mut s = store(Mode::Atomic);
    let (k, fp) = (key("run-3"), 99);
    proceed(s.check(secs(1), k, fp));
    assert_eq!(s.check(secs(2), k, fp), Check::InProgress);
    assert_eq!(s.check(secs(3), k, fp), Check::InProgress);
    assert_eq!(
        Check::InProgress.error_code(),
        Some(ErrorCode::LastTokenProcessing)
    );
    assert_eq!(ErrorCode::LastTokenProcessing.http_status(), 403);
    assert_eq!((s.stats().proceeds, s.stats().in_progress_hits), (1, 2));
    assert_eq!(
        s.lookup(secs(3), k).map(|v| v.state),
        Some(RecordState::InProgress)
    );
}

#[test]
fn failures_are_memoised() {
    let mut s = store(Mode::Atomic);
    let (k, fp) = (key("run-4"), 5);
    proceed(s.check(secs(1), k, fp));
    s.complete(secs(2), k, Outcome::Failed(ErrorCode::NoStock));
    let c = s.check(secs(3), k, fp);
    assert_eq!(c, Check::Replay(Outcome::Failed(ErrorCode::NoStock)));
    let Check::Replay(o) = c else { unreachable!() };
    assert_eq!(o.status(), Status::Err(ErrorCode::NoStock));
    assert_eq!(o.instances(), None);
    assert_eq!(s.stats().failures_memoised, 1);
    assert_eq!(
        s.stats().proceeds,
        1,
        "the retry did not run the mutation again"
    );
    assert_eq!(
        Outcome::from_status(Status::Err(ErrorCode::NoStock), None),
        o
    );
    assert!(memoise_failure(ErrorCode::NoStock));
    assert!(!memoise_failure(ErrorCode::ServiceUnavailable));
}

#[test]
fn ttl_end_is_exclusive_and_counts_from_the_last_write() {
    let ttl = SimDuration::HOUR;
    let cfg = IdemConfig::builder().ttl(ttl).build().unwrap();
    let mut s = IdempotencyStore::new(cfg);
    let (k, fp) = (key("run-5"), 11);
    proceed(s.check(secs(1), k, fp));
    let done = secs(5);
    let o = Outcome::Ok {
        instances: Some(range(1, 1)),
    };
    s.complete(done, k, o);
    let end = done + ttl;
    // The completion re-armed the TTL: the reservation's own end (t=1s + 1h) is not the end.
    assert_eq!(s.check(secs(1) + ttl, k, fp), Check::Replay(o));
    let last = SimTime::from_ns(end.as_ns() - 1);
    assert_eq!(s.lookup(last, k).unwrap().expires_at, end);
    assert_eq!(s.check(last, k, fp), Check::Replay(o));
    assert_eq!(s.lookup(end, k), None);
    assert_eq!(s.stats().expirations, 0);
    // At exactly t + ttl the record is gone: a new call proceeds.
    proceed(s.check(end, k, fp));
    assert_eq!(s.stats().expirations, 1);
    assert_eq!(s.stats().proceeds, 2);
}

#[test]
fn an_expired_key_is_gone_even_behind_other_expired_records() {
    let cfg = IdemConfig::builder()
        .ttl(SimDuration::from_secs(10))
        .build()
        .unwrap();
    let mut s = IdempotencyStore::new(cfg);
    for i in 0..4u64 {
        proceed(s.check(t(i), key(&format!("k{i}")), 1));
    }
    // At exactly k3's end, three older records are expired too; the check's sweep takes only
    // two of them, and the lazy expiry of its own key does the rest.
    proceed(s.check(t(10_000_000_003), key("k3"), 1));
    assert_eq!(s.stats().expirations, 3);
    assert_eq!(s.stats().proceeds, 5);
}

#[test]
fn expire_drops_exactly_the_records_past_their_ttl() {
    let cfg = IdemConfig::builder()
        .ttl(SimDuration::from_secs(10))
        .build()
        .unwrap();
    let mut s = IdempotencyStore::new(cfg);
    for i in 0..5u64 {
        proceed(s.check(secs(i), key(&format!("e{i}")), 1));
    }
    assert_eq!(s.len(), 5);
    assert_eq!(s.expire(t(10_999_999_999)), 1, "only the one written at 0s");
    assert_eq!(s.expire(secs(13)), 3, "those written at 1, 2, 3 s");
    assert_eq!(s.expire(secs(13)), 0);
    assert_eq!((s.len(), s.stats().live, s.stats().expirations), (1, 1, 4));
    proceed(s.check(secs(13), key("e0"), 1));
}

#[test]
fn checks_sweep_expired_records_without_expire_calls() {
    let cfg = IdemConfig::builder()
        .ttl(SimDuration::from_secs(1))
        .build()
        .unwrap();
    let mut s = IdempotencyStore::new(cfg);
    for i in 0..100u64 {
        proceed(s.check(secs(i), key(&format!("s{i}")), 1));
        assert!(s.len() <= 2, "held {} at step {i}", s.len());
    }
    assert_eq!(s.stats().expirations, 99);
}

#[test]
fn tokens_are_validated_and_case_sensitive() {
    let ok = "a".repeat(64);
    let tok: ClientToken = ok.parse().unwrap();
    assert_eq!(tok.as_str(), Some(ok.as_str()));
    assert_eq!(tok.to_string(), ok);
    assert_eq!(
        "a".repeat(65).parse::<ClientToken>(),
        Err(TokenError::TooLong { len: 65 })
    );
    assert_eq!("".parse::<ClientToken>(), Err(TokenError::Empty));
    assert_eq!(
        "tok-é".parse::<ClientToken>(),
        Err(TokenError::NotAscii { pos: 4, ch: 'é' })
    );
    assert_eq!(
        "tok\n".parse::<ClientToken>(),
        Err(TokenError::Control {
            pos: 3,
            byte: b'\n'
        })
    );
    assert_eq!(
        "a\u{7f}".parse::<ClientToken>(),
        Err(TokenError::Control { pos: 1, byte: 0x7f })
    );
    assert!(" spaced ~!".parse::<ClientToken>().is_ok());
    let msg = "a"
        .repeat(65)
        .parse::<ClientToken>()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("65") && msg.contains("at most 64"), "{msg}");
    let msg = "tok-é".parse::<ClientToken>().unwrap_err().to_string();
    assert!(msg.contains("non-ASCII") && msg.contains('é'), "{msg}");

    // Case-sensitive: different keys, independent records.
    let (upper, lower) = (token("Token-A"), token("token-a"));
    assert_ne!(upper, lower);
    let mut s = store(Mode::Atomic);
    let k = |tok| IdemKey {
        account: AccountId(1),
        api: Api::CreateInstance,
        token: tok,
    };
    proceed(s.check(secs(1), k(upper), 3));
    proceed(s.check(secs(1), k(lower), 3));
    assert_eq!(s.check(secs(1), k(upper), 3), Check::InProgress);
    // The same token on another account or API is another key.
    let other_account = IdemKey {
        account: AccountId(2),
        ..k(upper)
    };
    proceed(s.check(secs(1), other_account, 3));

    // Hash-only tokens, as the traffic carries them.
    assert_eq!(ClientToken::from_hash(0), None);
    let h = ClientToken::from_hash(upper).unwrap();
    assert_eq!(h, "Token-A".parse::<ClientToken>().unwrap());
    assert_eq!((h.as_u64(), h.as_str()), (upper, None));
    assert_eq!(h.to_string(), format!("#{upper:016x}"));
    // Golden key of a token text (FNV-1a + SplitMix64, written out).
    assert_eq!(ClientToken::hash_text("Token-A"), GOLDEN_TOKEN_HASH);
}

const GOLDEN_TOKEN_HASH: u64 = 17_470_206_382_594_330_569;

#[test]
fn non_atomic_check_then_write_lets_a_duplicate_through() {
    let k = key("dup");
    let fp = fingerprint(Api::RunInstances, &run_params(1));

    // Atomic: B, checked right after A, waits for A.
    let mut s = store(Mode::Atomic);
    proceed(s.check(t(100), k, fp));
    assert_eq!(s.check(t(200), k, fp), Check::InProgress);
    assert_eq!(s.stats().duplicates_detected, 0);

    // Non-atomic: check A, check B, both proceed (neither has written its reservation yet).
    let mut s = store(Mode::NonAtomic);
    let a = proceed(s.check(t(100), k, fp));
    let b = proceed(s.check(t(200), k, fp));
    assert!(!a.is_duplicate() && b.is_duplicate());
    assert_eq!(s.stats().duplicates_detected, 1);
    assert_eq!(s.stats().proceeds, 2);
    // The Reserved record is invisible to clients but visible to the oracle.
    assert_eq!(
        s.lookup(t(200), k).map(|v| v.state),
        Some(RecordState::Reserved)
    );
    // A writes its reservation late; from then on a third request waits.
    s.record_in_progress(t(300), k, a.fingerprint());
    assert_eq!(s.check(t(400), k, fp), Check::InProgress);
    let (oa, ob) = (
        Outcome::Ok {
            instances: Some(range(1, 1)),
        },
        Outcome::Ok {
            instances: Some(range(2, 1)),
        },
    );
    s.complete(t(500), k, oa);
    // B's blind late write and completion overwrite A's record: last writer wins.
    s.record_in_progress(t(600), k, b.fingerprint());
    assert_eq!(s.check(t(650), k, fp), Check::InProgress);
    s.complete(t(700), k, ob);
    assert_eq!(s.check(t(800), k, fp), Check::Replay(ob));
    let st = s.stats();
    assert_eq!(
        (st.duplicates_detected, st.late_writes, st.completions),
        (1, 2, 2)
    );
}

#[test]
fn atomic_late_write_never_overwrites() {
    let mut s = store(Mode::Atomic);
    let k = key("late");
    proceed(s.check(t(1), k, 9));
    let o = Outcome::Ok { instances: None };
    s.complete(t(2), k, o);
    s.record_in_progress(t(3), k, 9);
    assert_eq!(s.check(t(4), k, 9), Check::Replay(o));
}

#[test]
fn abandon_frees_unfinished_records_only() {
    let mut s = store(Mode::Atomic);
    let (k, fp) = (key("crash"), 4);
    proceed(s.check(secs(1), k, fp));
    s.abandon(k);
    assert_eq!((s.len(), s.stats().abandoned), (0, 1));
    // The retry proceeds and completes; abandoning a completed record changes nothing.
    proceed(s.check(secs(2), k, fp));
    let o = Outcome::Ok {
        instances: Some(range(9, 2)),
    };
    s.complete(secs(3), k, o);
    s.abandon(k);
    assert_eq!(s.check(secs(4), k, fp), Check::Replay(o));
    assert_eq!(s.stats().abandoned, 1);
    // A completion for a key without a record changes nothing.
    s.complete(secs(5), key("never-seen"), o);
    assert_eq!((s.stats().stale_completions, s.len()), (1, 1));
}

#[test]
fn capacity_is_honoured_by_expiring_then_evicting_the_oldest() {
    let cfg = IdemConfig::builder()
        .capacity(3)
        .ttl(SimDuration::from_secs(100))
        .build()
        .unwrap();
    let mut s = IdempotencyStore::new(cfg);
    for i in 0..5u64 {
        proceed(s.check(secs(i), key(&format!("c{i}")), 1));
        assert!(s.len() <= 3);
        if i == 1 {
            s.complete(secs(1), key("c1"), Outcome::Ok { instances: None });
        }
    }
    // c0 (in progress, expiring first) went, then c1: its completion at 1 s re-armed its TTL to
    // 101 s, still before c2's 102 s.
    let st = s.stats();
    assert_eq!((st.evictions, st.evicted_in_progress), (2, 1));
    assert_eq!((st.live, st.peak_live), (3, 3));
    assert_eq!(s.lookup(secs(5), key("c0")), None);
    assert_eq!(s.lookup(secs(5), key("c1")), None);
    assert!(s.lookup(secs(5), key("c2")).is_some());
    // An evicted key in progress proceeds again: the lost guarantee evicted_in_progress reports.
    proceed(s.check(secs(5), key("c0"), 1));
    let st = s.stats();
    assert_eq!((st.evictions, st.evicted_in_progress, st.live), (3, 2, 3));

    // A full store drops expired records before evicting live ones.
    let cfg = IdemConfig::builder()
        .capacity(2)
        .ttl(SimDuration::from_secs(1))
        .build()
        .unwrap();
    let mut s = IdempotencyStore::new(cfg);
    proceed(s.check(t(0), key("x"), 1));
    proceed(s.check(t(1), key("y"), 1));
    proceed(s.check(secs(5), key("z"), 1));
    let st = s.stats();
    assert_eq!((st.expirations, st.evictions, st.live), (2, 0, 1));
}

#[test]
fn config_is_validated() {
    let d = IdemConfig::default();
    assert_eq!(d.ttl(), SimDuration::from_secs(86_400));
    assert_eq!(
        (d.mode(), d.store(), d.capacity()),
        (Mode::Atomic, StoreKind::Db, 100_000)
    );
    assert_eq!(
        IdemConfig::builder().ttl(SimDuration::ZERO).build(),
        Err(IdemConfigError::ZeroTtl)
    );
    assert_eq!(
        IdemConfig::builder().capacity(0).build(),
        Err(IdemConfigError::ZeroCapacity)
    );
    let c = IdemConfig::builder()
        .mode(Mode::from_atomic(false))
        .store(StoreKind::L2Cache)
        .build()
        .unwrap();
    assert_eq!((c.mode(), c.store()), (Mode::NonAtomic, StoreKind::L2Cache));
    assert!(
        IdemConfigError::ZeroTtl.to_string().contains("24h"),
        "the error shows a fix"
    );
}

#[test]
fn keys_come_from_requests_with_a_token_on_a_mutating_api() {
    let mut req = Request {
        id: RequestId(1),
        api: Api::RunInstances,
        account: AccountId(3),
        intended: secs(1),
        deadline: secs(2),
        client_token: 0,
        params: run_params(2),
    };
    assert_eq!(IdemKey::from_request(&req), None);
    req.client_token = 77;
    assert_eq!(
        IdemKey::from_request(&req),
        Some(IdemKey {
            account: AccountId(3),
            api: Api::RunInstances,
            token: 77
        })
    );
    req.api = Api::DescribeInstances;
    assert_eq!(IdemKey::from_request(&req), None);
    for api in [
        Api::RunInstances,
        Api::CreateInstance,
        Api::StartInstance,
        Api::StopInstance,
        Api::RebootInstance,
        Api::DeleteInstance,
    ] {
        assert!(supports_token(api));
    }
}

/// Golden fingerprint: if this changes, records written by an older build (and any recorded
/// result that depends on mismatches) change meaning. Do not update without a reason.
#[test]
fn fingerprint_is_stable_and_covers_every_business_field() {
    let base = Params {
        amount: 3,
        min_amount: 2,
        instance_type: InstanceType(5),
        instance: None,
        force: false,
        page: 0,
    };
    assert_eq!(fingerprint(Api::RunInstances, &base), GOLDEN_FP_RUN);
    let delete = Params {
        instance: Some(InstanceId(0x1234)),
        force: true,
        ..Params::single(InstanceType(0))
    };
    assert_eq!(fingerprint(Api::DeleteInstance, &delete), GOLDEN_FP_DELETE);

    let variants = [
        Params { amount: 4, ..base },
        Params {
            min_amount: 1,
            ..base
        },
        Params {
            instance_type: InstanceType(6),
            ..base
        },
        Params {
            instance: Some(InstanceId(0)),
            ..base
        },
        Params {
            force: true,
            ..base
        },
        Params { page: 1, ..base },
    ];
    let mut seen = vec![fingerprint(Api::RunInstances, &base)];
    seen.extend(variants.iter().map(|p| fingerprint(Api::RunInstances, p)));
    seen.push(fingerprint(Api::CreateInstance, &base));
    let mut dedup = seen.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        seen.len(),
        "every field changes the fingerprint"
    );
}

const GOLDEN_FP_RUN: u64 = 14_752_074_718_127_677_463;
const GOLDEN_FP_DELETE: u64 = 11_673_305_686_999_488_176;

/// A naive reference model of the atomic store (no capacity pressure): a map of key →
/// (fingerprint, completed outcome or in progress, last write).
#[derive(Default)]
struct Model {
    records: BTreeMap<IdemKey, (u64, Option<Outcome>, SimTime)>,
}

impl Model {
    fn live(&self, now: SimTime, ttl: SimDuration, k: IdemKey) -> Option<(u64, Option<Outcome>)> {
        self.records
            .get(&k)
            .filter(|r| now < r.2 + ttl)
            .map(|r| (r.0, r.1))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Check { key: usize, fp: u64 },
    Complete { key: usize, outcome: usize },
    Abandon { key: usize },
    Advance(u64),
    Expire,
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..8usize, 0..2u64).prop_map(|(key, fp)| Op::Check { key, fp }),
        2 => (0..8usize, 0..3usize).prop_map(|(key, outcome)| Op::Complete { key, outcome }),
        1 => (0..8usize).prop_map(|key| Op::Abandon { key }),
        2 => (0..700u64).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

fn prop_key(i: usize) -> IdemKey {
    IdemKey {
        account: AccountId((i % 2) as u32),
        api: if i / 2 % 2 == 0 {
            Api::RunInstances
        } else {
            Api::StopInstance
        },
        token: 1 + (i / 4) as u64,
    }
}

proptest::proptest! {
    /// Any interleaving of checks, completions, abandons, expiries and time in Atomic mode: a key
    /// never gets a second Proceed while its record is live, and every answer matches the
    /// reference model.
    #[test]
    fn atomic_never_gives_two_proceeds_for_a_live_key(
        ops in proptest::collection::vec(op_strategy(), 1..200)
    ) {
        use proptest::prop_assert_eq;
        let ttl = SimDuration::from_ns(1_000);
        let cfg = IdemConfig::builder().ttl(ttl).capacity(8).build().unwrap();
        let mut s = IdempotencyStore::new(cfg);
        let mut m = Model::default();
        let mut now = SimTime::ZERO;
        let outcomes = [
            Outcome::Ok { instances: Some(range(10, 2)) },
            Outcome::Ok { instances: None },
            Outcome::Failed(ErrorCode::QuotaExceed),
        ];
        for op in ops {
            match op {
                Op::Check { key, fp } => {
                    let k = prop_key(key);
                    let before = m.live(now, ttl, k);
                    let got = s.check(now, k, fp);
                    let want = match before {
                        None => None,
                        Some((f, _)) if f != fp => Some(Check::Mismatch),
                        Some((_, None)) => Some(Check::InProgress),
                        Some((_, Some(o))) => Some(Check::Replay(o)),
                    };
                    match (want, got) {
                        (None, Check::Proceed(r)) => {
                            proptest::prop_assert!(!r.is_duplicate());
                            m.records.insert(k, (fp, None, now));
                        }
                        (Some(w), g) => prop_assert_eq!(w, g),
                        (None, g) => proptest::prop_assert!(false, "absent key got {:?}", g),
                    }
                }
                Op::Complete { key, outcome } => {
                    let k = prop_key(key);
                    let o = outcomes[outcome];
                    s.complete(now, k, o);
                    match m.live(now, ttl, k) {
                        Some((fp, _)) => { m.records.insert(k, (fp, Some(o), now)); }
                        None => { m.records.remove(&k); }
                    }
                }
                Op::Abandon { key } => {
                    let k = prop_key(key);
                    s.abandon(k);
                    if matches!(m.records.get(&k), Some((_, None, _))) {
                        m.records.remove(&k);
                    }
                }
                Op::Advance(ns) => now += SimDuration::from_ns(ns),
                Op::Expire => {
                    s.expire(now);
                }
            }
            for i in 0..8 {
                let k = prop_key(i);
                let want = m.live(now, ttl, k);
                let got = s.lookup(now, k).map(|v| {
                    let done = match v.state {
                        RecordState::Completed(o) => Some(o),
                        RecordState::InProgress => None,
                        RecordState::Reserved => panic!("Reserved in Atomic mode"),
                    };
                    (v.fingerprint, done)
                });
                prop_assert_eq!(want, got);
            }
            let st = s.stats();
            prop_assert_eq!(st.duplicates_detected, 0);
            prop_assert_eq!(st.evictions, 0);
            prop_assert_eq!(st.live, s.len() as u64);
            proptest::prop_assert!(s.len() <= 8);
            prop_assert_eq!(
                st.checks,
                st.proceeds + st.replays + st.mismatches + st.in_progress_hits
            );
        }
    }

    /// Under capacity pressure the bound holds and the counters stay consistent in both modes.
    #[test]
    fn capacity_bound_holds_under_any_load(
        ops in proptest::collection::vec(op_strategy(), 1..300),
        cap in 1..6u32,
        atomic in proptest::bool::ANY,
    ) {
        let cfg = IdemConfig::builder()
            .ttl(SimDuration::from_ns(1_000))
            .capacity(cap)
            .mode(Mode::from_atomic(atomic))
            .build()
            .unwrap();
        let mut s = IdempotencyStore::new(cfg);
        let mut now = SimTime::ZERO;
        for op in ops {
            match op {
                Op::Check { key, fp } => {
                    if let Check::Proceed(r) = s.check(now, prop_key(key), fp) {
                        if !atomic && key % 3 == 0 {
                            s.record_in_progress(now, r.key(), r.fingerprint());
                        }
                    }
                }
                Op::Complete { key, .. } => s.complete(now, prop_key(key), Outcome::Ok { instances: None }),
                Op::Abandon { key } => s.abandon(prop_key(key)),
                Op::Advance(ns) => now += SimDuration::from_ns(ns),
                Op::Expire => { s.expire(now); }
            }
            let st = s.stats();
            proptest::prop_assert!(s.len() <= cap as usize);
            proptest::prop_assert_eq!(st.live, s.len() as u64);
            proptest::prop_assert!(st.peak_live <= u64::from(cap));
            proptest::prop_assert!(st.evicted_in_progress <= st.evictions);
            if atomic {
                proptest::prop_assert_eq!(st.duplicates_detected, 0);
            }
        }
    }
}

/// The caller's clock dates what it writes and judges expiry: a record completed at 0 s with a
/// 1 h TTL looks expired to a caller 50 min ahead at 15 min (true time), so its check proceeds
/// anew (counted as an early expiry); a caller 30 min behind writes a record that expires
/// 30 min early in true time, and still replays one that the true clock has expired, until the
/// store's own sweep (on true time) drops it.
#[test]
fn the_callers_clock_dates_records_and_judges_their_expiry() {
    let ttl = SimDuration::from_secs(3600);
    let mut s = IdempotencyStore::new(IdemConfig::builder().ttl(ttl).build().unwrap());
    let (k, fp) = (
        key("skew-1"),
        fingerprint(Api::RunInstances, &run_params(1)),
    );
    let min = |m: u64| secs(60 * m);
    proceed(s.check(min(0), k, fp));
    s.complete(
        min(0),
        k,
        Outcome::Ok {
            instances: Some(range(1, 1)),
        },
    );
    assert_eq!(s.lookup(min(15), k).unwrap().expires_at, min(60));
    // The true clock and an unskewed caller: a replay.
    assert!(matches!(
        s.check_by(min(15), min(15), k, fp),
        Check::Replay(_)
    ));
    // 50 minutes ahead: the record looks expired, the check proceeds and writes a new one,
    // dated by the caller's clock (65 min + 1 h).
    let r = proceed(s.check_by(min(15), min(65), k, fp));
    assert_eq!(
        r.at(),
        min(15),
        "the reservation is stamped with the true time"
    );
    assert_eq!(s.stats().expired_early, 1);
    assert_eq!(s.stats().expirations, 1);
    assert_eq!(s.lookup(min(15), k).unwrap().expires_at, min(125));

    // 30 minutes behind: written at 40 min (true), the record expires at 40 − 30 + 60 = 70 min.
    let behind = |now: SimTime| caller_clock(now, -30 * 60 * 1_000_000_000);
    assert_eq!(behind(min(10)), min(0), "saturates at time zero");
    let k3 = key("skew-3");
    proceed(s.check_by(min(40), behind(min(40)), k3, fp));
    s.complete_by(
        min(40),
        behind(min(40)),
        k3,
        Outcome::Ok {
            instances: Some(range(3, 1)),
        },
    );
    assert_eq!(
        s.lookup(min(40), k3).unwrap().expires_at,
        min(70),
        "30 min early"
    );
    assert_eq!(s.lookup(min(70), k3), None, "gone in true time at 70 min");
    // At 80 min (true) the caller behind reads 50 min: the record is live to it, a replay,
    // though the true clock expired it (the check's sweep stops at the key it judges).
    assert!(matches!(
        s.check_by(min(80), behind(min(80)), k3, fp),
        Check::Replay(_)
    ));
    // The true clock's housekeeping drops it.
    assert!(s.expire(min(80)) >= 1);
    assert!(matches!(
        s.check_by(min(80), behind(min(80)), k3, fp),
        Check::Proceed(_)
    ));
}
