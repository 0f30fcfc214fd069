//! Views across crashes and config changes.

mod common;

use std::time::Duration;

use common::*;
use eddy_engine::runtime::Shutdown;
use serde_json::{json, Value};

#[tokio::test]
async fn a_view_killed_mid_catch_up_is_exact_after_restart() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let settings = example("bank", &nats.url(), nats.dir.path());
    eddy_engine::store::EventStore::open(c.clone(), &settings.engine.engine).await.unwrap();
    let balances = seed_bank(&c, 200, 60_000).await;
    let js = async_nats::jetstream::new(c.clone());
    let end = js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.last_sequence;

    let data = tempfile::tempdir().unwrap();
    let spawn = || spawn_eddy(&root().join("config/examples/bank"), &nats.url(), data.path());
    let mut first = spawn();
    let _first_guard = KillOnDrop(first.id());
    let mut position = 0;
    for _ in 0..3000 {
        position = view_status(&c, "balances").await["position"].as_u64().unwrap_or(0);
        if position > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = position > 0;
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(started, "the view started building");
    assert!(position < end, "killed mid catch-up (at {position} of {end})");

    let mut second = spawn();
    let _second_guard = KillOnDrop(second.id());
    let reply = {
        let mut reply = Value::Null;
        for _ in 0..100 {
            if let Ok(msg) = c
                .request(
                    "eddy.query.balances.get",
                    json!({"key": "acct-0", "min_seq": end, "timeout_ms": 5000}).to_string().into(),
                )
                .await
            {
                reply = serde_json::from_slice(&msg.payload).unwrap();
                if reply["ok"] == true {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reply
    };
    assert_eq!(reply["ok"], true, "{reply}");
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let page = query(&c, "balances", "list", json!({"after": after, "limit": 1000})).await;
        for item in page["items"].as_array().unwrap() {
            let i: usize = item["key"].as_str().unwrap().trim_start_matches("acct-").parse().unwrap();
            assert_eq!(item["doc"]["balance"], balances[i], "acct-{i}: no event applied twice or skipped");
            seen += 1;
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 200);
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn views_added_and_deleted_while_commands_flow() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = tempfile::tempdir().unwrap();
    let data = nats.dir.path().join("eddy");
    std::fs::copy(root().join("config/examples/bank/account.toml"), config.path().join("account.toml")).unwrap();
    write_engine_toml(config.path(), &nats.url(), &data);
    let settings = eddy::load(config.path()).unwrap();
    let shutdown = Shutdown::new();
    let run = tokio::spawn(eddy::run(config.path().to_path_buf(), settings, shutdown.clone()));
    assert!(
        eventually(10, || async {
            c.request("eddy.cmd.account.open", json!({"id": "a0", "owner": "x"}).to_string().into()).await.is_ok()
        })
        .await
    );

    let flow_stop = tokio_util::sync::CancellationToken::new();
    let flow = {
        let (c, stop) = (c.clone(), flow_stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let reply = send(&c, "account.deposit", json!({"id": "a0", "amount": 1})).await;
                assert!(reply.ok(), "commands are undisturbed: {}", reply.body);
                n += 1;
            }
            n
        })
    };

    std::fs::create_dir(config.path().join("projections")).unwrap();
    std::fs::copy(
        root().join("config/examples/bank/projections/balances.toml"),
        config.path().join("projections/balances.toml"),
    )
    .unwrap();
    assert!(
        eventually(20, || async {
            query(&c, "balances", "get", json!({"key": "a0"})).await["doc"]["balance"].as_i64().unwrap_or(0) > 0
        })
        .await,
        "the added view builds from the beginning"
    );
    std::fs::remove_file(config.path().join("projections/balances.toml")).unwrap();
    assert!(
        eventually(20, || async {
            query(&c, "balances", "get", json!({"key": "a0"})).await["error"]["code"] == "not_found"
        })
        .await,
        "the deleted view stops"
    );
    assert!(eventually(5, || async { !data.join("views/balances").exists() }).await, "and its files go");

    // A config that fails validation is rejected whole; the running set stays.
    std::fs::write(config.path().join("broken.toml"), "[projections.x]\nkey = \"(\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(send(&c, "account.deposit", json!({"id": "a0", "amount": 1})).await.ok());
    assert_eq!(query(&c, "x", "get", json!({"key": "a0"})).await["error"]["code"], "not_found");

    flow_stop.cancel();
    assert!(flow.await.unwrap() > 0);
    shutdown.graceful.cancel();
    run.await.unwrap().unwrap();
}
