//! The metrics the engine records, through the `metrics` facade: no-ops until the binary installs a
//! recorder. Labels name configured things only (aggregates, commands, reactors, sagas, views, outcome
//! codes), never ids, so their number is bounded by the config.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

pub const COMMANDS_TOTAL: &str = "eddy_commands_total";
pub const COMMAND_DURATION: &str = "eddy_command_duration_seconds";
pub const REACTOR_LAG: &str = "eddy_reactor_lag_events";
pub const REACTOR_PARKED: &str = "eddy_reactor_parked";
pub const REACTOR_ACTIONS_TOTAL: &str = "eddy_reactor_actions_total";
pub const VIEW_LAG: &str = "eddy_view_lag_events";
pub const VIEW_DOCUMENTS: &str = "eddy_view_documents";
pub const SAGA_INSTANCES: &str = "eddy_saga_instances";
pub const SAGA_TIMERS_PENDING: &str = "eddy_saga_timers_pending";
pub const SAGA_TRANSITION_DURATION: &str = "eddy_saga_transition_duration_seconds";
pub const LEASE_HELD: &str = "eddy_lease_held";
pub const NATS_RECONNECTS_TOTAL: &str = "eddy_nats_reconnects_total";
pub const NATS_CONNECTED: &str = "eddy_nats_connected";

/// The label value for a name the config does not know (an unknown aggregate or command in a request):
/// requests must not be able to mint label values.
pub const UNKNOWN: &str = "_unknown";

/// Describes every metric, once the binary has installed a recorder.
pub fn describe() {
    describe_counter!(COMMANDS_TOTAL, "Commands decided, by outcome (ok or the error code on the wire).");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "Time to decide a command, from request to reply.");
    describe_gauge!(REACTOR_LAG, "Events in the stream that a reactor has not folded in yet.");
    describe_gauge!(REACTOR_PARKED, "Events or actions a reactor has parked.");
    describe_counter!(REACTOR_ACTIONS_TOTAL, "Reactor actions run, by kind and outcome.");
    describe_gauge!(VIEW_LAG, "Events in the stream that a view has not applied yet.");
    describe_gauge!(VIEW_DOCUMENTS, "Documents in a view.");
    describe_gauge!(SAGA_INSTANCES, "Saga instances by state.");
    describe_gauge!(SAGA_TIMERS_PENDING, "Saga instances with a timer armed.");
    describe_histogram!(SAGA_TRANSITION_DURATION, Unit::Seconds, "Time to decide and record one saga transition.");
    describe_gauge!(LEASE_HELD, "1 on the engine that holds the reactor's lease, else 0.");
    describe_counter!(NATS_RECONNECTS_TOTAL, "Times the NATS connection was re-established.");
    describe_gauge!(NATS_CONNECTED, "1 while connected to NATS.");
}

/// One command decided.
pub fn command(aggregate: &str, command: &str, outcome: &'static str, took: Duration) {
    let (a, c) = (aggregate.to_string(), command.to_string());
    counter!(COMMANDS_TOTAL, "aggregate" => a.clone(), "command" => c.clone(), "outcome" => outcome).increment(1);
    histogram!(COMMAND_DURATION, "aggregate" => a, "command" => c).record(took.as_secs_f64());
}

/// One reactor action run (`kind`: command, publish, emit, schedule, cancel).
pub fn reactor_action(reactor: &str, kind: &'static str, outcome: &'static str) {
    counter!(REACTOR_ACTIONS_TOTAL, "reactor" => reactor.to_string(), "kind" => kind, "outcome" => outcome)
        .increment(1);
}

/// One saga transition decided and committed.
pub fn saga_transition(saga: &str, took: Duration) {
    histogram!(SAGA_TRANSITION_DURATION, "saga" => saga.to_string()).record(took.as_secs_f64());
}

/// A gauge labelled with one name (`reactor`, `view`, `saga`).
pub fn set(metric: &'static str, label: &'static str, name: &str, value: f64) {
    gauge!(metric, label => name.to_string()).set(value);
}

/// `eddy_saga_instances{saga,state}`.
pub fn saga_instances(saga: &str, state: &str, count: u64) {
    gauge!(SAGA_INSTANCES, "saga" => saga.to_string(), "state" => state.to_string()).set(count as f64);
}

/// The NATS connection's state and reconnects (`connects` counts the first connection too).
pub fn nats(connected: bool, connects: u64) {
    gauge!(NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    counter!(NATS_RECONNECTS_TOTAL).absolute(connects.saturating_sub(1));
}
