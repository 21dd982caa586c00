//! The vocabulary of the ECS-style API: API names, accounts, instances and their lifecycle,
//! error codes with their HTTP statuses, and the request and response records that travel
//! between the traffic, the gateway and the API nodes.

use crate::kernel::SimTime;
use std::fmt;

/// The ECS OpenAPI operations firedrill models (API version 2014-05-26 semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    RunInstances,
    CreateInstance,
    DescribeInstances,
    DescribeInstanceStatus,
    StartInstance,
    StopInstance,
    RebootInstance,
    DeleteInstance,
}

impl Api {
    pub const ALL: [Api; 8] = [
        Api::RunInstances,
        Api::CreateInstance,
        Api::DescribeInstances,
        Api::DescribeInstanceStatus,
        Api::StartInstance,
        Api::StopInstance,
        Api::RebootInstance,
        Api::DeleteInstance,
    ];
    pub const COUNT: usize = Api::ALL.len();

    /// Dense index in `ALL` (for per-API arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            Api::RunInstances => "RunInstances",
            Api::CreateInstance => "CreateInstance",
            Api::DescribeInstances => "DescribeInstances",
            Api::DescribeInstanceStatus => "DescribeInstanceStatus",
            Api::StartInstance => "StartInstance",
            Api::StopInstance => "StopInstance",
            Api::RebootInstance => "RebootInstance",
            Api::DeleteInstance => "DeleteInstance",
        }
    }

    /// Whether the API changes state (mutating calls have their own throttling buckets).
    pub const fn is_mutating(self) -> bool {
        !matches!(self, Api::DescribeInstances | Api::DescribeInstanceStatus)
    }

    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tenant account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u32);

/// An instance, numbered by the database in creation order (`i-000000000001` style when printed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub u64);

impl crate::kernel::IndexKey for InstanceId {
    #[inline]
    fn hash64(&self) -> u64 {
        crate::kernel::mix64(self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i-{:012x}", self.0)
    }
}

/// A contiguous block of instance ids, as one batch insert returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceIdRange {
    pub first: InstanceId,
    pub count: u32,
}

impl InstanceIdRange {
    pub fn iter(self) -> impl Iterator<Item = InstanceId> {
        (self.first.0..self.first.0 + u64::from(self.count)).map(InstanceId)
    }
}

/// An instance type (a stock-keeping unit of the inventory), by index into the topology's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceType(pub u16);

/// The ECS instance lifecycle: Pending → Starting → Running; Running → Stopping → Stopped;
/// Stopped → Starting; Deleted is terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceState {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Deleted,
}

impl InstanceState {
    pub const fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "Pending",
            InstanceState::Starting => "Starting",
            InstanceState::Running => "Running",
            InstanceState::Stopping => "Stopping",
            InstanceState::Stopped => "Stopped",
            InstanceState::Deleted => "Deleted",
        }
    }

    /// Whether `self → to` is a legal lifecycle move.
    pub const fn can_move_to(self, to: InstanceState) -> bool {
        use InstanceState::*;
        matches!(
            (self, to),
            (Pending, Starting)
                | (Pending, Stopped)
                | (Starting, Running)
                | (Starting, Stopped)
                | (Running, Stopping)
                | (Running, Starting)
                | (Stopping, Stopped)
                | (Stopping, Running)
                | (Stopped, Starting)
                | (Stopped, Deleted)
                | (Running, Deleted)
                | (Pending, Deleted)
                | (Starting, Deleted)
                | (Stopping, Deleted)
        )
    }

    /// Transitional states: a long stay in one signals a fault.
    pub const fn is_transitional(self) -> bool {
        matches!(
            self,
            InstanceState::Pending | InstanceState::Starting | InstanceState::Stopping
        )
    }
}

/// ECS error codes, each with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    Throttling,
    InvalidParameter,
    IdempotentParameterMismatch,
    LastTokenProcessing,
    IncorrectInstanceStatus,
    NoStock,
    QuotaExceed,
    InstanceNotFound,
    InternalError,
    ServiceUnavailable,
    /// The request's deadline passed (the gateway's 504).
    DeadlineExceeded,
    /// The node the gateway sent the request to reset the connection or refused it (it
    /// crashed): the gateway's 502.
    BadGateway,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::Throttling,
        ErrorCode::InvalidParameter,
        ErrorCode::IdempotentParameterMismatch,
        ErrorCode::LastTokenProcessing,
        ErrorCode::IncorrectInstanceStatus,
        ErrorCode::NoStock,
        ErrorCode::QuotaExceed,
        ErrorCode::InstanceNotFound,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::BadGateway,
    ];

    /// The code as ECS spells it.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::Throttling => "Throttling",
            ErrorCode::InvalidParameter => "InvalidParameter",
            ErrorCode::IdempotentParameterMismatch => "IdempotentParameterMismatch",
            ErrorCode::LastTokenProcessing => "LastTokenProcessing",
            ErrorCode::IncorrectInstanceStatus => "IncorrectInstanceStatus",
            ErrorCode::NoStock => "OperationDenied.NoStock",
            ErrorCode::QuotaExceed => "QuotaExceed",
            ErrorCode::InstanceNotFound => "InvalidInstance.NotFound",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::DeadlineExceeded => "DeadlineExceeded",
            ErrorCode::BadGateway => "BadGateway",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::Throttling
            | ErrorCode::InvalidParameter
            | ErrorCode::IdempotentParameterMismatch => 400,
            ErrorCode::LastTokenProcessing
            | ErrorCode::IncorrectInstanceStatus
            | ErrorCode::NoStock
            | ErrorCode::QuotaExceed => 403,
            ErrorCode::InstanceNotFound => 404,
            ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
            ErrorCode::BadGateway => 502,
        }
    }

    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.name() == name || format!("{c:?}") == name)
    }
}

/// The outcome of one API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Err(ErrorCode),
}

impl Status {
    pub const fn http_status(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Err(c) => c.http_status(),
        }
    }
    pub const fn is_5xx(self) -> bool {
        self.http_status() >= 500
    }
    pub const fn is_4xx(self) -> bool {
        let s = self.http_status();
        s >= 400 && s < 500
    }
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Err(c) => c.name(),
        }
    }
}

/// Business parameters of a call (what a ClientToken fingerprint covers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// RunInstances `Amount` (1–100); 1 for single-instance APIs.
    pub amount: u16,
    /// RunInstances `MinAmount` (≤ amount): create none unless at least this many can be.
    pub min_amount: u16,
    pub instance_type: InstanceType,
    /// The target instance of Start/Stop/Reboot/Delete/DescribeInstanceStatus and of a
    /// DescribeInstances by id; `None` for a paged DescribeInstances list.
    pub instance: Option<InstanceId>,
    /// DeleteInstance `Force`.
    pub force: bool,
    /// Page number of a DescribeInstances list (page size is the API's configuration).
    pub page: u32,
}

impl Params {
    pub const fn single(instance_type: InstanceType) -> Params {
        Params {
            amount: 1,
            min_amount: 1,
            instance_type,
            instance: None,
            force: false,
            page: 0,
        }
    }
}

/// Identifies one request across the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// One API call as the front end receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub api: Api,
    pub account: AccountId,
    /// When the client meant to send it (latency is measured from here: no coordinated omission).
    pub intended: SimTime,
    /// After this instant the answer is useless to the caller (gateway timeout).
    pub deadline: SimTime,
    /// Client token (hash of the ≤ 64-character ASCII token); 0 = none.
    pub client_token: u64,
    pub params: Params,
}

/// The answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: RequestId,
    pub api: Api,
    pub account: AccountId,
    pub intended: SimTime,
    pub status: Status,
    /// Instances created (RunInstances/CreateInstance), if any.
    pub instances: Option<InstanceIdRange>,
    /// The state seen by DescribeInstanceStatus / DescribeInstances by id.
    pub state: Option<InstanceState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_ecs_names_and_statuses() {
        assert_eq!(ErrorCode::NoStock.name(), "OperationDenied.NoStock");
        assert_eq!(ErrorCode::NoStock.http_status(), 403);
        assert_eq!(ErrorCode::InstanceNotFound.http_status(), 404);
        assert_eq!(ErrorCode::Throttling.http_status(), 400);
        assert!(Status::Err(ErrorCode::ServiceUnavailable).is_5xx());
        assert!(Status::Err(ErrorCode::Throttling).is_4xx());
        assert!(!Status::Ok.is_5xx());
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
        }
        for a in Api::ALL {
            assert_eq!(Api::from_name(a.name()), Some(a));
            assert_eq!(Api::ALL[a.index()], a);
        }
    }

    #[test]
    fn lifecycle_moves() {
        use InstanceState::*;
        assert!(Pending.can_move_to(Starting) && Starting.can_move_to(Running));
        assert!(
            Running.can_move_to(Stopping)
                && Stopping.can_move_to(Stopped)
                && Stopped.can_move_to(Starting)
        );
        assert!(!Running.can_move_to(Pending));
        assert!(!Deleted.can_move_to(Running));
        assert!(
            !Stopped.can_move_to(Running),
            "a stopped instance starts through Starting"
        );
    }
}
