//! Planted bugs: switches that reintroduce real control-plane bugs, so a swarm can prove its
//! invariant checkers find them (and the correct core, with every switch off, shows nothing).

/// Which bugs are planted (all off: the correct core).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The ClientToken record is checked, then written apart from the rows (check-then-write,
    /// not one transaction): concurrent duplicates both create.
    pub non_atomic_idempotency: bool,
    /// Workflow steps call dependencies without their downstream token: a retried or
    /// redelivered step creates its resource again.
    pub step_without_token: bool,
    /// Callers retry codes that are not retryable (the request can never succeed, or already
    /// had an effect), e.g. a dependency's InvalidParameter or a DB row-state mismatch.
    pub retry_non_retryable: bool,
    /// DeleteInstance skips the cache invalidation (no L2 delete, no L1 broadcast): other
    /// readers see the deleted instance until their entries expire.
    pub skip_delete_invalidation: bool,
}

/// Every bug's name as written in scenario files (`[bugs]`).
pub const BUG_NAMES: [&str; 4] = [
    "non_atomic_idempotency",
    "step_without_token",
    "retry_non_retryable",
    "skip_delete_invalidation",
];

impl PlantedBugs {
    /// Whether a node's write through `api` skips the cache invalidation it owes
    /// (`skip_delete_invalidation`: DeleteInstance does).
    pub fn skips_invalidation(&self, api: crate::api::types::Api) -> bool {
        self.skip_delete_invalidation && api == crate::api::types::Api::DeleteInstance
    }

    /// Whether any bug is planted.
    pub fn any(&self) -> bool {
        *self != PlantedBugs::default()
    }

    /// The bugs planted, by name.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.non_atomic_idempotency,
            self.step_without_token,
            self.retry_non_retryable,
            self.skip_delete_invalidation,
        ];
        BUG_NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Plants the bug `name`; `false` if there is no such bug.
    pub fn plant(&mut self, name: &str) -> bool {
        match name {
            "non_atomic_idempotency" => self.non_atomic_idempotency = true,
            "step_without_token" => self.step_without_token = true,
            "retry_non_retryable" => self.retry_non_retryable = true,
            "skip_delete_invalidation" => self.skip_delete_invalidation = true,
            _ => return false,
        }
        true
    }
}
