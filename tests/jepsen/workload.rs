//! Clients of the bank: opens, deposits, withdrawals and transfers, each command with its own
//! `Eddy-Command-Id`, retried with the same id on a timeout or a transient error (to whichever engine the
//! queue group picks), until answered or until the client gives up (then its outcome is unknown).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::checker::{Op, Outcome};
use super::rng::Rng;

/// Accounts every client moves money among, opened before the faults.
pub const SHARED_ACCOUNTS: usize = 10;
/// How long one try waits for a reply: longer than a healthy reply under load, far shorter than a fault.
const TRY: Duration = Duration::from_millis(1_500);
/// How long a client keeps retrying one command before it counts as unknown.
const GIVE_UP: Duration = Duration::from_secs(30);

/// The outcomes of every command sent, shared by the clients.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Vec<Op>>>);

impl History {
    pub fn ops(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, op: Op) {
        self.0.lock().unwrap().push(op);
    }
}

/// A client connection that reconnects forever, as a service's would, to `url` (comma-separated nodes).
pub async fn connect(url: &str) -> Client {
    try_connect(url).await.expect("the workload connects")
}

pub async fn try_connect(url: &str) -> Option<Client> {
    let urls: Vec<&str> = url.split(',').collect();
    async_nats::ConnectOptions::new().max_reconnects(None).retry_on_initial_connect().connect(urls).await.ok()
}

/// Sends `target` with `command_id` until an engine answers with something other than a transient error.
pub async fn send(c: &Client, history: &History, target: &str, body: Value, command_id: &str) -> Outcome {
    let give_up = Instant::now() + GIVE_UP;
    let outcome = loop {
        let mut h = HeaderMap::new();
        h.insert("Eddy-Command-Id", command_id);
        let request = async_nats::Request::new().headers(h).payload(body.to_string().into()).timeout(Some(TRY));
        if let Ok(msg) = c.send_request(format!("eddy.cmd.{target}"), request).await {
            let reply: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            if reply["ok"] == true {
                break Outcome::Ok { seq: reply["seq"].as_u64().unwrap_or(0) };
            }
            let code = reply["error"]["code"].as_str().unwrap_or("").to_string();
            if !matches!(code.as_str(), "unavailable" | "internal" | "conflict" | "") {
                break Outcome::Rejected { code };
            }
        }
        if Instant::now() > give_up {
            break Outcome::Unknown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    history.push(Op { command_id: command_id.to_string(), target: target.to_string(), body, outcome: outcome.clone() });
    outcome
}

pub fn shared(i: usize) -> String {
    format!("acc{i}")
}

/// Opens the shared accounts with a first deposit.
pub async fn setup(c: &Client, history: &History) {
    for i in 0..SHARED_ACCOUNTS {
        let id = shared(i);
        send(c, history, "account.open", json!({"id": id, "owner": "o"}), &format!("setup-open-{i}")).await;
        send(c, history, "account.deposit", json!({"id": id, "amount": 5_000}), &format!("setup-dep-{i}")).await;
    }
}

/// One client: a mixed stream of commands until `stop`. Transfers stay at most 1000, so none waits for an
/// approval; now and then a large withdrawal pushes an account past the daily limit of `large-withdrawals`.
pub async fn client(c: Client, history: History, n: usize, seed: u64, stop: CancellationToken) {
    let mut rng = Rng::new(seed);
    let mut own: Vec<String> = Vec::new();
    let mut k = 0;
    while !stop.is_cancelled() {
        k += 1;
        let cmd = format!("c{n}-{k}");
        let pick = |rng: &mut Rng, own: &Vec<String>| {
            if !own.is_empty() && rng.chance(20) {
                own[rng.range(0, own.len() as u64 - 1) as usize].clone()
            } else {
                shared(rng.range(0, SHARED_ACCOUNTS as u64 - 1) as usize)
            }
        };
        let roll = rng.range(0, 99);
        if roll < 8 {
            let id = format!("c{n}-a{k}");
            let outcome = send(&c, &history, "account.open", json!({"id": id, "owner": "o"}), &cmd).await;
            if matches!(outcome, Outcome::Ok { .. }) {
                own.push(id);
            }
        } else if roll < 40 {
            let amount = if rng.chance(5) { 20_000 } else { rng.range(1, 3_000) };
            send(&c, &history, "account.deposit", json!({"id": pick(&mut rng, &own), "amount": amount}), &cmd).await;
        } else if roll < 65 {
            let amount = if rng.chance(6) { 11_000 } else { rng.range(1, 3_000) };
            send(&c, &history, "account.withdraw", json!({"id": pick(&mut rng, &own), "amount": amount}), &cmd).await;
        } else {
            let from = rng.range(0, SHARED_ACCOUNTS as u64 - 1);
            let to = (from + rng.range(1, SHARED_ACCOUNTS as u64 - 1)) % SHARED_ACCOUNTS as u64;
            // Now and then to an account nobody opened: debited, credit rejected, refunded, failed.
            let to = if rng.chance(5) { format!("ghost{n}") } else { shared(to as usize) };
            let body = json!({"id": format!("t-{cmd}"), "from": shared(from as usize), "to": to, "amount": rng.range(1, 1_000)});
            send(&c, &history, "transfer.request", body, &cmd).await;
        }
    }
}
