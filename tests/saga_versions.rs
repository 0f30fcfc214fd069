//! Versioned sagas against a real nats-server: an instance runs to its end on the version it started on,
//! across a live reload, a restart and a rebuild from the stream; `eddy validate` refuses to drop a version
//! that running instances use; `eddy sagas` shows each instance's version; a replay keeps each recorded
//! instance on its version.

mod common;

use std::path::Path;
use std::process::Command;

use async_nats::Client;
use common::*;
use serde_json::{json, Value};

const SAGA: &str = "sagas/transfer.toml";
const APPROVAL: &str = "  { goto = \"approval\", when = \"saga.amount > 1000\" },\n";

/// The bank's transfer saga as version 2, where no transfer waits for approval, with the example's
/// definition kept as version 1 (`keep_v1`) or dropped.
fn write_v2(config: &Path, v1: &str, keep_v1: bool) {
    assert!(v1.contains(APPROVAL));
    let (head, rest) = v1.split_once("[reactors.transfer.states.approval]").unwrap();
    let (_, tail) = rest.split_once("[reactors.transfer.states.credit]").unwrap();
    let v2 = format!("{head}[reactors.transfer.states.credit]{tail}")
        .replace(APPROVAL, "")
        .replace("kind = \"saga\"\n", "kind = \"saga\"\nversion = 2\n");
    let mut text = v2;
    if keep_v1 {
        let (_, states) = v1.split_once("[reactors.transfer.correlate]").unwrap();
        let old = format!("[reactors.transfer.correlate]{states}")
            .replace("[reactors.transfer.", "[reactors.transfer.versions.1.");
        text.push_str(&format!("\n[reactors.transfer.versions.1]\ninitial = \"debit\"\n{old}"));
    }
    std::fs::write(config.join(SAGA), text).unwrap();
}

async fn open(c: &Client, id: &str, amount: i64) {
    ok(c, "account.open", json!({"id": id, "owner": id})).await;
    ok(c, "account.deposit", json!({"id": id, "amount": amount})).await;
}

async fn in_state(c: &Client, id: &str, state: &str) {
    let reached = eventually(20, || async { saga_instance(c, "transfer", id).await["state"] == state }).await;
    assert!(reached, "{id} reaches {state}: {:#}", saga_instance(c, "transfer", id).await);
}

/// The version each instance runs on, as `eddy.admin.sagas` lists them.
async fn versions(c: &Client) -> Vec<(String, u64)> {
    let reply = c.request("eddy.admin.sagas", json!({"saga": "transfer"}).to_string().into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    let items = reply["items"].as_array().unwrap_or_else(|| panic!("instances: {reply}"));
    items.iter().map(|i| (i["id"].as_str().unwrap().to_string(), i["version"].as_u64().unwrap())).collect()
}

fn eddy(args: &[&str], config: &Path, url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--server", url])
        .output()
        .unwrap()
}

async fn running(c: &Client) {
    let up = eventually(30, || async { reactor_status(c, "transfer").await["status"] == "running" }).await;
    assert!(up, "transfer runs: {}", reactor_status(c, "transfer").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_transfers_finish_on_their_version_while_new_ones_start_on_the_current_one() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let dir = nats.dir.path();
    let config = dir.join("config");
    copy_example("bank", &config);
    let v1 = std::fs::read_to_string(config.join(SAGA)).unwrap();
    let mut eddy_engine = engine(&config_at(&config, &nats.url(), dir)).await;
    reactors_running(&c, &["transfer"]).await;
    open(&c, "alice", 10_000).await;
    ok(&c, "account.open", json!({"id": "bob", "owner": "bob"})).await;
    for id in ["t-reload", "t-restart"] {
        ok(&c, "transfer.request", json!({"id": id, "from": "alice", "to": "bob", "amount": 2_000})).await;
        in_state(&c, id, "approval").await;
    }

    // A live reload to version 2, which has no approval state at all.
    write_v2(&config, &v1, true);
    eddy_engine.apply(config_at(&config, &nats.url(), dir)).await;
    running(&c).await;
    ok(&c, "transfer.request", json!({"id": "t-new", "from": "alice", "to": "bob", "amount": 2_000})).await;
    assert_eq!(path(&finished(&c, "transfer", "t-new").await), ["debit", "credit", "completed"]);
    // The in-flight instance is still in v1's approval, and v1's transition takes it on.
    ok(&c, "transfer.approve", json!({"id": "t-reload"})).await;
    assert_eq!(path(&finished(&c, "transfer", "t-reload").await), ["debit", "approval", "credit", "completed"]);
    let listed = versions(&c).await;
    let expected = [("t-new", 2), ("t-reload", 1), ("t-restart", 1)].map(|(i, v)| (i.to_string(), v));
    assert_eq!(listed, expected);

    // Editing version 1's states while t-restart runs on it is refused as a whole: the running config stays.
    let v1_of = |running: &eddy::Running| {
        let saga = running.settings().reactors.iter().find_map(|r| match r {
            eddy_reactors::Reactor::Saga(s) => Some(s.clone()),
            eddy_reactors::Reactor::Rule(_) => None,
        });
        saga.unwrap().definitions[&1].fingerprint.clone()
    };
    let pinned = v1_of(&eddy_engine);
    let kept = std::fs::read_to_string(config.join(SAGA)).unwrap();
    std::fs::write(config.join(SAGA), kept.replace("timeout_secs = 60", "timeout_secs = 61")).unwrap();
    let edited = config_at(&config, &nats.url(), dir);
    eddy_engine.apply(edited).await;
    assert_eq!(v1_of(&eddy_engine), pinned, "the edit of a running version is not applied");
    std::fs::write(config.join(SAGA), kept).unwrap();

    // `eddy sagas` prints each instance's version.
    let out = eddy(&["sagas", "transfer"], &config, &nats.url());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("VERSION"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with("t-new")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(line.split_whitespace().nth(1), Some("2"), "{text}");
    let out = eddy(&["sagas", "transfer", "--json"], &config, &nats.url());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["items"][2]["id"], "t-restart");
    assert_eq!(json["items"][2]["version"], 1);

    // Validate: dropping v1 while t-restart runs on it is refused; keeping it passes; no server, no check.
    let dropped = dir.join("dropped");
    copy_example("bank", &dropped);
    write_v2(&dropped, &v1, false);
    let out = eddy(&["validate"], &dropped, &nats.url());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("reactors.transfer: drops version 1, which 1 running instance(s) still use (t-restart)"),
        "{text}"
    );
    let out = eddy(&["validate"], &config, &nats.url());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = eddy(&["validate"], &dropped, &format!("nats://127.0.0.1:{}", free_port()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("saga versions of running instances NOT checked"), "{err}");

    // A restart, then a rebuild of the saga's state from the stream: t-restart is still on v1.
    stop(eddy_engine).await;
    let eddy_engine = engine(&config_at(&config, &nats.url(), dir)).await;
    running(&c).await;
    let reply = c.request("eddy.admin.reactors.rebuild", json!({"name": "transfer"}).to_string().into()).await;
    assert!(reply.is_ok());
    running(&c).await;
    assert_eq!(versions(&c).await, expected);
    ok(&c, "transfer.approve", json!({"id": "t-restart"})).await;
    let inst = finished(&c, "transfer", "t-restart").await;
    assert_eq!(path(&inst), ["debit", "approval", "credit", "completed"], "{inst:#}");
    stop(eddy_engine).await;
    replays_each_instance_on_its_own_version(&config, &nats.url());
}

/// A replay of the recorded stream on the current config (v2, with v1 kept) runs each instance on the
/// version it started on live: every transition it decides is the recorded one, none is made up.
fn replays_each_instance_on_its_own_version(config: &Path, url: &str) {
    let recording = config.join("rec.jsonl");
    let out = eddy(&["record", "--out", recording.to_str().unwrap()], config, url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("replay")
        .arg(&recording)
        .args(["--format", "json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let transcript: Value = serde_json::from_slice(&out.stdout).unwrap();
    let transitions: Vec<&Value> = transcript["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reactors"]["transfer"]["transitions"].as_array())
        .flatten()
        .collect();
    for id in ["t-reload", "t-restart", "t-new"] {
        let of: Vec<&&Value> = transitions.iter().filter(|t| t["instance"] == id).collect();
        assert!(!of.is_empty() && of.iter().all(|t| t["recorded"] == true), "{id}: {of:#?}");
    }
    let end = &transcript["end"]["sagas"]["transfer"];
    let version = |id: &str| end[id].get("saga_version").map_or(1, |v| v.as_u64().unwrap());
    assert_eq!([version("t-reload"), version("t-restart"), version("t-new")], [1, 1, 2], "{end:#}");
    assert_eq!(end["t-restart"]["state"], "completed", "{end:#}");
}
