//! Mock files: reading `mocks/*.toml` into validated [`DependencySpec`]s, reporting every problem
//! of every file at once, each at `file:line:column: toml.path: message; hint`.
//!
//! Three passes, so that one mistake does not hide the next:
//! 1. syntax: `toml`'s recoverable parser gives a spanned tree and every syntax error;
//! 2. shape: keys unknown to the raw serde layer are reported (with a did-you-mean taken from the
//!    raw structs' own field lists) and dropped; then the raw layer (`deny_unknown_fields`,
//!    `Spanned` fields) is deserialized, and each type error is reported and its entry dropped
//!    before trying again;
//! 3. meaning: the validator checks ranges, names, references and cross-field rules on the raw
//!    layer and builds the spec only if nothing was wrong.

use super::diag::{Diag, MockError, Problem, closest, name_hint};
use super::spec::{DependencySpec, EndpointSpec, ErrorSpec, StockSpec, limits};
use super::vocab::{DepOp, DependencyKind, Effect, FaultCode};
use crate::api::types::InstanceType;
use crate::kernel::{Dist, SimDuration};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

type Sp<T> = Option<Spanned<T>>;

// ---------------------------------------------------------------------------------------------
// The raw layer: what the file says, parsed but not checked. Every key is optional here so that a
// missing key is reported by the validator (with the others), not as serde's first error.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMock {
    name: Sp<String>,
    kind: Sp<String>,
    description: Sp<String>,
    concurrency: Sp<i64>,
    queue_limit: Sp<i64>,
    latency: Sp<Dist>,
    token_ttl: Sp<SimDuration>,
    token_capacity: Sp<i64>,
    max_records: Sp<i64>,
    stock: Sp<RawStock>,
    endpoint: Sp<Vec<Spanned<RawEndpoint>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStock {
    default: Sp<i64>,
    per_type: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    op: Sp<String>,
    method: Sp<String>,
    path: Sp<String>,
    status: Sp<i64>,
    body: Sp<String>,
    latency: Sp<Dist>,
    errors: Sp<Vec<Spanned<RawError>>>,
    mutating: Sp<bool>,
    effect: Sp<String>,
    max_batch: Sp<i64>,
    batch_factor: Sp<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawError {
    code: Sp<String>,
    status: Sp<i64>,
    probability: Sp<f64>,
    executes: Sp<bool>,
}

/// The field names serde's derive gave a struct (what `deny_unknown_fields` accepts), read by
/// asking the struct to deserialize itself from a probe.
pub(crate) fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("field probe"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The nesting of the raw layer, for the shape pass: which keys hold tables the raw layer reads
/// field by field. Anything else (a `Dist`, a string) is a leaf to the shape pass.
pub(crate) struct Shape {
    pub(crate) fields: fn() -> &'static [&'static str],
    pub(crate) subs: &'static [(&'static str, Sub)],
}

#[derive(Clone, Copy)]
pub(crate) enum Sub {
    /// A table read by a raw struct.
    Table(&'static Shape),
    /// An array of tables, each read by a raw struct.
    Tables(&'static Shape),
    /// A table with free keys and leaf values.
    Map,
}

static ERROR_SHAPE: Shape = Shape {
    fields: fields_of::<RawError>,
    subs: &[],
};
static ENDPOINT_SHAPE: Shape = Shape {
    fields: fields_of::<RawEndpoint>,
    subs: &[("errors", Sub::Tables(&ERROR_SHAPE))],
};
static STOCK_SHAPE: Shape = Shape {
    fields: fields_of::<RawStock>,
    subs: &[("per_type", Sub::Map)],
};
static ROOT_SHAPE: Shape = Shape {
    fields: fields_of::<RawMock>,
    subs: &[
        ("stock", Sub::Table(&STOCK_SHAPE)),
        ("endpoint", Sub::Tables(&ENDPOINT_SHAPE)),
    ],
};

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Whether `span` lies in `v` or anywhere below it (a `[[table]]`'s own span covers only its
/// header, so children are searched too).
fn subtree_contains(v: &Spanned<DeValue<'_>>, span: &Range<usize>) -> bool {
    if contains(&v.span(), span) {
        return true;
    }
    match v.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .any(|(k, v)| contains(&k.span(), span) || subtree_contains(v, span)),
        DeValue::Array(a) => a.iter().any(|e| subtree_contains(e, span)),
        _ => false,
    }
}

fn count_entries(t: &DeTable<'_>) -> usize {
    t.values()
        .map(|v| {
            1 + match v.get_ref() {
                DeValue::Table(t) => count_entries(t),
                DeValue::Array(a) => a
                    .iter()
                    .map(|e| match e.get_ref() {
                        DeValue::Table(t) => count_entries(t),
                        _ => 1,
                    })
                    .sum(),
                _ => 0,
            }
        })
        .sum()
}

/// Reports and drops every key the raw layer does not know, with a did-you-mean. A key it looks
/// like a misspelling of goes to `broken`, so it is not reported missing as well.
fn strip_unknown(
    table: &mut DeTable<'_>,
    shape: &Shape,
    path: &str,
    diag: &mut Diag<'_>,
    broken: &mut BTreeSet<String>,
) {
    let fields = (shape.fields)();
    let unknown: Vec<(String, Range<usize>)> = table
        .keys()
        .filter(|k| !fields.contains(&k.get_ref().as_ref()))
        .map(|k| (k.get_ref().to_string(), k.span()))
        .collect();
    for (key, span) in unknown {
        if let Some(meant) = closest(&key, fields.iter().copied()) {
            broken.insert(join(path, meant));
        }
        diag.at(
            Some(span),
            &join(path, &key),
            format!("unknown key `{key}`"),
            Some(name_hint(&key, "keys here", fields.iter().copied())),
        );
        table.remove(key.as_str());
    }
    for &(name, sub) in shape.subs {
        let Some(v) = table.get_mut(name) else {
            continue;
        };
        let p = join(path, name);
        match (sub, v.get_mut()) {
            (Sub::Table(s), DeValue::Table(t)) => strip_unknown(t, s, &p, diag, broken),
            (Sub::Tables(s), DeValue::Array(a)) => {
                for (i, e) in a.iter_mut().enumerate() {
                    if let DeValue::Table(t) = e.get_mut() {
                        strip_unknown(t, s, &format!("{p}[{i}]"), diag, broken);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Drops the entry a deserialization error at `span` is about (the deepest one the raw layer reads
/// as a whole) and returns its path.
fn prune(
    table: &mut DeTable<'_>,
    shape: Option<&Shape>,
    span: &Range<usize>,
    path: &str,
) -> Option<String> {
    let key = table
        .iter()
        .find(|(k, v)| contains(&k.span(), span) || subtree_contains(v, span))
        .map(|(k, _)| k.get_ref().to_string())?;
    let p = join(path, &key);
    let sub = shape.and_then(|s| s.subs.iter().find(|(n, _)| *n == key).map(|&(_, sub)| sub));
    if let (Some(sub), Some(v)) = (sub, table.get_mut(key.as_str())) {
        let deeper = match (sub, v.get_mut()) {
            (Sub::Table(s), DeValue::Table(t)) => prune(t, Some(s), span, &p),
            (Sub::Map, DeValue::Table(t)) => prune(t, None, span, &p),
            (Sub::Tables(s), DeValue::Array(a)) => a
                .iter_mut()
                .enumerate()
                .find(|(_, e)| subtree_contains(e, span))
                .and_then(|(i, e)| match e.get_mut() {
                    DeValue::Table(t) => prune(t, Some(s), span, &format!("{p}[{i}]")),
                    _ => None,
                }),
            _ => None,
        };
        if deeper.is_some() {
            return deeper;
        }
    }
    table.remove(key.as_str());
    Some(p)
}

/// serde's wording, with Rust type names replaced by TOML ones.
fn toml_words(message: &str) -> String {
    let mut m = message
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false");
    if let Some(i) = m.find("expected struct Raw") {
        m.truncate(i);
        m.push_str("expected a table");
    }
    m
}

/// Passes 1 and 2: the raw layer, or `None` if the syntax is broken. Problems go to `diag`; the
/// paths of entries dropped for a type error go to `broken` (so they are not also "missing").
fn read_raw(text: &str, diag: &mut Diag<'_>, broken: &mut BTreeSet<String>) -> Option<RawMock> {
    read_raw_as(text, &ROOT_SHAPE, diag, broken, |_, _| {})
}

/// Passes 1 and 2 for any raw layer `T` described by `shape`: parses `text` (syntax problems
/// reported, `None` if any), lets `prepare` edit the spanned tree (e.g. apply `--set`
/// overrides), strips and reports unknown keys, then deserializes, dropping and reporting each
/// entry serde refuses until the rest reads.
pub(crate) fn read_raw_as<'t, T: serde::de::DeserializeOwned>(
    text: &'t str,
    shape: &Shape,
    diag: &mut Diag<'_>,
    broken: &mut BTreeSet<String>,
    prepare: impl FnOnce(&mut DeTable<'t>, &mut Diag<'_>),
) -> Option<T> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            diag.at(e.span(), "", format!("TOML syntax: {}", e.message()), None);
        }
        return None;
    }
    let span = root.span();
    let mut table = root.into_inner();
    prepare(&mut table, diag);
    strip_unknown(&mut table, shape, "", diag, broken);
    // Each round drops one entry, so this ends.
    for _ in 0..=count_entries(&table) {
        let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
        match T::deserialize(de) {
            Ok(raw) => return Some(raw),
            Err(e) => {
                let message = toml_words(e.message());
                let Some(espan) = e.span() else {
                    diag.at(None, "", message, None);
                    return None;
                };
                match prune(&mut table, Some(shape), &espan, "") {
                    Some(path) => {
                        diag.at(Some(espan), &path, message, None);
                        broken.insert(path);
                    }
                    None => {
                        diag.at(Some(espan), "", message, None);
                        return None;
                    }
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Pass 3: the validator.

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The validator's helpers: range checks and required keys, each reporting to `diag`.
pub(crate) struct Check<'a, 'd> {
    pub(crate) diag: &'a mut Diag<'d>,
    pub(crate) broken: &'a BTreeSet<String>,
    /// An example line for a missing key (the hint of a "missing key" problem).
    pub(crate) example: fn(&str) -> &'static str,
}

/// An example line for a missing key.
fn example(key: &str) -> &'static str {
    match key {
        "name" => "name = \"inventory\"",
        "kind" => "kind = \"inventory\" (one of inventory, block_storage, vpc, image, billing)",
        "description" => "description = \"what this dependency is\"",
        "concurrency" => "concurrency = 64",
        "queue_limit" => "queue_limit = 1000",
        "latency" => "latency = \"lognormal_p:8ms:60ms\"",
        "stock" => "[stock] with default = 100000",
        "default" => "default = 100000",
        "endpoint" => "[[endpoint]] tables, one per op",
        "method" => "method = \"POST\"",
        "path" => "path = \"/v1/resources\"",
        "status" => "status = 200",
        "body" => "body = '{\"RequestId\": \"{{request_id}}\"}'",
        "code" => "code = \"InternalError\"",
        "probability" => "probability = 0.001",
        _ => "see mocks/README.md",
    }
}

impl Check<'_, '_> {
    pub(crate) fn problem(
        &mut self,
        span: Range<usize>,
        path: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.diag.at(Some(span), path, message, hint);
    }

    /// The value of a required key; reports it missing (at `parent`) unless it was dropped for a
    /// type error already.
    pub(crate) fn required<'r, T>(
        &mut self,
        v: &'r Sp<T>,
        parent: &Range<usize>,
        path: &str,
        key: &str,
    ) -> Option<&'r Spanned<T>> {
        if v.is_none() {
            let p = join(path, key);
            if !self.broken.contains(&p) {
                self.problem(
                    parent.clone(),
                    &p,
                    format!("missing key `{key}`"),
                    Some(format!("add {}", (self.example)(key))),
                );
            }
        }
        v.as_ref()
    }

    pub(crate) fn int(&mut self, v: &Spanned<i64>, path: &str, lo: i64, hi: i64) -> Option<i64> {
        let x = *v.get_ref();
        if (lo..=hi).contains(&x) {
            Some(x)
        } else {
            self.out_of_range(v, path, lo, hi)
        }
    }

    /// Reports `v` as out of the range `lo` to `hi` (the problem a range check raises); `None`.
    fn out_of_range<T: std::fmt::Display>(
        &mut self,
        v: &Spanned<T>,
        path: &str,
        lo: T,
        hi: T,
    ) -> Option<T> {
        self.problem(
            v.span(),
            path,
            format!("{} is out of range", v.get_ref()),
            Some(format!("allowed range: {lo} to {hi}")),
        );
        None
    }

    pub(crate) fn float(&mut self, v: &Spanned<f64>, path: &str, lo: f64, hi: f64) -> Option<f64> {
        let x = *v.get_ref();
        if x.is_finite() && (lo..=hi).contains(&x) {
            Some(x)
        } else {
            self.out_of_range(v, path, lo, hi)
        }
    }

    pub(crate) fn opt_int(
        &mut self,
        v: &Sp<i64>,
        path: &str,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Option<i64> {
        match v {
            // Dropped for a type error (already reported): no default stands in for it.
            None if self.broken.contains(path) => None,
            None => Some(default),
            Some(v) => self.int(v, path, lo, hi),
        }
    }

    /// An optional float in `lo..=hi`, or `default` when absent (unless dropped for a type
    /// error already reported).
    pub(crate) fn opt_float(
        &mut self,
        v: &Sp<f64>,
        path: &str,
        lo: f64,
        hi: f64,
        default: f64,
    ) -> Option<f64> {
        match v {
            None if self.broken.contains(path) => None,
            None => Some(default),
            Some(v) => self.float(v, path, lo, hi),
        }
    }

    /// An optional duration in `lo..=hi`, or `default` when absent (unless dropped for a type
    /// error already reported).
    pub(crate) fn opt_duration(
        &mut self,
        v: &Sp<SimDuration>,
        path: &str,
        lo: SimDuration,
        hi: SimDuration,
        default: SimDuration,
    ) -> Option<SimDuration> {
        let Some(v) = v else {
            return (!self.broken.contains(path)).then_some(default);
        };
        let d = *v.get_ref();
        if (lo..=hi).contains(&d) {
            Some(d)
        } else {
            self.out_of_range(v, path, lo, hi)
        }
    }

    /// The top-level `name`: non-empty text of at most `max` bytes in lowercase letters, digits,
    /// `_` and `-`. `used_for` (why it must be plain) ends the hint of the problem otherwise.
    pub(crate) fn plain_name(
        &mut self,
        n: &Spanned<String>,
        max: usize,
        used_for: &str,
    ) -> Option<String> {
        let s = self.text(n, "name", max)?;
        if s.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
        {
            Some(s)
        } else {
            self.problem(
                n.span(),
                "name",
                format!("`{s}` is not a plain name"),
                Some(format!(
                    "use lowercase letters, digits, `_` and `-` ({used_for})"
                )),
            );
            None
        }
    }

    pub(crate) fn text(&mut self, v: &Spanned<String>, path: &str, max: usize) -> Option<String> {
        let s = v.get_ref();
        if s.trim().is_empty() {
            self.problem(v.span(), path, "must not be empty".into(), None);
            None
        } else if s.len() > max {
            self.problem(
                v.span(),
                path,
                format!("is {} bytes long", s.len()),
                Some(format!("at most {max} bytes")),
            );
            None
        } else {
            Some(s.clone())
        }
    }
}

fn validate(
    file: &str,
    raw: &RawMock,
    name_pos: (u32, u32),
    c: &mut Check<'_, '_>,
) -> Option<DependencySpec> {
    let root = 0..0;
    let kind = c.required(&raw.kind, &root, "", "kind").and_then(|k| {
        let found = DependencyKind::from_name(k.get_ref());
        if found.is_none() {
            c.problem(
                k.span(),
                "kind",
                format!("unknown dependency kind `{}`", k.get_ref()),
                Some(name_hint(
                    k.get_ref(),
                    "kinds",
                    DependencyKind::ALL.iter().map(|k| k.name()),
                )),
            );
        }
        found
    });
    let name = c
        .required(&raw.name, &root, "", "name")
        .and_then(|n| c.plain_name(n, limits::MAX_NAME_LEN, "scenarios refer to it"));
    let description = c
        .required(&raw.description, &root, "", "description")
        .and_then(|d| c.text(d, "description", 4096));
    let concurrency = c
        .required(&raw.concurrency, &root, "", "concurrency")
        .and_then(|v| c.int(v, "concurrency", 1, limits::MAX_CONCURRENCY));
    let queue_limit = c
        .required(&raw.queue_limit, &root, "", "queue_limit")
        .and_then(|v| c.int(v, "queue_limit", 0, limits::MAX_QUEUE_LIMIT));
    let latency = c
        .required(&raw.latency, &root, "", "latency")
        .map(|d| d.get_ref().clone());
    let token_ttl = c.opt_duration(
        &raw.token_ttl,
        "token_ttl",
        limits::MIN_TOKEN_TTL,
        limits::MAX_TOKEN_TTL,
        limits::DEFAULT_TOKEN_TTL,
    );
    let token_capacity = c.opt_int(
        &raw.token_capacity,
        "token_capacity",
        1,
        limits::MAX_TOKEN_CAPACITY,
        i64::from(limits::DEFAULT_TOKEN_CAPACITY),
    );
    let max_records = c.opt_int(
        &raw.max_records,
        "max_records",
        1,
        limits::MAX_RECORDS,
        limits::DEFAULT_MAX_RECORDS as i64,
    );
    let stock = validate_stock(raw, kind, c);
    let endpoints = validate_endpoints(raw, kind, c);

    if !c.diag.is_clean() {
        return None;
    }
    Some(DependencySpec {
        file: file.to_string(),
        name: name?,
        name_pos,
        kind: kind?,
        description: description?,
        concurrency: u32::try_from(concurrency?).ok()?,
        queue_limit: u32::try_from(queue_limit?).ok()?,
        latency: latency?,
        token_ttl: token_ttl?,
        token_capacity: u32::try_from(token_capacity?).ok()?,
        max_records: u64::try_from(max_records?).ok()?,
        stock: stock?,
        endpoints: endpoints?,
    })
}

/// `Some(None)`: no stock, rightly; `None`: a problem was reported.
fn validate_stock(
    raw: &RawMock,
    kind: Option<DependencyKind>,
    c: &mut Check<'_, '_>,
) -> Option<Option<StockSpec>> {
    let is_inventory = kind == Some(DependencyKind::Inventory);
    let Some(stock) = &raw.stock else {
        if is_inventory {
            c.required(&raw.stock, &(0..0), "", "stock");
            return None;
        }
        return Some(None);
    };
    if !is_inventory {
        if kind.is_some() {
            c.problem(
                stock.span(),
                "stock",
                "only an inventory keeps stock".into(),
                Some("remove [stock]".into()),
            );
        }
        return None;
    }
    let s = stock.get_ref();
    let default = c
        .required(&s.default, &stock.span(), "stock", "default")
        .and_then(|v| c.int(v, "stock.default", 0, limits::MAX_STOCK));
    let mut per_type = BTreeMap::new();
    let mut ok = true;
    for (k, v) in s.per_type.iter().flatten() {
        let path = format!("stock.per_type.{}", k.get_ref());
        let t = k.get_ref().parse::<u16>().ok();
        if t.is_none() {
            c.problem(
                k.span(),
                &path,
                format!("`{}` is not an instance-type index", k.get_ref()),
                Some(
                    "keys are instance-type indices 0 to 65535, e.g. per_type = { 0 = 5000 }"
                        .into(),
                ),
            );
        }
        let n = c.int(v, &path, 0, limits::MAX_STOCK);
        match (t, n) {
            (Some(t), Some(n)) => {
                per_type.insert(InstanceType(t), n as u64);
            }
            _ => ok = false,
        }
    }
    let default = default?;
    ok.then_some(Some(StockSpec {
        default: default as u64,
        per_type,
    }))
}

fn validate_endpoints(
    raw: &RawMock,
    kind: Option<DependencyKind>,
    c: &mut Check<'_, '_>,
) -> Option<Vec<EndpointSpec>> {
    let endpoints = c.required(&raw.endpoint, &(0..0), "", "endpoint")?;
    let mut out = Vec::with_capacity(endpoints.get_ref().len());
    let mut seen: BTreeMap<DepOp, Range<usize>> = BTreeMap::new();
    let mut ok = true;
    let mut ops_readable = true;
    for (i, ep) in endpoints.get_ref().iter().enumerate() {
        let p = format!("endpoint[{i}]");
        match validate_endpoint(ep, &p, kind, &mut seen, c) {
            Some(e) => out.push(e),
            None => ok = false,
        }
        let op_known = ep
            .get_ref()
            .op
            .as_ref()
            .and_then(|o| DepOp::from_name(o.get_ref()))
            .is_some_and(|op| Some(op.kind()) == kind);
        ops_readable &= op_known;
    }
    // An op that could not be read may be the one that looks missing: say nothing then.
    if let Some(kind) = kind.filter(|_| ops_readable) {
        let missing: Vec<DepOp> = kind.ops().filter(|op| !seen.contains_key(op)).collect();
        let at = raw.kind.as_ref().map_or(0..0, |k| k.span());
        for op in missing {
            c.problem(
                at.clone(),
                "endpoint",
                format!("no endpoint for op `{op}`, which a {kind} dependency serves"),
                Some(format!("add an [[endpoint]] with op = \"{op}\"")),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

fn validate_endpoint(
    ep: &Spanned<RawEndpoint>,
    p: &str,
    kind: Option<DependencyKind>,
    seen: &mut BTreeMap<DepOp, Range<usize>>,
    c: &mut Check<'_, '_>,
) -> Option<EndpointSpec> {
    let span = ep.span();
    let e = ep.get_ref();
    let op = c.required(&e.op, &span, p, "op").and_then(|o| {
        let path = join(p, "op");
        let name = o.get_ref();
        let candidates: Vec<&str> = match kind {
            Some(k) => k.ops().map(|op| op.name()).collect(),
            None => DepOp::ALL.iter().map(|op| op.name()).collect(),
        };
        let what = kind.map_or("ops".to_string(), |k| format!("ops of {k}"));
        match DepOp::from_name(name) {
            None => {
                c.problem(
                    o.span(),
                    &path,
                    format!("unknown op `{name}`"),
                    Some(name_hint(name, &what, candidates.iter().copied())),
                );
                None
            }
            Some(op) if kind.is_some_and(|k| k != op.kind()) => {
                c.problem(
                    o.span(),
                    &path,
                    format!(
                        "op `{name}` is served by kind {}, not {}",
                        op.kind(),
                        kind.map_or("", |k| k.name())
                    ),
                    Some(name_hint(name, &what, candidates.iter().copied())),
                );
                None
            }
            Some(op) => {
                if let Some(first) = seen.get(&op) {
                    let first_line = c.diag.line_of(first.start);
                    c.problem(
                        o.span(),
                        &path,
                        format!("op `{name}` has a second endpoint"),
                        Some(format!("the first is at line {first_line}: keep one")),
                    );
                    None
                } else {
                    seen.insert(op, o.span());
                    Some(op)
                }
            }
        }
    });
    let method = c.required(&e.method, &span, p, "method").and_then(|m| {
        let s = m.get_ref();
        if METHODS.contains(&s.as_str()) {
            Some(s.clone())
        } else {
            let hint = match closest(s, METHODS) {
                Some(best) => {
                    format!("did you mean `{best}`? (methods: GET, POST, PUT, DELETE, PATCH)")
                }
                None => "methods: GET, POST, PUT, DELETE, PATCH".into(),
            };
            c.problem(
                m.span(),
                &join(p, "method"),
                format!("unknown HTTP method `{s}`"),
                Some(hint),
            );
            None
        }
    });
    let path = c.required(&e.path, &span, p, "path").and_then(|v| {
        let s = v.get_ref();
        let at = join(p, "path");
        if !s.starts_with('/') || s.chars().any(char::is_whitespace) {
            c.problem(
                v.span(),
                &at,
                format!("`{s}` is not a URL path"),
                Some("start with `/` and use no spaces, e.g. \"/v1/hosts\"".into()),
            );
            None
        } else {
            c.text(v, &at, limits::MAX_PATH_LEN)
        }
    });
    let status = c
        .required(&e.status, &span, p, "status")
        .and_then(|v| c.int(v, &join(p, "status"), 200, 299));
    let body = c.required(&e.body, &span, p, "body").and_then(|b| {
        if b.get_ref().len() > limits::MAX_BODY_LEN {
            c.problem(
                b.span(),
                &join(p, "body"),
                format!("is {} bytes long", b.get_ref().len()),
                Some(format!("at most {} bytes", limits::MAX_BODY_LEN)),
            );
            None
        } else {
            Some(b.get_ref().clone())
        }
    });
    let errors = validate_errors(e, p, c);
    let mut consistent = true;
    if let (Some(op), Some(m)) = (op, &e.mutating) {
        if *m.get_ref() != op.effect().is_mutating() {
            let verb = match op.effect() {
                Effect::None => "changes no",
                Effect::Create => "creates",
                Effect::Delete => "deletes",
                Effect::Attach => "attaches",
                Effect::Detach => "detaches",
            };
            let does = format!("{verb} {} records", op.resource());
            c.problem(
                m.span(),
                &join(p, "mutating"),
                format!("`mutating = {}` but op `{op}` {does}", m.get_ref()),
                Some(format!(
                    "write mutating = {} (or leave it out)",
                    op.effect().is_mutating()
                )),
            );
            consistent = false;
        }
    }
    if let Some(eff) = &e.effect {
        let s = eff.get_ref();
        match Effect::from_name(s) {
            None => {
                c.problem(
                    eff.span(),
                    &join(p, "effect"),
                    format!("unknown effect `{s}`"),
                    Some(name_hint(
                        s,
                        "effects",
                        Effect::ALL.iter().map(|e| e.name()),
                    )),
                );
                consistent = false;
            }
            Some(found) => {
                if let Some(op) = op.filter(|op| op.effect() != found) {
                    c.problem(
                        eff.span(),
                        &join(p, "effect"),
                        format!("op `{op}` has effect `{}`, not `{found}`", op.effect()),
                        Some(format!(
                            "write effect = \"{}\" (or leave it out)",
                            op.effect()
                        )),
                    );
                    consistent = false;
                }
            }
        }
    }
    let max_batch = c.opt_int(
        &e.max_batch,
        &join(p, "max_batch"),
        1,
        limits::MAX_BATCH,
        i64::from(limits::DEFAULT_MAX_BATCH),
    );
    let batch_factor = match &e.batch_factor {
        None => Some(0.0),
        Some(v) => c.float(v, &join(p, "batch_factor"), 0.0, limits::MAX_BATCH_FACTOR),
    };
    if !consistent {
        return None;
    }
    Some(EndpointSpec {
        op: op?,
        method: method?,
        path: path?,
        status: u16::try_from(status?).ok()?,
        body: body?,
        latency: e.latency.as_ref().map(|d| d.get_ref().clone()),
        errors: errors?,
        max_batch: u32::try_from(max_batch?).ok()?,
        batch_factor: batch_factor?,
    })
}

fn validate_errors(e: &RawEndpoint, p: &str, c: &mut Check<'_, '_>) -> Option<Vec<ErrorSpec>> {
    let Some(list) = &e.errors else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: BTreeSet<FaultCode> = BTreeSet::new();
    let mut sum = 0.0;
    for (j, er) in list.get_ref().iter().enumerate() {
        let ep = format!("{p}.errors[{j}]");
        let span = er.span();
        let r = er.get_ref();
        let code = c.required(&r.code, &span, &ep, "code").and_then(|v| {
            let s = v.get_ref();
            match FaultCode::from_name(s) {
                None => {
                    c.problem(
                        v.span(),
                        &join(&ep, "code"),
                        format!("unknown error code `{s}`"),
                        Some(name_hint(
                            s,
                            "codes",
                            FaultCode::ALL.iter().map(|c| c.name()),
                        )),
                    );
                    None
                }
                Some(code) if !seen.insert(code) => {
                    c.problem(
                        v.span(),
                        &join(&ep, "code"),
                        format!("error code `{s}` is listed twice"),
                        Some("keep one entry per code".into()),
                    );
                    None
                }
                Some(code) => Some(code),
            }
        });
        let probability = c
            .required(&r.probability, &span, &ep, "probability")
            .and_then(|v| c.float(v, &join(&ep, "probability"), 0.0, 1.0));
        if let Some(pr) = probability {
            sum += pr;
        }
        let status = match (&r.status, code) {
            (Some(s), Some(FaultCode::Timeout)) => {
                c.problem(
                    s.span(),
                    &join(&ep, "status"),
                    "a timeout never replies, so it has no status".into(),
                    Some("remove `status`".into()),
                );
                None
            }
            (Some(s), _) => c
                .int(s, &join(&ep, "status"), 400, 599)
                .and_then(|s| u16::try_from(s).ok())
                .map(Some),
            (None, Some(code)) => Some(code.error_code().map(|e| e.http_status())),
            (None, None) => None,
        };
        let executes = match (&r.executes, code) {
            (None, _) => Some(false),
            (Some(x), Some(FaultCode::Timeout)) => Some(*x.get_ref()),
            (Some(x), Some(_)) => {
                c.problem(
                    x.span(),
                    &join(&ep, "executes"),
                    "`executes` applies only to code = \"timeout\"".into(),
                    Some("an error reply never has a side effect: remove `executes`".into()),
                );
                None
            }
            (Some(_), None) => None,
        };
        match (code, probability, status, executes) {
            (Some(code), Some(probability), Some(status), Some(executes)) => out.push(ErrorSpec {
                code,
                status,
                probability,
                executes,
            }),
            _ => ok = false,
        }
    }
    if sum > 1.0 + 1e-9 {
        c.problem(
            list.span(),
            &join(p, "errors"),
            format!("error probabilities sum to {sum}, more than 1"),
            Some("the sum is the chance a call fails: lower some so it is at most 1".into()),
        );
        ok = false;
    }
    ok.then_some(out)
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// Reads one mock file's text. `file_name` only names the file in problems.
pub fn parse_mock(file_name: &str, text: &str) -> Result<DependencySpec, MockError> {
    let mut diag = Diag::new(file_name, text);
    if text.len() as u64 > limits::MAX_FILE_BYTES {
        diag.at(
            None,
            "",
            format!("the file is {} bytes long", text.len()),
            Some(format!("at most {} bytes", limits::MAX_FILE_BYTES)),
        );
        return Err(MockError::new(diag.problems));
    }
    let mut broken = BTreeSet::new();
    let raw = read_raw(text, &mut diag, &mut broken);
    let spec = raw.and_then(|raw| {
        let name_pos = raw
            .name
            .as_ref()
            .map_or((1, 1), |n| diag.position(n.span().start));
        let mut check = Check {
            diag: &mut diag,
            broken: &broken,
            example,
        };
        validate(file_name, &raw, name_pos, &mut check)
    });
    match spec {
        Some(spec) if diag.is_clean() => Ok(spec),
        _ => {
            if diag.is_clean() {
                diag.at(None, "", "the file could not be read", None);
            }
            Err(MockError::new(diag.problems))
        }
    }
}

fn io_problem(file: &str, message: String) -> Problem {
    Problem {
        file: file.to_string(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
        hint: None,
    }
}

fn read_text(path: &Path) -> Result<String, Problem> {
    let file = path.display().to_string();
    let meta =
        std::fs::metadata(path).map_err(|e| io_problem(&file, format!("cannot read: {e}")))?;
    if meta.len() > limits::MAX_FILE_BYTES {
        return Err(Problem {
            hint: Some(format!("at most {} bytes", limits::MAX_FILE_BYTES)),
            ..io_problem(&file, format!("the file is {} bytes long", meta.len()))
        });
    }
    std::fs::read_to_string(path).map_err(|e| io_problem(&file, format!("cannot read: {e}")))
}

/// Reads one mock file.
pub fn load_mock_file(path: &Path) -> Result<DependencySpec, MockError> {
    let text = read_text(path).map_err(|p| MockError::new(vec![p]))?;
    parse_mock(&path.display().to_string(), &text)
}

/// Reads every `*.toml` file of `dir`, sorted by file name (`read_dir` order is not
/// deterministic). Names must be unique across the files. Problems of all files come together.
pub fn load_mocks_dir(dir: impl AsRef<Path>) -> Result<Vec<DependencySpec>, MockError> {
    let dir = dir.as_ref();
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MockError::new(vec![io_problem(&shown, format!("cannot list: {e}"))]))?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
                    files.push(path);
                }
            }
            Err(e) => problems.push(io_problem(&shown, format!("cannot list: {e}"))),
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.len() > limits::MAX_FILES {
        problems.push(Problem {
            hint: Some(format!("at most {} mock files", limits::MAX_FILES)),
            ..io_problem(&shown, format!("{} mock files", files.len()))
        });
        files.truncate(limits::MAX_FILES);
    }
    let mut specs: Vec<DependencySpec> = Vec::with_capacity(files.len());
    for path in &files {
        match load_mock_file(path) {
            Ok(spec) => {
                if let Some(first) = specs.iter().find(|s| s.name == spec.name) {
                    problems.push(Problem {
                        file: spec.file.clone(),
                        line: spec.name_pos.0,
                        column: spec.name_pos.1,
                        path: "name".into(),
                        message: format!("name `{}` is used by {} too", spec.name, first.file),
                        hint: Some("names must be unique: scenarios refer to them".into()),
                    });
                }
                specs.push(spec);
            }
            Err(e) => problems.extend_from_slice(e.problems()),
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(MockError::new(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mocks_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mocks")
    }

    const BROKEN: &str = r#"name = "broken"
kind = "inventory"
description = "a broken mock"
concurrency = 0
queue_limit = 10
latncy = "lognormal_p:8ms:60ms"

[stock]
default = 100

[[endpoint]]
op = "alocate_host"
method = "POST"
path = "/v1/a"
status = 200
body = "{}"
errors = [
  { code = "InternalEror", probability = 0.01 },
  { code = "Throttling", probability = 1.5 },
]

[[endpoint]]
op = "release_host"
method = "DELETE"
path = "/v1/a/1"
status = 200
body = "{}"
"#;

    fn lines(text: &str) -> Vec<String> {
        match parse_mock("t.toml", text) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    /// A valid one-endpoint mock to break in tests.
    const IMAGE: &str = r#"name = "img"
kind = "image"
description = "test image service"
concurrency = 4
queue_limit = 8
latency = "det:5ms"

[[endpoint]]
op = "get_image"
method = "GET"
path = "/v1/images/1"
status = 200
body = "{}"
"#;

    #[test]
    fn every_shipped_mock_parses() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(mocks_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let spec = load_mock_file(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(spec.file(), path.display().to_string());
                for op in spec.kind().ops() {
                    assert!(spec.endpoint(op).is_some(), "{}: no {op}", spec.name());
                }
                for e in spec.endpoints() {
                    let sum: f64 = e.errors().iter().map(|x| x.probability()).sum();
                    assert!(sum <= 1.0);
                    assert!(!e.body().is_empty() && e.path().starts_with('/'));
                }
                names.push((
                    path.file_name().unwrap().to_owned(),
                    spec.name().to_string(),
                ));
            }
        }
        assert_eq!(names.len(), 5, "{names:?}");
        names.sort();
        let all = load_mocks_dir(mocks_dir()).unwrap();
        let loaded: Vec<&str> = all.iter().map(|s| s.name()).collect();
        let expected: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(loaded, expected, "sorted by file name");
        let mut kinds: Vec<DependencyKind> = all.iter().map(|s| s.kind()).collect();
        kinds.sort();
        assert_eq!(kinds, DependencyKind::ALL.to_vec());
        let inv = all
            .iter()
            .find(|s| s.kind() == DependencyKind::Inventory)
            .unwrap();
        assert_eq!(inv.stock().unwrap().initial(InstanceType(3)), 2_000);
        assert_eq!(inv.stock().unwrap().initial(InstanceType(99)), 1_000_000);
    }

    #[test]
    fn broken_mock_reports_every_problem_with_place_and_hint() {
        assert_eq!(
            lines(BROKEN),
            [
                "t.toml:4:15: concurrency: 0 is out of range; allowed range: 1 to 1000000",
                "t.toml:6:1: latncy: unknown key `latncy`; did you mean `latency`?",
                "t.toml:12:6: endpoint[0].op: unknown op `alocate_host`; did you mean `allocate_host`?",
                "t.toml:18:12: endpoint[0].errors[0].code: unknown error code `InternalEror`; did you mean `InternalError`?",
                "t.toml:19:40: endpoint[0].errors[1].probability: 1.5 is out of range; allowed range: 0 to 1",
            ]
        );
        let e = parse_mock("t.toml", BROKEN).unwrap_err();
        assert_eq!(e.problems().len(), 5);
        assert_eq!((e.problems()[1].line, e.problems()[1].column), (6, 1));
        assert_eq!(e.problems()[1].path, "latncy");
    }

    #[test]
    fn syntax_errors_are_located() {
        let got = lines("name = \"x\"\nconcurrency = = 3\n");
        assert!(!got.is_empty());
        assert!(got[0].starts_with("t.toml:2:15: TOML syntax: "), "{got:?}");
    }

    #[test]
    fn type_errors_are_all_reported_without_knock_on_missing_keys() {
        let text = IMAGE
            .replace("status = 200", "status = \"200\"")
            .replace("method = \"GET\"", "method = 5")
            .replace(
                "latency = \"det:5ms\"",
                "latency = \"lognormal_p:60ms:8ms\"",
            );
        assert_eq!(
            lines(&text),
            [
                "t.toml:6:11: latency: lognormal needs p99 > p50, got p50 = 0.06, p99 = 0.008",
                "t.toml:10:10: endpoint[0].method: invalid type: integer `5`, expected a string",
                "t.toml:12:10: endpoint[0].status: invalid type: string \"200\", expected an integer",
            ]
        );
        let text = IMAGE.to_string() + "errors = [{ code = \"timeout\", probability = 0.5 }, 3]\n";
        assert_eq!(
            lines(&text),
            ["t.toml:14:52: endpoint[0].errors: invalid type: integer `3`, expected a table"]
        );
    }

    #[test]
    fn missing_keys_name_an_example() {
        let text = IMAGE
            .replace("name = \"img\"\n", "")
            .replace("body = \"{}\"\n", "");
        assert_eq!(
            lines(&text),
            [
                "t.toml:1:1: name: missing key `name`; add name = \"inventory\"",
                "t.toml:7:1: endpoint[0].body: missing key `body`; add body = '{\"RequestId\": \"{{request_id}}\"}'",
            ]
        );
    }

    #[test]
    fn cross_field_rules_are_checked() {
        let text = r#"name = "net"
kind = "vpc"
description = "d"
concurrency = 4
queue_limit = 8
latency = "det:5ms"
[stock]
default = 5

[[endpoint]]
op = "create_eni"
method = "post"
path = "v1/eni"
status = 500
body = "{}"
mutating = false
effect = "delete"
errors = [
  { code = "InternalError", probability = 0.7 },
  { code = "timeout", probability = 0.4, status = 504 },
  { code = "Throttling", probability = 0.0, executes = true },
  { code = "InternalError", probability = 0.0 },
]

[[endpoint]]
op = "create_eni"
method = "POST"
path = "/v1/eni"
status = 200
body = "{}"
max_batch = 0
batch_factor = -1

[[endpoint]]
op = "get_image"
method = "GET"
path = "/x"
status = 200
body = ""
"#;
        let got = lines(text);
        let expected = [
            "t.toml:7:1: stock: only an inventory keeps stock; remove [stock]",
            "t.toml:12:10: endpoint[0].method: unknown HTTP method `post`; did you mean `POST`? (methods: GET, POST, PUT, DELETE, PATCH)",
            "t.toml:13:8: endpoint[0].path: `v1/eni` is not a URL path; start with `/` and use no spaces, e.g. \"/v1/hosts\"",
            "t.toml:14:10: endpoint[0].status: 500 is out of range; allowed range: 200 to 299",
            "t.toml:16:12: endpoint[0].mutating: `mutating = false` but op `create_eni` creates eni records; write mutating = true (or leave it out)",
            "t.toml:17:10: endpoint[0].effect: op `create_eni` has effect `create`, not `delete`; write effect = \"create\" (or leave it out)",
            "t.toml:18:10: endpoint[0].errors: error probabilities sum to 1.1, more than 1; the sum is the chance a call fails: lower some so it is at most 1",
            "t.toml:20:51: endpoint[0].errors[1].status: a timeout never replies, so it has no status; remove `status`",
            "t.toml:21:56: endpoint[0].errors[2].executes: `executes` applies only to code = \"timeout\"; an error reply never has a side effect: remove `executes`",
            "t.toml:22:12: endpoint[0].errors[3].code: error code `InternalError` is listed twice; keep one entry per code",
            "t.toml:26:6: endpoint[1].op: op `create_eni` has a second endpoint; the first is at line 11: keep one",
            "t.toml:31:13: endpoint[1].max_batch: 0 is out of range; allowed range: 1 to 10000",
            "t.toml:32:16: endpoint[1].batch_factor: -1 is out of range; allowed range: 0 to 10",
            "t.toml:35:6: endpoint[2].op: op `get_image` is served by kind image, not vpc; known ops of vpc: `create_eni`, `delete_eni`, `allocate_eip`, `release_eip`, `allocate_bandwidth`, `release_bandwidth`",
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn every_op_of_the_kind_needs_an_endpoint() {
        let text = IMAGE
            .replace("kind = \"image\"", "kind = \"billing\"")
            .replace("op = \"get_image\"", "op = \"start_billing\"");
        assert_eq!(
            lines(&text),
            [
                "t.toml:2:8: endpoint: no endpoint for op `stop_billing`, which a billing dependency serves; add an [[endpoint]] with op = \"stop_billing\""
            ]
        );
    }

    #[test]
    fn inventory_stock_is_checked() {
        let text = IMAGE
            .replace("kind = \"image\"", "kind = \"inventory\"")
            .replace("op = \"get_image\"", "op = \"allocate_host\"")
            + "\n[[endpoint]]\nop = \"release_host\"\nmethod = \"DELETE\"\npath = \"/h\"\nstatus = 200\nbody = \"\"\n";
        assert_eq!(
            lines(&text),
            ["t.toml:1:1: stock: missing key `stock`; add [stock] with default = 100000"]
        );
        let with_stock =
            text.clone() + "[stock]\ndefault = 7\nper_type = { 2 = 3, big = 4, 5 = -1 }\n";
        assert_eq!(
            lines(&with_stock),
            [
                "t.toml:23:21: stock.per_type.big: `big` is not an instance-type index; keys are instance-type indices 0 to 65535, e.g. per_type = { 0 = 5000 }",
                "t.toml:23:34: stock.per_type.5: -1 is out of range; allowed range: 0 to 1000000000000",
            ]
        );
        let good = text + "[stock]\ndefault = 7\nper_type = { 2 = 3 }\n";
        let spec = parse_mock("t.toml", &good).unwrap();
        let stock = spec.stock().unwrap();
        assert_eq!(
            (
                stock.initial(InstanceType(2)),
                stock.initial(InstanceType(0))
            ),
            (3, 7)
        );
    }

    #[test]
    fn values_are_kept_with_defaults() {
        let text = IMAGE.to_string()
            + "errors = [{ code = \"InternalError\", probability = 0.25 }, { code = \"timeout\", probability = 0.5, executes = true }, { code = \"OperationDenied.NoStock\", probability = 0.125, status = 409 }]\nlatency = { kind = \"exp\", mean = \"2ms\" }\nbatch_factor = 0.5\n";
        let spec = parse_mock("t.toml", &text).unwrap();
        assert_eq!(spec.name(), "img");
        assert_eq!(spec.kind(), DependencyKind::Image);
        assert_eq!((spec.concurrency(), spec.queue_limit()), (4, 8));
        assert_eq!(spec.token_ttl(), SimDuration::from_secs(86_400));
        assert_eq!(spec.token_capacity(), limits::DEFAULT_TOKEN_CAPACITY);
        assert_eq!(spec.max_records(), limits::DEFAULT_MAX_RECORDS);
        assert!(spec.stock().is_none());
        let e = spec.endpoint(DepOp::GetImage).unwrap();
        assert_eq!(
            (e.method(), e.path(), e.status(), e.body()),
            ("GET", "/v1/images/1", 200, "{}")
        );
        assert_eq!(e.max_batch(), 100);
        assert_eq!(e.batch_factor(), 0.5);
        assert!(!e.mutating());
        assert_eq!(e.own_latency(), Some(&Dist::exponential(0.002).unwrap()));
        assert_eq!(spec.default_latency(), &Dist::constant(0.005).unwrap());
        let errs: Vec<(FaultCode, Option<u16>, f64, bool)> = e
            .errors()
            .iter()
            .map(|x| (x.code(), x.status(), x.probability(), x.executes()))
            .collect();
        assert_eq!(
            errs,
            [
                (FaultCode::InternalError, Some(500), 0.25, false),
                (FaultCode::Timeout, None, 0.5, true),
                (FaultCode::NoStock, Some(409), 0.125, false),
            ]
        );
    }

    #[test]
    fn raw_layer_field_lists_come_from_serde() {
        assert_eq!(
            fields_of::<RawError>(),
            ["code", "status", "probability", "executes"]
        );
        assert_eq!(fields_of::<RawStock>(), ["default", "per_type"]);
        // The raw layer alone refuses unknown keys (the shape pass reports them all first).
        let e = toml::from_str::<RawError>("code = \"x\"\nbogus = 1\n")
            .err()
            .unwrap();
        assert!(e.message().contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn oversized_text_is_refused() {
        let big = "#".repeat(limits::MAX_FILE_BYTES as usize + 1);
        assert_eq!(
            lines(&big),
            ["t.toml:1:1: the file is 1048577 bytes long; at most 1048576 bytes"]
        );
    }

    #[test]
    fn a_directory_is_read_in_name_order_with_problems_of_every_file() {
        let dir = std::env::temp_dir().join(format!("firedrill-deps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |f: &str, text: &str| std::fs::write(dir.join(f), text).unwrap();
        write("b.toml", &IMAGE.replace("\"img\"", "\"second\""));
        write("a.toml", IMAGE);
        write("notes.md", "not a mock");
        let specs = load_mocks_dir(&dir).unwrap();
        assert_eq!(
            specs.iter().map(|s| s.name()).collect::<Vec<_>>(),
            ["img", "second"]
        );
        write("c.toml", IMAGE);
        write(
            "d.toml",
            &IMAGE.replace("concurrency = 4", "concurrency = -4"),
        );
        let e = load_mocks_dir(&dir).unwrap_err();
        let c = dir.join("c.toml").display().to_string();
        let d = dir.join("d.toml").display().to_string();
        let a = dir.join("a.toml").display().to_string();
        assert_eq!(
            e.to_string(),
            format!(
                "{c}:1:8: name: name `img` is used by {a} too; names must be unique: scenarios refer to them\n\
                 {d}:4:15: concurrency: -4 is out of range; allowed range: 1 to 1000000"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = load_mocks_dir(&dir).unwrap_err();
        assert!(missing.to_string().contains("cannot list"), "{missing}");
    }
}
