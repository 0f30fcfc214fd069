//! Reactors across crashes and config changes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use common::*;
use eddy_engine::envelope::StoredEvent;
use eddy_engine::runtime::Shutdown;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A small deterministic generator; the seed is printed so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sends a command until some engine answers, with one command id throughout (eddy may be down).
async fn send_until_answered(c: &Client, target: &str, body: serde_json::Value, command_id: &str) -> Reply {
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Eddy-Command-Id", command_id);
        let request = async_nats::Request::new()
            .headers(h)
            .payload(body.to_string().into())
            .timeout(Some(Duration::from_secs(2)));
        if let Ok(msg) = c.send_request(format!("eddy.cmd.{target}"), request).await {
            let body = serde_json::from_slice(&msg.payload).unwrap();
            return Reply { body, raw: msg.payload, headers: msg.headers };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every product event in stream order.
async fn product_events(c: &Client, products: usize) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    for p in 0..products {
        all.extend(events_on(c, &format!("events.product.p{p}")).await);
    }
    all.sort_by_key(|e| e.seq);
    all
}

#[tokio::test]
async fn sigkill_at_random_points_loses_and_repeats_no_effect() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let data = tempfile::tempdir().unwrap();
    let spawn = || spawn_eddy(&root().join("config/examples/inventory"), &nats.url(), data.path());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);

    let alerts = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut sub = c.subscribe("alerts.low_stock").await.unwrap();
    c.flush().await.unwrap();
    let collector = {
        let alerts = alerts.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let id = msg.headers.as_ref().and_then(|h| h.get("Eddy-Effect-Id")).map(|v| v.to_string());
                alerts.lock().unwrap().push(id.unwrap_or_default());
            }
        })
    };

    let mut child = spawn();
    let mut guard = KillOnDrop(child.id());
    assert!(eventually(30, || async { reactor_status(&c, "low-stock").await["status"] == "running" }).await);

    const PRODUCTS: usize = 4;
    let driver = {
        let c = c.clone();
        let mut rng = Rng(seed.rotate_left(17) | 1);
        tokio::spawn(async move {
            for p in 0..PRODUCTS {
                let body = json!({"id": format!("p{p}"), "name": "part", "low_mark": 10});
                send_until_answered(&c, "product.register", body, &format!("reg-{p}")).await;
            }
            for i in 0..800 {
                let id = format!("p{}", rng.below(PRODUCTS as u64));
                let (target, quantity) = if rng.below(4) == 0 {
                    ("product.restock", 1 + rng.below(20))
                } else {
                    ("product.reduce", 1 + rng.below(8))
                };
                send_until_answered(&c, target, json!({"id": id, "quantity": quantity}), &format!("op-{i}")).await;
            }
        })
    };
    let mut mid_flow = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        mid_flow += u32::from(!driver.is_finished());
        child.kill().unwrap();
        child.wait().unwrap();
        child = spawn();
        guard = KillOnDrop(child.id());
    }
    assert!(mid_flow > 0, "killed while commands flowed");
    driver.await.unwrap();

    // Settle: the reactors have read everything, including the restocks auto-reorder itself caused.
    let mut settled = 0;
    for _ in 0..100 {
        let last = last_seq(&c).await;
        reactor_at(&c, "auto-reorder", last).await;
        reactor_at(&c, "low-stock", last).await;
        if last_seq(&c).await == last {
            settled = last;
            break;
        }
    }
    assert!(settled > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let events = product_events(&c, PRODUCTS).await;
    // auto-reorder: exactly one restock per depletion, none without one.
    let depletions: BTreeSet<String> = events
        .iter()
        .filter(|e| e.event_type == "StockDepleted")
        .map(|e| format!("auto-reorder:{}:0", e.seq))
        .collect();
    let mut restocks: Vec<String> =
        events.iter().filter(|e| e.command_id.starts_with("auto-reorder:")).map(|e| e.command_id.clone()).collect();
    restocks.sort();
    assert!(!depletions.is_empty(), "the run depleted something");
    assert_eq!(restocks, depletions.iter().cloned().collect::<Vec<_>>(), "one restock per depletion");

    // low-stock: the falling edges computed from the stream, each published, none invented.
    let mut stock: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for e in &events {
        let entry = stock.entry(e.id.clone()).or_insert((0, 10));
        let prev = entry.0;
        match e.event_type.as_str() {
            "ProductRegistered" => entry.1 = e.data["low_mark"].as_i64().unwrap(),
            "StockAdded" => entry.0 += e.data["quantity"].as_i64().unwrap(),
            "StockReduced" => entry.0 -= e.data["quantity"].as_i64().unwrap(),
            _ => continue,
        }
        if prev >= entry.1 && entry.0 < entry.1 {
            edges.insert(format!("low-stock:{}:0", e.seq));
        }
    }
    let received = alerts.lock().unwrap().clone();
    let distinct: BTreeSet<String> = received.iter().cloned().collect();
    assert!(!edges.is_empty(), "the run crossed a low mark");
    assert_eq!(distinct, edges, "every falling edge published, nothing else");
    println!("{} alerts, {} repeats of an effect id after kills", received.len(), received.len() - distinct.len());

    child.kill().unwrap();
    child.wait().unwrap();
    drop(guard);
    collector.abort();
}

#[tokio::test]
async fn reactors_added_changed_and_deleted_while_commands_flow() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = tempfile::tempdir().unwrap();
    let data = nats.dir.path().join("eddy");
    for file in ["product.toml", "reactors/low-stock.toml", "reactors/auto-reorder.toml", "projections/stock.toml"] {
        let to = config.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join("config/examples/inventory").join(file), to).unwrap();
    }
    write_engine_toml(config.path(), &nats.url(), &data);
    let settings = eddy::load(config.path()).unwrap();
    let shutdown = Shutdown::new();
    let run = tokio::spawn(eddy::run(config.path().to_path_buf(), settings, shutdown.clone()));
    assert!(eventually(10, || async { reactor_status(&c, "low-stock").await["status"] == "running" }).await);
    for p in ["flow", "p2", "p3", "p4"] {
        ok(&c, "product.register", json!({"id": p, "name": "part", "low_mark": 10})).await;
        ok(&c, "product.restock", json!({"id": p, "quantity": 20})).await;
    }
    ok(&c, "product.reduce", json!({"id": "p2", "quantity": 15})).await; // an edge before low2 exists

    let flow_stop = CancellationToken::new();
    let flow = {
        let (c, stop) = (c.clone(), flow_stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let reply = send(&c, "product.restock", json!({"id": "flow", "quantity": 1})).await;
                assert!(reply.ok(), "commands are undisturbed: {}", reply.body);
                n += 1;
            }
            n
        })
    };
    let low = std::fs::read_to_string(config.path().join("reactors/low-stock.toml")).unwrap();
    let mut low2 = c.subscribe("alerts.low2").await.unwrap();
    let mut low3 = c.subscribe("alerts.low3").await.unwrap();
    c.flush().await.unwrap();

    // Added: builds its state from history quietly, then acts on new edges.
    let added = low.replace("low-stock", "low2").replace("alerts.low_stock", "alerts.low2");
    std::fs::write(config.path().join("reactors/low2.toml"), &added).unwrap();
    assert!(eventually(20, || async { reactor_status(&c, "low2").await["status"] == "running" }).await);
    let edge = ok(&c, "product.reduce", json!({"id": "p3", "quantity": 15})).await;
    reactor_at(&c, "low2", edge.body["seq"].as_u64().unwrap()).await;
    let msg = tokio::time::timeout(Duration::from_secs(5), low2.next()).await.unwrap().unwrap();
    assert_eq!(msg.headers.unwrap().get("Eddy-Effect-Id").unwrap().as_str(), format!("low2:{}:0", edge.body["seq"]));

    // Changed: rebuilt without repeating, the new definition acts from here on.
    std::fs::write(config.path().join("reactors/low2.toml"), added.replace("alerts.low2", "alerts.low3")).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    reactor_at(&c, "low2", edge.body["seq"].as_u64().unwrap()).await;
    let edge = ok(&c, "product.reduce", json!({"id": "p4", "quantity": 15})).await;
    reactor_at(&c, "low2", edge.body["seq"].as_u64().unwrap()).await;
    let msg = tokio::time::timeout(Duration::from_secs(5), low3.next()).await.unwrap().unwrap();
    assert_eq!(msg.headers.unwrap().get("Eddy-Effect-Id").unwrap().as_str(), format!("low2:{}:0", edge.body["seq"]));
    let repeat = tokio::time::timeout(Duration::from_millis(500), low3.next()).await;
    assert!(repeat.is_err(), "the rebuild repeated nothing");
    assert!(tokio::time::timeout(Duration::from_millis(200), low2.next()).await.is_err());

    // Deleted: stops, its files go, the others go on.
    std::fs::remove_file(config.path().join("reactors/auto-reorder.toml")).unwrap();
    assert!(eventually(20, || async { reactor_status(&c, "auto-reorder").await.is_null() }).await);
    assert!(eventually(5, || async { !data.join("reactors/auto-reorder").exists() }).await, "its files go");
    let empty = ok(&c, "product.reduce", json!({"id": "p4", "quantity": 5})).await;
    reactor_at(&c, "low-stock", empty.body["seq"].as_u64().unwrap()).await;
    assert!(!events_on(&c, "events.product.p4").await.iter().any(|e| e.command_id.starts_with("auto-reorder:")));

    // A config that fails validation is rejected whole; the running set stays.
    std::fs::write(config.path().join("reactors/broken.toml"), "[reactors.x]\nkind = \"rule\"\nkey = \"(\"\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reactor_status(&c, "low2").await["status"], "running");
    assert!(reactor_status(&c, "x").await.is_null());

    flow_stop.cancel();
    assert!(flow.await.unwrap() > 0);
    shutdown.graceful.cancel();
    run.await.unwrap().unwrap();
}
