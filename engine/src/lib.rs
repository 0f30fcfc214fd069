//! eddy's core: the event envelope, the JetStream event store, declarative aggregates and the command
//! service, the embedded nats-server, and the runtime that ties them together.

pub mod aggregate;
pub mod api;
pub mod cel;
pub mod command;
pub mod config;
pub mod envelope;
pub mod host;
pub mod nats;
pub mod peers;
pub mod runtime;
pub mod store;
pub mod telemetry;
