//! The fixed vocabulary of mocked dependencies: dependency kinds, the operations each kind serves,
//! what each operation does to the dependency's resource records, the error codes a mock file may
//! inject, and resource ids.
//!
//! The semantics of an operation (which resource it touches, whether it creates, deletes, attaches
//! or detaches a record) live here, in code; a mock file only tunes latency, errors and limits.

use crate::api::types::ErrorCode;
use std::fmt;

/// The third-party services the control plane calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DependencyKind {
    /// Inventory / scheduler: places instances on hosts; keeps stock per instance type.
    Inventory,
    /// Block storage: disks.
    BlockStorage,
    /// Virtual private cloud: network interfaces, elastic IPs, bandwidth packages.
    Vpc,
    /// Image service: read-only image metadata.
    Image,
    /// Billing: metering subscriptions started and stopped with the resource.
    Billing,
}

impl DependencyKind {
    pub const ALL: [DependencyKind; 5] = [
        DependencyKind::Inventory,
        DependencyKind::BlockStorage,
        DependencyKind::Vpc,
        DependencyKind::Image,
        DependencyKind::Billing,
    ];

    /// The name used in mock files (`kind = "block_storage"`).
    pub const fn name(self) -> &'static str {
        match self {
            DependencyKind::Inventory => "inventory",
            DependencyKind::BlockStorage => "block_storage",
            DependencyKind::Vpc => "vpc",
            DependencyKind::Image => "image",
            DependencyKind::Billing => "billing",
        }
    }

    pub fn from_name(name: &str) -> Option<DependencyKind> {
        DependencyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The operations this kind serves, in a fixed order.
    pub fn ops(self) -> impl Iterator<Item = DepOp> {
        DepOp::ALL.into_iter().filter(move |op| op.kind() == self)
    }
}

impl fmt::Display for DependencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an operation does to the dependency's resource records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    /// Reads only (no record changes).
    None,
    /// Creates `count` records (contiguous ids).
    Create,
    /// Deletes the target records (they must exist and not be attached).
    Delete,
    /// Moves the target records from `Active` to `Attached`.
    Attach,
    /// Moves the target records from `Attached` to `Active`.
    Detach,
}

impl Effect {
    pub const ALL: [Effect; 5] = [
        Effect::None,
        Effect::Create,
        Effect::Delete,
        Effect::Attach,
        Effect::Detach,
    ];

    /// The name used in mock files (`effect = "create"`).
    pub const fn name(self) -> &'static str {
        match self {
            Effect::None => "none",
            Effect::Create => "create",
            Effect::Delete => "delete",
            Effect::Attach => "attach",
            Effect::Detach => "detach",
        }
    }

    pub fn from_name(name: &str) -> Option<Effect> {
        Effect::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether the effect changes records (what a mock file's `mutating` says).
    pub const fn is_mutating(self) -> bool {
        !matches!(self, Effect::None)
    }

    /// Whether the call names existing records (`DepCall::target`) rather than a count to create.
    pub const fn needs_target(self) -> bool {
        matches!(self, Effect::Delete | Effect::Attach | Effect::Detach)
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of a resource record a dependency keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    Host,
    Disk,
    Eni,
    Eip,
    Bandwidth,
    Image,
    BillingSubscription,
}

impl ResourceKind {
    pub const fn name(self) -> &'static str {
        match self {
            ResourceKind::Host => "host",
            ResourceKind::Disk => "disk",
            ResourceKind::Eni => "eni",
            ResourceKind::Eip => "eip",
            ResourceKind::Bandwidth => "bandwidth",
            ResourceKind::Image => "image",
            ResourceKind::BillingSubscription => "billing_subscription",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An operation of some dependency kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepOp {
    AllocateHost,
    ReleaseHost,
    CreateDisk,
    AttachDisk,
    DetachDisk,
    DeleteDisk,
    CreateEni,
    DeleteEni,
    AllocateEip,
    ReleaseEip,
    AllocateBandwidth,
    ReleaseBandwidth,
    GetImage,
    StartBilling,
    StopBilling,
}

impl DepOp {
    pub const ALL: [DepOp; 15] = [
        DepOp::AllocateHost,
        DepOp::ReleaseHost,
        DepOp::CreateDisk,
        DepOp::AttachDisk,
        DepOp::DetachDisk,
        DepOp::DeleteDisk,
        DepOp::CreateEni,
        DepOp::DeleteEni,
        DepOp::AllocateEip,
        DepOp::ReleaseEip,
        DepOp::AllocateBandwidth,
        DepOp::ReleaseBandwidth,
        DepOp::GetImage,
        DepOp::StartBilling,
        DepOp::StopBilling,
    ];
    pub const COUNT: usize = DepOp::ALL.len();

    /// Dense index in `ALL` (for per-op arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used in mock files (`op = "allocate_host"`).
    pub const fn name(self) -> &'static str {
        match self {
            DepOp::AllocateHost => "allocate_host",
            DepOp::ReleaseHost => "release_host",
            DepOp::CreateDisk => "create_disk",
            DepOp::AttachDisk => "attach_disk",
            DepOp::DetachDisk => "detach_disk",
            DepOp::DeleteDisk => "delete_disk",
            DepOp::CreateEni => "create_eni",
            DepOp::DeleteEni => "delete_eni",
            DepOp::AllocateEip => "allocate_eip",
            DepOp::ReleaseEip => "release_eip",
            DepOp::AllocateBandwidth => "allocate_bandwidth",
            DepOp::ReleaseBandwidth => "release_bandwidth",
            DepOp::GetImage => "get_image",
            DepOp::StartBilling => "start_billing",
            DepOp::StopBilling => "stop_billing",
        }
    }

    pub fn from_name(name: &str) -> Option<DepOp> {
        DepOp::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The dependency kind that serves this operation.
    pub const fn kind(self) -> DependencyKind {
        use DepOp::*;
        match self {
            AllocateHost | ReleaseHost => DependencyKind::Inventory,
            CreateDisk | AttachDisk | DetachDisk | DeleteDisk => DependencyKind::BlockStorage,
            CreateEni | DeleteEni | AllocateEip | ReleaseEip | AllocateBandwidth
            | ReleaseBandwidth => DependencyKind::Vpc,
            GetImage => DependencyKind::Image,
            StartBilling | StopBilling => DependencyKind::Billing,
        }
    }

    /// What the operation does to the records.
    pub const fn effect(self) -> Effect {
        use DepOp::*;
        match self {
            AllocateHost | CreateDisk | CreateEni | AllocateEip | AllocateBandwidth
            | StartBilling => Effect::Create,
            ReleaseHost | DeleteDisk | DeleteEni | ReleaseEip | ReleaseBandwidth | StopBilling => {
                Effect::Delete
            }
            AttachDisk => Effect::Attach,
            DetachDisk => Effect::Detach,
            GetImage => Effect::None,
        }
    }

    /// The kind of record the operation touches.
    pub const fn resource(self) -> ResourceKind {
        use DepOp::*;
        match self {
            AllocateHost | ReleaseHost => ResourceKind::Host,
            CreateDisk | AttachDisk | DetachDisk | DeleteDisk => ResourceKind::Disk,
            CreateEni | DeleteEni => ResourceKind::Eni,
            AllocateEip | ReleaseEip => ResourceKind::Eip,
            AllocateBandwidth | ReleaseBandwidth => ResourceKind::Bandwidth,
            GetImage => ResourceKind::Image,
            StartBilling | StopBilling => ResourceKind::BillingSubscription,
        }
    }
}

impl fmt::Display for DepOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error a mock file may inject (`errors = [{ code = "...", probability = ... }]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultCode {
    InternalError,
    ServiceUnavailable,
    Throttling,
    NoStock,
    InvalidParameter,
    /// A blackhole: the call holds its concurrency slot for its latency and never replies.
    Timeout,
}

impl FaultCode {
    /// In the order error draws walk them.
    pub const ALL: [FaultCode; 6] = [
        FaultCode::InternalError,
        FaultCode::ServiceUnavailable,
        FaultCode::Throttling,
        FaultCode::NoStock,
        FaultCode::InvalidParameter,
        FaultCode::Timeout,
    ];
    pub const COUNT: usize = FaultCode::ALL.len();

    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used in mock files.
    pub const fn name(self) -> &'static str {
        match self {
            FaultCode::InternalError => "InternalError",
            FaultCode::ServiceUnavailable => "ServiceUnavailable",
            FaultCode::Throttling => "Throttling",
            FaultCode::NoStock => "NoStock",
            FaultCode::InvalidParameter => "InvalidParameter",
            FaultCode::Timeout => "timeout",
        }
    }

    /// Reads a mock file's code; `OperationDenied.NoStock` (the ECS spelling) is accepted too.
    pub fn from_name(name: &str) -> Option<FaultCode> {
        if name == "OperationDenied.NoStock" {
            return Some(FaultCode::NoStock);
        }
        FaultCode::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The error code the caller sees; `None` for a timeout (the caller sees nothing).
    pub const fn error_code(self) -> Option<ErrorCode> {
        match self {
            FaultCode::InternalError => Some(ErrorCode::InternalError),
            FaultCode::ServiceUnavailable => Some(ErrorCode::ServiceUnavailable),
            FaultCode::Throttling => Some(ErrorCode::Throttling),
            FaultCode::NoStock => Some(ErrorCode::NoStock),
            FaultCode::InvalidParameter => Some(ErrorCode::InvalidParameter),
            FaultCode::Timeout => None,
        }
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A resource record's id, unique within one dependency (ids start at 1; 0 is never issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(pub u64);

/// A contiguous block of resource ids: what one (batch) create returns, and what a delete,
/// attach or detach names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRange {
    pub first: ResourceId,
    pub count: u32,
}

impl ResourceRange {
    /// No resources (what a read-only call returns).
    pub const EMPTY: ResourceRange = ResourceRange {
        first: ResourceId(0),
        count: 0,
    };

    pub fn iter(self) -> impl Iterator<Item = ResourceId> {
        (self.first.0..self.first.0.saturating_add(u64::from(self.count))).map(ResourceId)
    }

    pub const fn is_empty(self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_every_kind_serves_ops() {
        for op in DepOp::ALL {
            assert_eq!(DepOp::from_name(op.name()), Some(op));
            assert_eq!(DepOp::ALL[op.index()], op);
            assert_eq!(
                op.effect().is_mutating(),
                op.kind() != DependencyKind::Image
            );
        }
        for k in DependencyKind::ALL {
            assert_eq!(DependencyKind::from_name(k.name()), Some(k));
            assert!(k.ops().count() >= 1);
        }
        for c in FaultCode::ALL {
            assert_eq!(FaultCode::from_name(c.name()), Some(c));
            assert_eq!(FaultCode::ALL[c.index()], c);
        }
        assert_eq!(
            FaultCode::from_name("OperationDenied.NoStock"),
            Some(FaultCode::NoStock)
        );
        let ops: Vec<_> = DependencyKind::Inventory.ops().collect();
        assert_eq!(ops, vec![DepOp::AllocateHost, DepOp::ReleaseHost]);
        let r = ResourceRange {
            first: ResourceId(5),
            count: 3,
        };
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![ResourceId(5), ResourceId(6), ResourceId(7)]
        );
    }
}
