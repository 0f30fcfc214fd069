//! eddy assembled: the engine with every component kind (views, and reactors as they land), one config
//! loader that knows every section, and a `run` that tests can drive in-process.

pub mod app;
pub mod http;
pub mod record;
pub mod replay;
pub mod seed;
pub mod telemetry;
pub mod timeline;

pub use app::{load, run, Running, Settings};
