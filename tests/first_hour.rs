//! What a new user runs into in the first hour: answers that say what is missing, with an exit code to match.

mod common;

use common::*;
use serde_json::json;

/// Runs the binary beside the in-process engine (asynchronously: the engine runs on this test's runtime).
async fn eddy(args: &[&str], url: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .args(["--server", url, "--config"])
        .arg(root().join("config/examples/bank"))
        .output()
        .await
        .expect("eddy runs")
}

#[tokio::test]
async fn a_missing_document_or_version_is_an_error_not_a_quiet_answer() {
    let nats = TestServer::start().await;
    let running = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;

    let beyond = eddy(&["history", "account", "a1", "--at-version", "99"], &nats.url()).await;
    assert!(!beyond.status.success());
    assert_eq!(String::from_utf8_lossy(&beyond.stderr).trim(), "account a1 is at version 2; there is no version 99");
    let at = eddy(&["history", "account", "a1", "--at-version", "2"], &nats.url()).await;
    assert!(at.status.success(), "{}", String::from_utf8_lossy(&at.stderr));

    let seq = last_seq(&c).await;
    let found = eddy(&["query", "balances", "a1", "--min-seq", &seq.to_string()], &nats.url()).await;
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let missing = eddy(&["query", "balances", "nobody", "--min-seq", &seq.to_string()], &nats.url()).await;
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&missing.stderr).trim(), "balances has no document `nobody`");
    stop(running).await;
}

#[tokio::test]
async fn views_reactors_sagas_and_history_speak_json() {
    let nats = TestServer::start().await;
    let running = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    ok(&c, "account.open", json!({"id": "a1", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "a1", "amount": 5})).await;
    let json_of = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    };
    let history = json_of(eddy(&["history", "account", "a1", "--json"], &nats.url()).await);
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["event_type"], "MoneyDeposited");
    assert_eq!(history[1]["state"]["balance"], 5);
    let views = json_of(eddy(&["views", "--json"], &nats.url()).await);
    assert!(views["views"].as_array().unwrap().iter().any(|v| v["name"] == "balances"), "{views}");
    let reactors = json_of(eddy(&["reactors", "--json"], &nats.url()).await);
    assert!(reactors["reactors"].as_array().unwrap().iter().any(|r| r["name"] == "transfer"), "{reactors}");
    let sagas = json_of(eddy(&["sagas", "transfer", "--json"], &nats.url()).await);
    assert_eq!(sagas["saga"], "transfer");
    let missing = eddy(&["sagas", "transfer", "nope", "--json"], &nats.url()).await;
    assert!(!missing.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(reply["error"]["code"], "not_found");
    stop(running).await;
}

#[tokio::test]
async fn global_options_go_anywhere_and_c_is_config() {
    let nats = TestServer::start().await;
    let running = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let bank = root().join("config/examples/bank");
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy")).args(args).output().await.expect("eddy runs")
    };
    let url = nats.url();
    let bank = bank.to_str().unwrap().to_string();
    for args in [
        vec!["views", "rebuild", "balances", "--config", &bank, "--server", &url],
        vec!["views", "rebuild", "balances", "-c", &bank, "--server", &url],
        vec!["views", "-c", &bank, "rebuild", "balances", "--server", &url],
    ] {
        let out = run(args.iter().map(|s| s.to_string()).collect()).await;
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    stop(running).await;
}

#[tokio::test]
async fn tail_follows_events_saga_transitions_and_publishes() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let nats = TestServer::start().await;
    let running = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    reactor_at(&c, "transfer", last_seq(&c).await).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["tail", "--server", &nats.url(), "--subjects", "events.>", "--subjects", "alerts.>"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("eddy tail runs");
    // Ready once it says it follows (its consumer and subscription exist by then).
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let said = tokio::time::timeout(std::time::Duration::from_secs(30), err.next_line()).await.unwrap().unwrap();
    assert!(said.unwrap_or_default().starts_with("following"));

    ok(&c, "account.open", json!({"id": "tail-a", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "tail-a", "amount": 50})).await;
    ok(&c, "account.open", json!({"id": "tail-b", "owner": "bob"})).await;
    ok(&c, "transfer.request", json!({"id": "t-tail", "from": "tail-a", "to": "tail-b", "amount": 20})).await;
    finished(&c, "transfer", "t-tail").await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("Eddy-Reactor", "watcher");
    c.publish_with_headers("alerts.big", h, "{\"x\":1}".into()).await.unwrap();
    c.flush().await.unwrap();

    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let wanted = [
        "events.account.tail-a MoneyDeposited",
        "saga transfer t-tail: debit -> credit",
        "publish alerts.big by watcher",
    ];
    let all = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = out.next_line().await {
            seen.push(line);
            if wanted.iter().all(|w| seen.iter().any(|l| l.contains(w))) {
                return;
            }
        }
    });
    assert!(all.await.is_ok(), "tail shows {wanted:?}: {seen:#?}");

    // `eddy sagas <saga> <id>` prints the console's timeline: commands with their replies.
    let shown = eddy(&["sagas", "transfer", "t-tail"], &nats.url()).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    for line in ["sent account.withdraw", "reply: ok: MoneyWithdrawn", "sent account.deposit", "-> completed"] {
        assert!(text.contains(line), "{line} in {text}");
    }
    stop(running).await;
}

/// Client verbs need only `[nats]` and `[engine]`: an error elsewhere in the file on disk (an aggregate being
/// edited) is a warning, since the running engine is fine; an error in the connection settings still stops
/// them.
#[tokio::test]
async fn client_verbs_run_while_the_config_on_disk_has_errors_elsewhere() {
    let nats = TestServer::start().await;
    let running = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let dir = tempfile::tempdir().unwrap();
    copy_example("bank", dir.path());
    let account = dir.path().join("account.toml");
    let text = std::fs::read_to_string(&account).unwrap().replace("cmd.amount > 0", "cmd.amount >");
    std::fs::write(&account, text).unwrap();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let config = dir.path().to_path_buf();
        let url = nats.url();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
                .args(args)
                .args(["--server", &url, "--config"])
                .arg(config)
                .output()
                .await
                .expect("eddy runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (ok, stdout, stderr) = run(&["send", "account.open", r#"{"id": "a1", "owner": "ann"}"#]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("AccountOpened"), "{stdout}");
    assert!(stderr.contains("eddy validate"), "the errors are pointed at: {stderr}");
    for verb in [&["views", "--json"][..], &["reactors", "--json"], &["sagas", "transfer", "--json"]] {
        let (ok, _, stderr) = run(verb).await;
        assert!(ok, "{verb:?}: {stderr}");
    }

    std::fs::write(dir.path().join("eddy.toml"), "[nats]\nurll = \"nats://x\"\n").unwrap();
    let (ok, _, stderr) = run(&["views"]).await;
    assert!(!ok, "a connection error stops the client");
    assert!(stderr.contains("urll"), "{stderr}");
    stop(running).await;
}
