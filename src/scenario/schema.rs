//! The JSON Schema (draft 2020-12) of the scenario format, for editors (e.g. Taplo or the
//! "Even Better TOML" extension) to complete and check scenario files. Generated from this table;
//! `scenarios/scenario.schema.json` is its committed output and a test keeps the two equal and
//! checks that every key the raw layer reads is described here.

use crate::report::Json;

const DURATION: &str = r"^[0-9][0-9_]*(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|h|d)$";

fn duration(desc: &str) -> Json {
    Json::obj([
        ("type", Json::str("string")),
        ("pattern", Json::str(DURATION)),
        ("description", Json::str(desc)),
    ])
}

fn int(desc: &str, min: i64, max: i64) -> Json {
    Json::obj([
        ("type", Json::str("integer")),
        ("minimum", Json::int(min)),
        ("maximum", Json::int(max)),
        ("description", Json::str(desc)),
    ])
}

fn num(desc: &str, min: f64, max: f64) -> Json {
    Json::obj([
        ("type", Json::str("number")),
        ("minimum", Json::num(min, 6)),
        ("maximum", Json::num(max, 6)),
        ("description", Json::str(desc)),
    ])
}

fn boolean(desc: &str) -> Json {
    Json::obj([
        ("type", Json::str("boolean")),
        ("description", Json::str(desc)),
    ])
}

fn string(desc: &str) -> Json {
    Json::obj([
        ("type", Json::str("string")),
        ("description", Json::str(desc)),
    ])
}

fn one_of(desc: &str, values: &[&str]) -> Json {
    Json::obj([
        (
            "enum",
            Json::Arr(values.iter().map(|v| Json::str(*v)).collect()),
        ),
        ("description", Json::str(desc)),
    ])
}

fn dist(desc: &str) -> Json {
    Json::obj([
        (
            "anyOf",
            Json::Arr(vec![
                Json::obj([("type", Json::str("string"))]),
                Json::obj([("type", Json::str("object"))]),
            ]),
        ),
        (
            "description",
            Json::str(format!(
                "{desc} A distribution: short form (\"const:5ms\", \"uniform:1:10\", \"exp:20ms\", \"lognormal_p:8ms:60ms\", \"zipf:10000:1.1\") or a table with `kind`."
            )),
        ),
    ])
}

fn table(desc: &str, props: Vec<(&str, Json)>, required: &[&str]) -> Json {
    let mut pairs = vec![
        ("type", Json::str("object")),
        ("additionalProperties", Json::Bool(false)),
        ("description", Json::str(desc)),
        ("properties", Json::obj(props)),
    ];
    if !required.is_empty() {
        pairs.push((
            "required",
            Json::Arr(required.iter().map(|r| Json::str(*r)).collect()),
        ));
    }
    Json::obj(pairs)
}

fn map_of(desc: &str, value: Json) -> Json {
    Json::obj([
        ("type", Json::str("object")),
        ("additionalProperties", value),
        ("description", Json::str(desc)),
    ])
}

fn api_names() -> Vec<&'static str> {
    crate::api::types::Api::ALL
        .iter()
        .map(|a| a.name())
        .collect()
}

/// The schema.
pub fn scenario_schema() -> Json {
    let api_map = |desc: &str, value: Json| {
        let mut m = map_of(desc, value);
        if let Json::Obj(o) = &mut m {
            o.insert(
                "propertyNames".into(),
                Json::obj([(
                    "enum",
                    Json::Arr(api_names().into_iter().map(Json::str).collect()),
                )]),
            );
        }
        m
    };
    let api = table(
        "The API nodes.",
        vec![
            (
                "nodes",
                int(
                    "API nodes at full scale (divided by `scale`).",
                    1,
                    1_000_000,
                ),
            ),
            ("workers", int("Worker threads per node.", 1, 100_000)),
            ("cores", int("CPU cores per node.", 1, 1_024)),
            (
                "accept_queue",
                int("Requests waiting for a worker, per node.", 0, 10_000_000),
            ),
            (
                "lb",
                one_of(
                    "Load balancing.",
                    &["least_outstanding", "round_robin", "power_of_two"],
                ),
            ),
            (
                "gc",
                one_of("Garbage collector.", &["g1", "parallel", "zgc", "off"]),
            ),
            ("heap_gib", num("Heap size, GiB.", 0.25, 1024.0)),
            (
                "live_set_gib",
                num(
                    "Long-lived data in the heap, GiB (default heap/4).",
                    0.0,
                    4096.0,
                ),
            ),
            ("pool", int("Database connections per node.", 1, 100_000)),
            (
                "pool_wait_limit",
                int(
                    "Requests waiting for a connection, per node.",
                    0,
                    10_000_000,
                ),
            ),
            (
                "pool_acquire_timeout",
                duration("How long a request waits for a connection."),
            ),
            (
                "db_query_timeout",
                duration(
                    "How long a database query may go unanswered before the node fails it (503) and releases its connection.",
                ),
            ),
            (
                "l2_timeout",
                duration(
                    "How long an L2 cache call may go unanswered before the node gives up on it: a read goes on to the database, a ClientToken record op held by the L2 fails (503).",
                ),
            ),
            ("cpu", dist("CPU time of every API call, seconds.")),
            (
                "shed_expired",
                boolean(
                    "Drop queued requests whose deadline has passed instead of working on them.",
                ),
            ),
            (
                "hop",
                duration("One-way network delay of every hop (gateway, database, dependencies)."),
            ),
        ],
        &[],
    );
    let db = table(
        "The control database.",
        vec![
            (
                "max_concurrent",
                int(
                    "Queries in service at once per server, at full scale.",
                    1,
                    1_000_000,
                ),
            ),
            (
                "queue_limit",
                int("Queries waiting per server.", 0, 10_000_000),
            ),
            (
                "shards",
                int("Shards (accounts are spread over them).", 1, 1_024),
            ),
            ("replicas", int("Read replicas per shard.", 0, 16)),
            ("replication_lag", dist("Replica lag, seconds.")),
            (
                "slow_query_threshold",
                duration("A query at least this long counts as slow."),
            ),
            (
                "latency",
                dist("Service latency of every query class, seconds."),
            ),
        ],
        &[],
    );
    let cache = table(
        "The multi-level cache (present: on).",
        vec![
            ("l1_capacity", int("L1 entries per node.", 1, 100_000_000)),
            (
                "l1_soft_ttl",
                duration("L1 freshness: past it, a read refreshes."),
            ),
            (
                "l1_hard_ttl",
                duration("L1 lifetime: up to it, stale values serve while the database fails."),
            ),
            ("l2_capacity", int("L2 entries.", 1, 1_000_000_000)),
            ("l2_ttl", duration("L2 lifetime of values.")),
            ("l2_negative_ttl", duration("L2 lifetime of \"not found\".")),
            (
                "invalidation_delay",
                dist("Delay of the L1 invalidation broadcast, seconds."),
            ),
            (
                "invalidation",
                one_of(
                    "Who invalidates after a write: the writer on the database's reply, or a binlog consumer of the database's change feed (retried L2 deletes).",
                    &["writer", "binlog"],
                ),
            ),
            (
                "binlog_lag",
                dist("Change feed lag, seconds (binlog invalidation; default uniform 10-100 ms)."),
            ),
            (
                "binlog_retry_timeout",
                duration(
                    "Binlog invalidation: an unanswered L2 delete is sent again after this (default 200ms); a refused one after a backoff doubling from it.",
                ),
            ),
            (
                "binlog_backoff_max",
                duration(
                    "Binlog invalidation: the cap of the refused deletes' backoff (default 5s; at least binlog_retry_timeout).",
                ),
            ),
            (
                "binlog_max_pending",
                int(
                    "Binlog invalidation: L2 deletes pending at most; a change past it gets its L1 broadcast only (default 100000).",
                    1,
                    10_000_000,
                ),
            ),
            (
                "binlog_heartbeat",
                duration(
                    "Binlog invalidation: a heartbeat row every this long measures the consumer's lag while nothing else arrives (default 1s; 0s: none).",
                ),
            ),
        ],
        &[],
    );
    let workflows = table(
        "Lifecycles as workflows (present: on).",
        vec![
            (
                "batch",
                boolean("One dependency call per step for N instances (true) or N sub-workflows."),
            ),
            (
                "workers",
                int("Workflow workers at full scale.", 1, 1_000_000),
            ),
            (
                "step_timeout",
                duration("Every step's attempt timeout (default 10s)."),
            ),
            (
                "max_attempts",
                int("Every step's attempts (default 3).", 1, 100),
            ),
            (
                "initial_interval",
                duration("Every step's first retry interval (default 1s)."),
            ),
            (
                "backoff_coefficient",
                num("Every step's backoff coefficient (default 2).", 1.0, 100.0),
            ),
            (
                "max_interval",
                duration("Every step's longest retry interval (default 100s)."),
            ),
            (
                "deadline",
                duration("Every workflow's deadline (defaults 300 to 600 s by kind)."),
            ),
        ],
        &[],
    );
    let idempotency = table(
        "ClientToken idempotency.",
        vec![
            (
                "atomic",
                boolean(
                    "Record written in the mutation's transaction (false: the classic check-then-write bug).",
                ),
            ),
            ("store", one_of("Where records live.", &["db", "l2"])),
            ("ttl", duration("Record lifetime.")),
            ("capacity", int("Records held at once.", 1, 100_000_000)),
        ],
        &[],
    );
    let throttle = table(
        "API throttling.",
        vec![(
            "preset",
            one_of("Per-account limits.", &["ecs", "ec2", "none"]),
        )],
        &[],
    );
    let cleanup = table(
        "The data-cleanup job (present: on).",
        vec![
            ("period", duration("Time between runs.")),
            ("retention", duration("Rows younger than this stay.")),
            ("batch_rows", int("Rows per batch.", 1, 10_000)),
            ("max_batches_per_run", int("Batches per run.", 1, 1_000_000)),
        ],
        &["period", "retention"],
    );
    let reconciliation = table(
        "Resource-consistency reconciliation (present: on; needs workflows).",
        vec![
            (
                "mode",
                one_of(
                    "hourly (near-real-time, 10 min grace) or daily (T+1, 1 h grace).",
                    &["hourly", "daily"],
                ),
            ),
            (
                "period",
                duration("Time between audits (default: the mode's, 1h or 1d)."),
            ),
            (
                "grace",
                duration(
                    "Rows and records younger than this at a scan's start are not judged (default: the mode's, 10m or 1h).",
                ),
            ),
            (
                "read",
                one_of(
                    "Where scan pages read: the primary (default) or a read replica (its lag hides new rows: the grace must cover it).",
                    &["primary", "replica"],
                ),
            ),
            (
                "confirm_orphans",
                boolean(
                    "Release an orphan only when the next audit finds it again (default false): a row a lagging page missed is seen by then.",
                ),
            ),
        ],
        &[],
    );
    let topology = table(
        "What the control plane is made of.",
        vec![
            ("api", api),
            ("db", db),
            ("cache", cache),
            ("workflows", workflows),
            ("idempotency", idempotency),
            ("throttle", throttle),
            ("cleanup", cleanup),
            ("reconciliation", reconciliation),
            (
                "dependencies",
                Json::obj([
                    ("type", Json::str("array")),
                    ("items", Json::obj([("type", Json::str("string"))])),
                    (
                        "description",
                        Json::str("Dependency mocks by name (default: all of mocks/)."),
                    ),
                ]),
            ),
        ],
        &[],
    );
    let step = table(
        "One step of a `steps` profile.",
        vec![
            ("at", duration("When the step starts (the first at 0s).")),
            ("multiplier", num("Rate multiplier from then on.", 0.0, 1e6)),
        ],
        &["at", "multiplier"],
    );
    let profile = table(
        "A rate multiplier over time; `kind` says which other keys apply.",
        vec![
            (
                "kind",
                one_of(
                    "The shape.",
                    &["constant", "ramp", "steps", "diurnal", "sine", "double11"],
                ),
            ),
            ("from", num("ramp: multiplier before `start`.", 0.0, 1e6)),
            (
                "to",
                num("ramp: multiplier after `start + duration`.", 0.0, 1e6),
            ),
            ("start", duration("ramp: when it starts.")),
            ("duration", duration("ramp: how long it lasts.")),
            (
                "steps",
                Json::obj([
                    ("type", Json::str("array")),
                    ("items", step),
                    ("description", Json::str("steps: the steps, in time order.")),
                ]),
            ),
            (
                "hourly",
                Json::obj([
                    ("type", Json::str("array")),
                    (
                        "items",
                        Json::obj([("type", Json::str("number")), ("minimum", Json::int(0))]),
                    ),
                    ("minItems", Json::int(24)),
                    ("maxItems", Json::int(24)),
                    (
                        "description",
                        Json::str("diurnal: 24 hourly multipliers, 00:00 to 23:00."),
                    ),
                ]),
            ),
            (
                "day_offset",
                duration("diurnal: the time of day the run starts at."),
            ),
            ("mean", num("sine: mean multiplier.", 0.0, 1e6)),
            ("amplitude", num("sine: amplitude.", 0.0, 1e6)),
            ("peak_at", duration("sine: time of the peak.")),
            ("period", duration("sine: the period (default 24h).")),
            (
                "midnight",
                duration("double11: when 00:00 falls in the run."),
            ),
            (
                "pre_scale",
                duration("double11: how long before midnight operators scale out."),
            ),
            ("peak", num("double11: the multiplier at 00:00.", 0.0, 1e6)),
            ("tail", duration("double11: the decay back to baseline.")),
        ],
        &["kind"],
    );
    let tokens = table(
        "ClientTokens on RunInstances/CreateInstance.",
        vec![
            ("share", num("Share of calls that carry a token.", 0.0, 1.0)),
            (
                "duplicate_fraction",
                num("Share of tokened calls submitted twice.", 0.0, 1.0),
            ),
            ("duplicate_delay", duration("Delay of the duplicate.")),
        ],
        &[],
    );
    let codes: Vec<&str> = crate::api::types::ErrorCode::ALL
        .iter()
        .map(|e| e.name())
        .collect();
    let retry = table(
        "Client retries (same ClientToken on every attempt).",
        vec![
            (
                "max_attempts",
                int("Attempts per call, the first included.", 1, 10),
            ),
            (
                "backoff",
                one_of(
                    "Wait before a retry: none (the retry storm) or exponential.",
                    &["exponential", "none"],
                ),
            ),
            ("base", duration("Exponential backoff: the first ceiling.")),
            ("cap", duration("Exponential backoff: the largest ceiling.")),
            (
                "jitter",
                one_of(
                    "Full jitter (uniform below the ceiling) or none.",
                    &["full", "none"],
                ),
            ),
            (
                "on",
                Json::obj([
                    ("type", Json::str("array")),
                    (
                        "items",
                        Json::obj([(
                            "enum",
                            Json::Arr(codes.into_iter().map(Json::str).collect()),
                        )]),
                    ),
                    (
                        "description",
                        Json::str(
                            "Codes worth a retry (default Throttling, ServiceUnavailable, InternalError, DeadlineExceeded).",
                        ),
                    ),
                ]),
            ),
        ],
        &[],
    );
    let polling = table(
        "DescribeInstanceStatus polling after a creation, until Running (Stopped for CreateInstance).",
        vec![
            (
                "interval",
                dist("Time between polls, seconds (default uniform 1 to 2 s)."),
            ),
            ("max_polls", int("Polls per creation at most.", 1, 10_000)),
        ],
        &[],
    );
    let closed_loop = table(
        "A closed loop instead of open-loop arrivals: what coordinated omission hides.",
        vec![
            (
                "clients",
                int(
                    "Clients, each waiting for its answer before the next call.",
                    1,
                    100_000,
                ),
            ),
            (
                "think",
                dist("Think time between an answer and the next call, seconds."),
            ),
        ],
        &["clients"],
    );
    let replay = table(
        "Replay a trace instead of generating arrivals.",
        vec![
            (
                "trace",
                string("CSV or JSON Lines file, relative to the scenario."),
            ),
            (
                "speed",
                num("Time compression (2 = twice as fast).", 1e-6, 1e6),
            ),
            (
                "scale",
                num(
                    "Records kept (< 1, thinned) or copied with fresh tokens (> 1).",
                    1e-6,
                    100.0,
                ),
            ),
        ],
        &["trace"],
    );
    let workload = table(
        "The traffic.",
        vec![
            (
                "rate",
                num(
                    "Requests per second at full scale (divided by `scale`).",
                    1e-6,
                    1e9,
                ),
            ),
            (
                "mix",
                api_map(
                    "API name = weight (default: the Describe-heavy mix).",
                    Json::obj([("type", Json::str("number")), ("minimum", Json::int(0))]),
                ),
            ),
            ("accounts", int("Tenants.", 1, 10_000_000)),
            (
                "account_skew",
                num("Zipf exponent of tenants' rates (0: uniform).", 0.0, 10.0),
            ),
            (
                "amount",
                dist(
                    "RunInstances Amount (1 to 100); default zipf:100:2, skewed to small batches (61% create one instance, mean 3.17).",
                ),
            ),
            (
                "min_amount_fraction",
                num("RunInstances MinAmount as a share of Amount.", 0.0, 1.0),
            ),
            (
                "instance_types",
                int("Instance types, drawn uniformly.", 1, 1_000),
            ),
            (
                "instance_type_weights",
                Json::obj([
                    ("type", Json::str("array")),
                    (
                        "items",
                        Json::obj([("type", Json::str("number")), ("minimum", Json::int(0))]),
                    ),
                    ("minItems", Json::int(1)),
                    ("maxItems", Json::int(1_000)),
                    (
                        "description",
                        Json::str(
                            "Demand per instance type (weights; their count is the number of types).",
                        ),
                    ),
                ]),
            ),
            ("timeout", duration("The client's request timeout.")),
            (
                "describe_list_share",
                num("Share of DescribeInstances that list a page.", 0.0, 1.0),
            ),
            ("tokens", tokens),
            ("profile", profile),
            ("retry", retry),
            ("polling", polling),
            ("closed_loop", closed_loop),
            ("replay", replay),
        ],
        &["rate"],
    );
    let fault = table(
        "A fault: kind, target, window and the kind's parameters (see scenarios/README.md).",
        vec![
            (
                "kind",
                one_of("The fault kind.", &crate::faults::KIND_NAMES),
            ),
            (
                "target",
                string(
                    "What it hits: nodes, node.<i>, db, l2, workflow, gateway, traffic, invalidator (partition only), dep.<name> or dep.<name>.<endpoint>.",
                ),
            ),
            (
                "peer",
                string(
                    "partition: the other side (db, l2, workflow, dep.<name>, gateway or node.<i>; of the invalidator: l2 or node.<i>).",
                ),
            ),
            (
                "start",
                duration("When it starts (from time zero of the run)."),
            ),
            (
                "duration",
                duration("How long it lasts (instant kinds: optional)."),
            ),
            (
                "ramp",
                duration("Intensity grows linearly over this long, in 10 steps."),
            ),
            ("add", dist("dep_latency: added latency, seconds.")),
            (
                "multiply",
                num(
                    "dep_latency, db_slow_sql, traffic_surge: a factor.",
                    0.0,
                    1000.0,
                ),
            ),
            (
                "code",
                one_of(
                    "dep_errors: the error code.",
                    &[
                        "InternalError",
                        "ServiceUnavailable",
                        "Throttling",
                        "NoStock",
                        "InvalidParameter",
                        "Timeout",
                    ],
                ),
            ),
            (
                "probability",
                num("dep_errors: probability of the code per call.", 0.0, 1.0),
            ),
            (
                "fraction",
                num("dep_partial_outage: fraction of hosts down.", 0.0, 1.0),
            ),
            ("pause", dist("node_pause: pause length, seconds.")),
            ("every", duration("node_pause: time between pauses.")),
            (
                "gib_per_min",
                num("heap_leak: live-set growth, GiB per minute.", 0.0, 1e6),
            ),
            (
                "class",
                one_of(
                    "db_slow_sql: the query class (default every class).",
                    &[
                        "point_read",
                        "filtered_list",
                        "insert",
                        "update",
                        "workflow_step_write",
                        "archive_batch",
                        "scan",
                    ],
                ),
            ),
            (
                "connections",
                int(
                    "db_connection_leak: connections leaked per node.",
                    1,
                    100_000,
                ),
            ),
            (
                "lag",
                duration("replica_lag: the replicas' lag; binlog_lag: the change feed's."),
            ),
            (
                "skew_ms",
                int(
                    "clock_skew: the node clock's offset, ms (negative: behind).",
                    -86_400_000,
                    86_400_000,
                ),
            ),
            (
                "workers",
                int("worker_crash: workers that crash (default 1).", 1, 100_000),
            ),
            (
                "account",
                int(
                    "hot_tenant: the hot account. dep_latency, dep_errors, dep_blackhole, dep_partial_outage, client_no_backoff, quota_too_low: the only account whose work the fault acts on (default every account).",
                    0,
                    i64::from(u32::MAX),
                ),
            ),
            (
                "share",
                num("hot_tenant: its share of all requests.", 0.0, 1.0),
            ),
            ("factor", num("quota_too_low: quota factor.", 0.0, 1.0)),
        ],
        &["kind", "target", "start"],
    );
    let slo = table(
        "Service-level objectives: a failed one makes `run` exit 1.",
        vec![
            (
                "p99_ms",
                num("p99 latency target of every API, ms.", 1e-6, 1e9),
            ),
            (
                "api_p99_ms",
                api_map(
                    "Per-API p99 targets, ms.",
                    Json::obj([
                        ("type", Json::str("number")),
                        ("exclusiveMinimum", Json::int(0)),
                    ]),
                ),
            ),
            (
                "rate_5xx_max",
                num("Most 5XX responses, as a share of all.", 0.0, 1.0),
            ),
            (
                "recovery_hold",
                duration(
                    "Game days: the SLO holds this long for a fault to count as recovered (default 60s).",
                ),
            ),
        ],
        &[],
    );
    let mut root = table(
        "A firedrill scenario: see scenarios/README.md.",
        vec![
            (
                "name",
                Json::obj([
                    ("type", Json::str("string")),
                    ("pattern", Json::str("^[a-z0-9_-]+$")),
                    ("maxLength", Json::int(64)),
                    ("description", Json::str("Names the results folder.")),
                ]),
            ),
            ("description", string("The question this scenario answers.")),
            ("seed", int("The root seed (--seed wins).", 0, i64::MAX)),
            ("duration", duration("Simulated traffic time.")),
            ("warmup", duration("API metrics start after it.")),
            (
                "scale",
                num(
                    "Run at 1:N: rates and server counts divided by N.",
                    1.0,
                    1e6,
                ),
            ),
            (
                "max_events",
                int(
                    "Safety bound on events per run; hitting it ends the run with exit 3.",
                    1,
                    i64::MAX,
                ),
            ),
            ("topology", topology),
            ("workload", workload),
            (
                "fault",
                Json::obj([
                    ("type", Json::str("array")),
                    ("items", fault),
                    ("description", Json::str("Faults ([[fault]] tables).")),
                ]),
            ),
            ("slo", slo),
            (
                "chaos",
                table(
                    "What `firedrill chaos` may draw for this scenario.",
                    vec![
                        (
                            "kinds",
                            Json::obj([
                                ("type", Json::str("array")),
                                ("items", one_of("A fault kind.", &crate::faults::KIND_NAMES)),
                                (
                                    "description",
                                    Json::str(
                                        "Fault kinds allowed (default: every kind the topology can take).",
                                    ),
                                ),
                            ]),
                        ),
                        (
                            "max_faults",
                            int("Faults per plan at most (default 3).", 1, 20),
                        ),
                        (
                            "quiet",
                            duration("Fault-free traffic at the end of every run (default 120s)."),
                        ),
                        (
                            "max_window",
                            duration("Longest fault window (default 300s)."),
                        ),
                        (
                            "liveness_bound",
                            duration("Longest stay in a transitional state (default 660s)."),
                        ),
                    ],
                    &[],
                ),
            ),
            (
                "bugs",
                table(
                    "Planted bugs (to prove the invariant checkers): name = true.",
                    crate::faults::BUG_NAMES
                        .iter()
                        .map(|n| (*n, boolean("Plant this bug.")))
                        .collect(),
                    &[],
                ),
            ),
            (
                "alert",
                Json::obj([
                    ("type", Json::str("array")),
                    (
                        "description",
                        Json::str("Game-day alert rules ([[alert]] tables)."),
                    ),
                    (
                        "items",
                        table(
                            "An alert: fires when `metric` is above/below its threshold for `for`.",
                            vec![
                                (
                                    "name",
                                    string("Names the alert (runbook steps refer to it)."),
                                ),
                                (
                                    "metric",
                                    one_of(
                                        "What it watches, per time-series bucket.",
                                        &crate::gameday::Metric::ALL.map(|m| m.name()),
                                    ),
                                ),
                                ("above", num("Fires above this.", -1e18, 1e18)),
                                ("below", num("Fires below this.", -1e18, 1e18)),
                                (
                                    "for",
                                    duration("How long the condition must hold (default 0s)."),
                                ),
                                (
                                    "component",
                                    string(
                                        "What the alert names: gateway, nodes, db, l2, workflow, traffic, dep.<name> (default gateway).",
                                    ),
                                ),
                            ],
                            &["name", "metric"],
                        ),
                    ),
                ]),
            ),
            (
                "runbook",
                Json::obj([
                    ("type", Json::str("array")),
                    (
                        "description",
                        Json::str("Game-day runbook steps ([[runbook]] tables)."),
                    ),
                    (
                        "items",
                        table(
                            "An operator's action, at a time or a delay after an alert fires.",
                            vec![
                                (
                                    "action",
                                    one_of(
                                        "What the operator does.",
                                        &crate::gameday::Action::NAMES,
                                    ),
                                ),
                                ("at", duration("When (from time zero).")),
                                ("on_alert", string("After this alert fires (once).")),
                                (
                                    "delay",
                                    duration("Reaction time after the alert (default 0s)."),
                                ),
                                ("nodes", int("scale_out: nodes to add.", 1, 1024)),
                                ("factor", num("raise_quota: quota factor.", 1.0, 1e6)),
                            ],
                            &["action"],
                        ),
                    ),
                ]),
            ),
            (
                "expect",
                table(
                    "What a reproduction reproduces (written by `chaos`, checked by `replay`).",
                    vec![
                        (
                            "trace_hash",
                            string("The run's trace hash (16 hex digits)."),
                        ),
                        (
                            "invariant",
                            one_of(
                                "The invariant it breaks.",
                                &crate::invariants::Invariant::ALL.map(|i| i.name()),
                            ),
                        ),
                    ],
                    &["trace_hash"],
                ),
            ),
        ],
        &["name", "duration", "workload"],
    );
    if let Json::Obj(o) = &mut root {
        o.insert(
            "$schema".into(),
            Json::str("https://json-schema.org/draft/2020-12/schema"),
        );
        o.insert("$id".into(), Json::str("firedrill-scenario-1.schema.json"));
        o.insert("title".into(), Json::str("firedrill scenario"));
    }
    root
}
