//! The OpenAPI front end: the ECS API vocabulary, the gateway (throttling, quotas, load
//! balancing, the client's deadline and measurement) and the API nodes that serve requests.

pub mod gateway;
pub mod lb;
pub mod node;
pub mod throttle;
pub mod types;
