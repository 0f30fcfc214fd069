//! Start and wait (`Eddy-Wait`, `eddy send --wait`) and operators steering a stuck instance
//! (`eddy.admin.sagas.cancel` / `.move`, `eddy sagas <saga> <id> cancel`), on the bank example.

mod common;

use async_nats::Client;
use common::*;
use serde_json::{json, Value};

async fn bank(c: &Client) {
    reactors_running(c, &["transfer"]).await;
    for id in ["a1", "a2"] {
        ok(c, "account.open", json!({"id": id, "owner": id})).await;
    }
    ok(c, "account.deposit", json!({"id": "a1", "amount": 10_000})).await;
}

fn transfer(id: &str, amount: i64) -> String {
    json!({"id": id, "from": "a1", "to": "a2", "amount": amount}).to_string()
}

async fn admin(c: &Client, verb: &str, body: Value) -> Value {
    let msg = c.request(format!("eddy.admin.sagas.{verb}"), body.to_string().into()).await.expect("a reply");
    serde_json::from_slice(&msg.payload).unwrap()
}

#[tokio::test]
async fn a_command_that_starts_a_saga_waits_for_its_end_or_says_it_still_runs() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    bank(&c).await;

    let reply = send_raw(&c, "transfer.request", &transfer("t1", 100), &[("Eddy-Wait", "20")]).await;
    assert!(reply.ok(), "{}", reply.body);
    assert_eq!(reply.body["timed_out"], false);
    let saga = &reply.body["sagas"][0];
    assert_eq!(
        (saga["saga"].as_str(), saga["id"].as_str(), saga["final"].as_bool()),
        (Some("transfer"), Some("t1"), Some(true))
    );
    assert_eq!((saga["state"].as_str(), &saga["data"]["amount"]), (Some("completed"), &json!(100)));

    // Over 1000 it waits for an approval: the wait runs out, and the reply still says the command succeeded.
    let reply = send_raw(&c, "transfer.request", &transfer("t2", 2_000), &[("Eddy-Wait", "1")]).await;
    assert!(reply.ok(), "{}", reply.body);
    assert_eq!((reply.body["timed_out"].as_bool(), reply.body["seq"].is_u64()), (Some(true), true));
    let saga = &reply.body["sagas"][0];
    assert_eq!(
        (saga["id"].as_str(), saga["state"].as_str(), saga["final"].as_bool()),
        (Some("t2"), Some("approval"), Some(false))
    );

    // A command that starts nothing answers at once, with no sagas.
    let reply =
        send_raw(&c, "account.deposit", &json!({"id": "a2", "amount": 1}).to_string(), &[("Eddy-Wait", "30")]).await;
    assert_eq!(reply.body["sagas"], json!([]));
    for bad in ["0", "301", "soon", "-1"] {
        let reply = send_raw(&c, "transfer.request", &transfer("t9", 5), &[("Eddy-Wait", bad)]).await;
        assert_eq!(reply.code(), "invalid", "{bad}: {}", reply.body);
        assert!(reply.message().contains("Eddy-Wait") || reply.message().contains("wait"), "{}", reply.message());
    }

    // The CLI: `eddy send --wait` prints the final state (run beside the in-process engine, not blocking it).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["send", "transfer.request", &transfer("t3", 50), "--wait=20", "--server", &nats.url()])
        .output()
        .await
        .unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(printed["sagas"][0]["state"], "completed");
    stop(eddy).await;
}

#[tokio::test]
async fn operators_cancel_or_move_a_stuck_instance_and_the_log_says_who_asked() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    bank(&c).await;
    for (id, amount) in [("t-cancel", 2_000), ("t-move", 3_000)] {
        ok(&c, "transfer.request", serde_json::from_str(&transfer(id, amount)).unwrap()).await;
        let waiting = eventually(20, || async { saga_instance(&c, "transfer", id).await["state"] == "approval" }).await;
        assert!(waiting, "{id} waits for approval");
    }

    // The approval state declares `on.cancel`: the debit is refunded, with who asked in the reason.
    let reply =
        admin(&c, "cancel", json!({"saga": "transfer", "id": "t-cancel", "by": "ann", "reason": "customer called"}))
            .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let cancelled = finished(&c, "transfer", "t-cancel").await;
    assert_eq!(path(&cancelled), ["debit", "approval", "refund", "failed"]);
    assert_eq!(cancelled["data"]["reason"], "cancelled by ann");
    assert_eq!(cancelled["history"][2]["trigger"], "cancel by ann");

    // A move enters the named state and runs it: the credit is made.
    let reply = admin(&c, "move", json!({"saga": "transfer", "id": "t-move", "by": "bob", "state": "credit"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let moved = finished(&c, "transfer", "t-move").await;
    assert_eq!(path(&moved), ["debit", "approval", "credit", "completed"]);
    assert_eq!(moved["history"][2]["trigger"], "move by bob");

    let log = events_on(&c, "events.saga-transfer.t-cancel").await;
    let steer = log.iter().find(|e| e.event_type == "OperatorSteered").expect("the steer is on the log");
    assert_eq!((steer.data["by"].as_str(), steer.data["reason"].as_str()), (Some("ann"), Some("customer called")));

    // Each mistake gets its own error.
    let cases = [
        ("cancel", json!({"saga": "transfer", "id": "t-cancel", "by": "ann"}), "conflict"),
        ("move", json!({"saga": "transfer", "id": "t-move", "by": "ann", "state": "credit"}), "conflict"),
        ("cancel", json!({"saga": "transfer", "id": "nope", "by": "ann"}), "not_found"),
        ("cancel", json!({"saga": "nosuch", "id": "t1", "by": "ann"}), "not_found"),
        ("cancel", json!({"saga": "transfer", "id": "t1", "by": ""}), "invalid"),
        ("cancel", json!({"saga": "transfer", "id": "t1", "by": "a\nb"}), "invalid"),
        ("move", json!({"saga": "transfer", "id": "t1", "by": "ann"}), "invalid"),
        ("cancel", json!({"saga": "transfer", "id": "t1"}), "invalid"),
    ];
    for (verb, body, code) in cases {
        let reply = admin(&c, verb, body.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{verb} {body}: {reply}");
    }
    ok(&c, "transfer.request", serde_json::from_str(&transfer("t-lost", 2_500)).unwrap()).await;
    assert!(eventually(20, || async { saga_instance(&c, "transfer", "t-lost").await["state"] == "approval" }).await);
    let reply = admin(&c, "move", json!({"saga": "transfer", "id": "t-lost", "by": "ann", "state": "limbo"})).await;
    assert_eq!(reply["error"]["code"], "invalid", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("no state `limbo`"), "{reply}");

    // The CLI, with --by and --reason.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "sagas",
            "transfer",
            "t-lost",
            "cancel",
            "--by",
            "carol",
            "--reason",
            "duplicate",
            "--server",
            &nats.url(),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lost = finished(&c, "transfer", "t-lost").await;
    assert_eq!((lost["state"].as_str(), lost["data"]["reason"].as_str()), (Some("failed"), Some("cancelled by carol")));
    stop(eddy).await;
}

// The console's instance page steers too: its Cancel button needs the operator token when one is set, and
// the cancel is recorded as asked by `console`.
#[tokio::test]
async fn the_console_cancels_a_stuck_instance_with_the_operator_token() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let mut settings = example("bank", &nats.url(), nats.dir.path());
    settings.engine.http.token = Some("op-token-0123456789".into());
    let eddy = engine(&settings).await;
    bank(&c).await;
    send_raw(&c, "transfer.request", &transfer("t-console", 2_000), &[]).await;
    assert!(eventually(20, || async { saga_instance(&c, "transfer", "t-console").await["state"] == "approval" }).await);

    let base = format!("http://{}", eddy.http_addr().expect("HTTP is on in tests"));
    let page = reqwest::get(format!("{base}/sagas/transfer/t-console")).await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"value="cancel""#), "a stuck instance shows the Cancel button");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let steer = format!("{base}/sagas/transfer/t-console/steer");
    let press = |token: &'static str| {
        let (http, steer) = (http.clone(), steer.clone());
        async move {
            let form = [("action", "cancel"), ("reason", "customer called"), ("token", token)];
            http.post(&steer).form(&form).send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(press("guess").await, 401, "a wrong token changes nothing");
    assert_eq!(saga_instance(&c, "transfer", "t-console").await["state"], "approval");
    assert_eq!(press("op-token-0123456789").await, 303, "back to the instance page");
    let cancelled = finished(&c, "transfer", "t-console").await;
    assert_eq!(path(&cancelled), ["debit", "approval", "refund", "failed"]);
    assert_eq!(cancelled["data"]["reason"], "cancelled by console");
    stop(eddy).await;
}
