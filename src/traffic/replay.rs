//! Trace replay: requests read from a recorded trace (CSV or JSON Lines) instead of generated
//! arrivals, sped up or slowed down, thinned or multiplied, deterministically.
//!
//! Formats (timestamp in seconds from the trace start, a float; `#` lines and blank lines are
//! skipped in both):
//!
//! - CSV, header `timestamp,account,api,params,client_token`; `params` is a `;`-separated list of
//!   `key=value` (keys below, any may be left out, the field may be empty); an empty
//!   `client_token` means none. Example: `12.5,3,RunInstances,amount=10;min_amount=1,tok-17`.
//! - JSON Lines, one object a line:
//!   `{"timestamp":12.5,"account":3,"api":"RunInstances","params":{"amount":10},"client_token":"tok-17"}`
//!   (`params` and `client_token` may be left out or null).
//!
//! Parameter keys: `amount` (1–100, default 1), `min_amount` (1..=amount, default 1),
//! `instance_type` (default 0), `instance` (an explicit instance number; without it, calls that
//! target an instance — DescribeInstanceStatus, Start/Stop/Reboot/Delete — target one the client
//! created, as generated traffic does), `page` (a DescribeInstances list page), `force`.
//! A token is hashed (the simulation carries a 64-bit hash); the same string is the same token.
//!
//! [`ReplayConfig`]: `speed` divides every timestamp (2.0 = twice as fast); `scale` < 1 keeps
//! each record with probability `scale`, > 1 sends each record ⌊scale⌋ or ⌈scale⌉ times (the
//! fraction decides by a draw), the extra copies with fresh tokens (when the record has one) and
//! times jittered uniformly in `[0, copy_jitter]` after the original. Draws come from the
//! `traffic.replay` stream of the run's seed, so a replay is a pure function of (trace, config,
//! seed). Errors are located `file:line: message`.

use super::OpenLoop;
use crate::api::types::{AccountId, Api, InstanceId, InstanceType, Params, Request, RequestId};
use crate::kernel::{Outbox, SimDuration, SimRng, SimTime};
use crate::world::Msg;
use std::path::Path;

/// Most records a trace may hold, and most requests a replay schedules after scaling.
pub const MAX_RECORDS: usize = 10_000_000;
/// Largest `scale`, and largest `speed`.
pub const MAX_SCALE: f64 = 100.0;
pub const MAX_SPEED: f64 = 1_000_000.0;
/// Latest timestamp accepted, seconds (one year).
pub const MAX_TIMESTAMP_S: f64 = 365.0 * 86_400.0;

/// Why a trace cannot be read or replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: the trace has no records")]
    Empty { file: String },
    #[error("{file}: more than {MAX_RECORDS} records; split the trace")]
    TooLarge { file: String },
    #[error(
        "replay `{what}` is {value}: it must be a finite number > 0 and <= {max} (1 = as recorded)"
    )]
    BadConfig {
        what: &'static str,
        value: f64,
        max: f64,
    },
}

/// One recorded call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceRecord {
    /// Since the start of the trace.
    pub at: SimDuration,
    pub account: AccountId,
    pub api: Api,
    pub params: Params,
    /// Hash of the ClientToken, 0 = none.
    pub client_token: u64,
    /// Line of the trace file (for messages).
    pub line: usize,
}

/// A parsed trace: records in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    file: String,
    records: Vec<TraceRecord>,
}

/// The 64-bit hash a token string travels as (never 0).
pub fn token_hash(token: &str) -> u64 {
    crate::kernel::rng::mix_label(0, token) | 1
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParams {
    amount: Option<u16>,
    min_amount: Option<u16>,
    instance_type: Option<u16>,
    instance: Option<u64>,
    page: Option<u32>,
    force: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJson {
    timestamp: f64,
    account: u32,
    api: String,
    #[serde(default)]
    params: Option<RawParams>,
    #[serde(default)]
    client_token: Option<String>,
}

fn build_record(
    timestamp: f64,
    account: u32,
    api: &str,
    p: RawParams,
    token: Option<&str>,
    line: usize,
) -> Result<TraceRecord, String> {
    if !timestamp.is_finite() || !(0.0..=MAX_TIMESTAMP_S).contains(&timestamp) {
        return Err(format!(
            "timestamp {timestamp} must be seconds from the trace start, 0 to {MAX_TIMESTAMP_S}"
        ));
    }
    let api = Api::from_name(api).ok_or_else(|| {
        let names: Vec<&str> = Api::ALL.iter().map(|a| a.name()).collect();
        format!("unknown api `{api}`: use one of {}", names.join(", "))
    })?;
    let amount = p.amount.unwrap_or(1);
    if !(1..=100).contains(&amount) {
        return Err(format!("amount {amount} must be 1 to 100"));
    }
    let min_amount = p.min_amount.unwrap_or(1);
    if !(1..=amount).contains(&min_amount) {
        return Err(format!(
            "min_amount {min_amount} must be 1 to amount ({amount})"
        ));
    }
    let client_token = match token {
        None | Some("") => 0,
        Some(t) if t.len() > 64 || !t.is_ascii() => {
            return Err(format!(
                "client_token `{t}` must be at most 64 ASCII characters"
            ));
        }
        Some(t) => token_hash(t),
    };
    Ok(TraceRecord {
        at: SimDuration::from_secs_f64(timestamp),
        account: AccountId(account),
        api,
        params: Params {
            amount,
            min_amount,
            instance_type: InstanceType(p.instance_type.unwrap_or(0)),
            instance: p.instance.map(InstanceId),
            force: p.force.unwrap_or(api == Api::DeleteInstance),
            page: p.page.unwrap_or(0),
        },
        client_token,
        line,
    })
}

fn csv_params(field: &str) -> Result<RawParams, String> {
    let mut p = RawParams::default();
    for pair in field.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("param `{pair}` must be key=value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("param `{k}` = `{v}`: {e}");
        match k.trim() {
            "amount" => p.amount = Some(v.trim().parse().map_err(|e| bad(&e))?),
            "min_amount" => p.min_amount = Some(v.trim().parse().map_err(|e| bad(&e))?),
            "instance_type" => p.instance_type = Some(v.trim().parse().map_err(|e| bad(&e))?),
            "instance" => p.instance = Some(v.trim().parse().map_err(|e| bad(&e))?),
            "page" => p.page = Some(v.trim().parse().map_err(|e| bad(&e))?),
            "force" => p.force = Some(v.trim().parse().map_err(|e| bad(&e))?),
            other => {
                return Err(format!(
                    "unknown param `{other}`: use amount, min_amount, instance_type, instance, \
                     page or force"
                ));
            }
        }
    }
    Ok(p)
}

const CSV_HEADER: &str = "timestamp,account,api,params,client_token";

impl Trace {
    /// Reads a trace file: `.csv` as CSV, anything else (`.jsonl`, `.ndjson`) as JSON Lines.
    pub fn from_path(path: &Path) -> Result<Trace, TraceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Trace::parse_csv(&file, &text)
        } else {
            Trace::parse_jsonl(&file, &text)
        }
    }

    fn finish(file: &str, records: Vec<TraceRecord>) -> Result<Trace, TraceError> {
        if records.is_empty() {
            return Err(TraceError::Empty {
                file: file.to_string(),
            });
        }
        Ok(Trace {
            file: file.to_string(),
            records,
        })
    }

    /// Parses CSV text; `file` names it in errors.
    pub fn parse_csv(file: &str, text: &str) -> Result<Trace, TraceError> {
        let err = |line: usize, message: String| TraceError::Line {
            file: file.to_string(),
            line,
            message,
        };
        let mut records = Vec::new();
        let mut header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if !header {
                if l.replace(' ', "") != CSV_HEADER {
                    return Err(err(
                        line,
                        format!("expected the header `{CSV_HEADER}`, found `{l}`"),
                    ));
                }
                header = true;
                continue;
            }
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            if fields.len() != 5 {
                return Err(err(
                    line,
                    format!(
                        "expected 5 fields ({CSV_HEADER}), found {}; separate params with `;`",
                        fields.len()
                    ),
                ));
            }
            if records.len() >= MAX_RECORDS {
                return Err(TraceError::TooLarge {
                    file: file.to_string(),
                });
            }
            let timestamp: f64 = fields[0]
                .parse()
                .map_err(|_| err(line, format!("timestamp `{}` is not a number", fields[0])))?;
            let account: u32 = fields[1].parse().map_err(|_| {
                err(
                    line,
                    format!("account `{}` is not an account number", fields[1]),
                )
            })?;
            let params = csv_params(fields[3]).map_err(|m| err(line, m))?;
            let rec = build_record(timestamp, account, fields[2], params, Some(fields[4]), line)
                .map_err(|m| err(line, m))?;
            records.push(rec);
        }
        Trace::finish(file, records)
    }

    /// Parses JSON Lines text; `file` names it in errors.
    pub fn parse_jsonl(file: &str, text: &str) -> Result<Trace, TraceError> {
        let mut records = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let err = |message: String| TraceError::Line {
                file: file.to_string(),
                line,
                message,
            };
            if records.len() >= MAX_RECORDS {
                return Err(TraceError::TooLarge {
                    file: file.to_string(),
                });
            }
            let r: RawJson = serde_json::from_str(l).map_err(|e| err(e.to_string()))?;
            let rec = build_record(
                r.timestamp,
                r.account,
                &r.api,
                r.params.unwrap_or_default(),
                r.client_token.as_deref(),
                line,
            )
            .map_err(err)?;
            records.push(rec);
        }
        Trace::finish(file, records)
    }

    pub fn file(&self) -> &str {
        &self.file
    }
    pub fn records(&self) -> &[TraceRecord] {
        &self.records
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// The latest timestamp (the trace's span as recorded).
    pub fn span(&self) -> SimDuration {
        self.records
            .iter()
            .map(|r| r.at)
            .max()
            .unwrap_or(SimDuration::ZERO)
    }
}

/// How a trace is replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayConfig {
    /// Timestamps are divided by `speed` (2.0 = twice as fast).
    pub speed: f64,
    /// Records kept (< 1, by a draw each) or multiplied (> 1).
    pub scale: f64,
    /// Extra copies (scale > 1) are sent uniformly in `[0, copy_jitter]` after the original.
    pub copy_jitter: SimDuration,
}

impl Default for ReplayConfig {
    fn default() -> ReplayConfig {
        ReplayConfig {
            speed: 1.0,
            scale: 1.0,
            copy_jitter: SimDuration::SECOND,
        }
    }
}

impl ReplayConfig {
    pub fn validate(&self) -> Result<(), TraceError> {
        for (what, value, max) in [
            ("speed", self.speed, MAX_SPEED),
            ("scale", self.scale, MAX_SCALE),
        ] {
            if !value.is_finite() || value <= 0.0 || value > max {
                return Err(TraceError::BadConfig { what, value, max });
            }
        }
        Ok(())
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records in the trace.
    pub records: u64,
    /// Requests scheduled after speed and scale.
    pub scheduled: u64,
    /// Requests not scheduled: more than [`MAX_RECORDS`] after scaling.
    pub over_limit: u64,
    /// Requests sent, and those not sent because they fell after the end of traffic.
    pub sent: u64,
    pub after_end: u64,
    /// Intended starts of the first and last requests sent.
    pub first_at: Option<SimTime>,
    pub last_at: Option<SimTime>,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    at: SimTime,
    record: u32,
    token: u64,
}

/// The replay's state inside the traffic component.
pub(crate) struct ReplayState {
    records: Vec<TraceRecord>,
    items: Vec<Item>,
    next: usize,
    stats: ReplayStats,
}

impl ReplayState {
    pub(crate) fn new(trace: &Trace, cfg: &ReplayConfig, mut rng: SimRng) -> ReplayState {
        cfg.validate().expect("checked by Topology::with_trace");
        let mut items = Vec::with_capacity(
            ((trace.len() as f64 * cfg.scale.max(1.0)).ceil() as usize).min(MAX_RECORDS),
        );
        let mut over_limit = 0u64;
        let whole = cfg.scale.floor();
        let frac = cfg.scale - whole;
        for (i, r) in trace.records.iter().enumerate() {
            let at = SimTime::from_ns((r.at.as_ns() as f64 / cfg.speed).round() as u64);
            let copies = if cfg.scale < 1.0 {
                u64::from(rng.unit() < cfg.scale)
            } else if frac > 0.0 {
                whole as u64 + u64::from(rng.unit() < frac)
            } else {
                whole as u64
            };
            for k in 0..copies {
                let (t, token) = if k == 0 {
                    (at, r.client_token)
                } else {
                    let jitter = rng.below(cfg.copy_jitter.as_ns().saturating_add(1));
                    let token = if r.client_token == 0 {
                        0
                    } else {
                        crate::kernel::rng::mix_label(r.client_token ^ k, "replay.copy") | 1
                    };
                    (at.saturating_add(SimDuration::from_ns(jitter)), token)
                };
                if items.len() >= MAX_RECORDS {
                    over_limit += 1;
                    continue;
                }
                items.push(Item {
                    at: t,
                    record: i as u32,
                    token,
                });
            }
        }
        // Stable: ties keep trace order.
        items.sort_by_key(|it| it.at);
        ReplayState {
            records: trace.records.clone(),
            stats: ReplayStats {
                records: trace.len() as u64,
                scheduled: items.len() as u64,
                over_limit,
                ..ReplayStats::default()
            },
            items,
            next: 0,
        }
    }

    pub(crate) fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// When the first request is due (the first tick).
    pub(crate) fn first_at(&self) -> SimDuration {
        self.items
            .first()
            .map_or(SimDuration::ZERO, |it| it.at.since_start())
    }
}

impl OpenLoop {
    /// Sends the replay's next requests due now and up to [`super::BATCH`] in all, then wakes
    /// up at the next one.
    pub(super) fn on_tick_replay(&mut self, out: &mut Outbox<'_, Msg>) {
        for _ in 0..super::BATCH {
            let Some(r) = self.replay.as_mut() else {
                return;
            };
            let Some(&item) = r.items.get(r.next) else {
                return;
            };
            if item.at > self.cfg.until {
                r.stats.after_end += (r.items.len() - r.next) as u64;
                r.next = r.items.len();
                return;
            }
            r.next += 1;
            r.stats.sent += 1;
            r.stats.first_at.get_or_insert(item.at);
            r.stats.last_at = Some(item.at);
            let rec = r.records[item.record as usize];
            let req = self.replayed(rec, item);
            self.send_call(req, false, out);
        }
        if let Some(r) = self.replay.as_ref() {
            if let Some(item) = r.items.get(r.next) {
                out.send_at(out.me(), item.at.max(out.now()), Msg::TrafficTick);
            }
        }
    }

    fn replayed(&mut self, rec: TraceRecord, item: Item) -> Request {
        let mut account = rec.account;
        let mut params = rec.params;
        let targets = matches!(
            rec.api,
            Api::DescribeInstanceStatus
                | Api::StartInstance
                | Api::StopInstance
                | Api::RebootInstance
                | Api::DeleteInstance
        );
        if targets && params.instance.is_none() {
            let (owner, id) = self.known.pick(&mut self.rng);
            account = owner.unwrap_or(account);
            params.instance = Some(id);
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        if item.token != 0 {
            self.tokens_sent += 1;
        }
        Request {
            id,
            api: rec.api,
            account,
            intended: item.at,
            deadline: item.at.saturating_add(self.cfg.timeout),
            client_token: item.token,
            params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_parse_to_the_same_records() {
        let csv = "# comment\ntimestamp,account,api,params,client_token\n\
                   0.5,3,RunInstances,amount=10;min_amount=2,tok-1\n\
                   1.25,0,DescribeInstances,page=2,\n";
        let jsonl = "{\"timestamp\":0.5,\"account\":3,\"api\":\"RunInstances\",\
                     \"params\":{\"amount\":10,\"min_amount\":2},\"client_token\":\"tok-1\"}\n\
                     \n{\"timestamp\":1.25,\"account\":0,\"api\":\"DescribeInstances\",\
                     \"params\":{\"page\":2}}\n";
        let a = Trace::parse_csv("a.csv", csv).unwrap();
        let b = Trace::parse_jsonl("b.jsonl", jsonl).unwrap();
        assert_eq!(a.len(), 2);
        for (x, y) in a.records().iter().zip(b.records()) {
            assert_eq!(
                (x.at, x.account, x.api, x.params),
                (y.at, y.account, y.api, y.params)
            );
            assert_eq!(x.client_token, y.client_token);
        }
        assert_eq!(a.records()[0].params.amount, 10);
        assert_eq!(a.records()[0].client_token, token_hash("tok-1"));
        assert_eq!(a.records()[1].client_token, 0);
        assert_eq!(a.span(), SimDuration::from_ms(1_250));
    }

    #[test]
    fn errors_name_file_and_line() {
        let csv = "timestamp,account,api,params,client_token\n1,0,RunInstances,,\n\
                   2,0,RunInstance,,\n";
        let e = Trace::parse_csv("t.csv", csv).unwrap_err().to_string();
        assert!(e.starts_with("t.csv:3: unknown api `RunInstance`"), "{e}");
        let e = Trace::parse_csv("t.csv", "timestamp,account\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.csv:1: expected the header"), "{e}");
        let e = Trace::parse_jsonl("t.jsonl", "{\"timestamp\":1}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.jsonl:1: missing field"), "{e}");
        let e = Trace::parse_csv(
            "t.csv",
            "timestamp,account,api,params,client_token\n1,0,RunInstances,amount=500,\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "t.csv:2: amount 500 must be 1 to 100");
        assert!(matches!(
            Trace::parse_csv("e.csv", "timestamp,account,api,params,client_token\n"),
            Err(TraceError::Empty { .. })
        ));
    }
}
