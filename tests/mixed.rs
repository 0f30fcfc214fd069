//! Engines whose configs define different aggregates behind one `api_prefix` are refused, never mixed
//! (a second engine would otherwise take half of the first's commands and answer them `not_found`).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn an_engine_with_other_aggregates_on_the_same_prefix_is_refused() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let bank = engine(&example("bank", &nats.url(), &nats.dir.path().join("bank"))).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;

    let inventory = example("inventory", &nats.url(), &nats.dir.path().join("inventory"));
    let err = eddy::Running::start(inventory.clone()).await.err().expect("the inventory engine is refused");
    let err = err.to_string();
    assert!(err.contains("serves different aggregates on api_prefix \"eddy\""), "{err}");
    assert!(err.contains("account(close,deposit,open,withdraw)"), "names the live engine's set: {err}");
    assert!(err.contains("api_prefix") && err.contains("allow_mixed"), "says how to name it apart: {err}");

    // The bank alone answers, every time.
    for i in 0..20 {
        ok(&c, "account.deposit", json!({"id": "a1", "amount": 1 + i})).await;
    }

    // Named apart, it runs beside the bank.
    let mut apart = inventory.clone();
    apart.engine.engine.api_prefix = "stock".into();
    let running = eddy::Running::start(apart).await.expect("another api_prefix is another application");
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 1})).await;
    stop(running).await;

    // A rolling upgrade between configs, on purpose.
    let mut upgrade = inventory;
    upgrade.engine.engine.allow_mixed = true;
    let running = eddy::Running::start(upgrade).await.expect("allow_mixed lets it start");
    stop(running).await;
    stop(bank).await;
}

#[tokio::test]
async fn engines_with_the_same_config_share_the_load() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let a = engine(&example("bank", &nats.url(), &nats.dir.path().join("a"))).await;
    let b = engine(&example("bank", &nats.url(), &nats.dir.path().join("b"))).await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    stop(a).await;
    stop(b).await;
}
