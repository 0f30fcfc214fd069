//! The web console in headless Chromium (Debian's `chromium`; `scripts/test.sh` installs it): a transfer
//! saga's instance page shows its timeline, a parked event is listed with its error and retried by typing the
//! operator token and pressing the button (over the DevTools protocol), and a screenshot is kept under
//! `target/console/`.

#[path = "common/cdp.rs"]
mod cdp;
mod common;

use std::path::PathBuf;
use tokio::process::Command;

use common::*;
use serde_json::json;

/// The Chromium binary: `EDDY_CHROMIUM`, else `chromium` on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("EDDY_CHROMIUM") {
        return path.into();
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    found.expect("chromium: run scripts/test.sh, which installs Debian's chromium package")
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=..`) and returns its stdout.
/// Asynchronously: the engine serving the page runs on this test's runtime.
async fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("chromium answers within 90 s: {url}"))
        .expect("chromium runs");
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Where the screenshots go: a test artifact under the target dir.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let dir = target.join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_transfer_saga_timeline_shows_debit_credit_and_completion() {
    let nats = TestServer::start().await;
    let eddy = engine(&example("bank", &nats.url(), nats.dir.path())).await;
    let c = nats.client().await;
    reactor_at(&c, "transfer", last_seq(&c).await).await;
    ok(&c, "account.open", json!({"id": "ann", "owner": "ann"})).await;
    ok(&c, "account.deposit", json!({"id": "ann", "amount": 500})).await;
    ok(&c, "account.open", json!({"id": "bob", "owner": "bob"})).await;
    ok(&c, "transfer.request", json!({"id": "t-4711", "from": "ann", "to": "bob", "amount": 120})).await;
    assert_eq!(finished(&c, "transfer", "t-4711").await["state"], "completed");
    let base = format!("http://{}", eddy.http_addr().unwrap());

    let url = format!("{base}/sagas/transfer/t-4711");
    let dom = browse(&url, &["--dump-dom"]).await;
    let debit = dom.find("account.withdraw").expect("the debit command is shown");
    let credit = dom.find("account.deposit").expect("the credit command is shown");
    let completion = dom.find("transfer.complete").expect("the completion command is shown");
    assert!(debit < credit && credit < completion, "in order: {dom}");
    for shown in ["ok: MoneyWithdrawn", "ok: MoneyDeposited", "ok: TransferCompleted", "(final)", "&quot;amount&quot;"]
    {
        assert!(dom.contains(shown) || dom.contains(&shown.replace("&quot;", "\"")), "{shown} in {dom}");
    }
    let shot = artifacts().join("transfer-t-4711.png");
    browse(&url, &[&format!("--screenshot={}", shot.display())]).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a screenshot at {}", shot.display());

    // The instance list filters by state.
    let listed = browse(&format!("{base}/sagas/transfer?state=completed"), &["--dump-dom"]).await;
    assert!(listed.contains("t-4711"), "{listed}");
    assert!(!browse(&format!("{base}/sagas/transfer?state=debit"), &["--dump-dom"]).await.contains("t-4711"));
    // The aggregate page: ann's events with the state after each.
    let history = browse(&format!("{base}/aggregates?aggregate=account&id=ann"), &["--dump-dom"]).await;
    assert!(history.contains("MoneyWithdrawn") && history.contains(r#""balance": 380"#), "{history}");
    // The view page, filtered.
    let view = browse(&format!("{base}/views?view=balances&where=doc.balance%20%3E%20200"), &["--dump-dom"]).await;
    assert!(view.contains("ann") && !view.contains(">bob<"), "{view}");
    stop(eddy).await;
}

#[tokio::test]
async fn a_parked_event_is_listed_and_retried_with_the_operator_token() {
    let nats = TestServer::start().await;
    let c = nats.client().await;
    let config = tempfile::tempdir().unwrap();
    copy_example("inventory", config.path());
    std::fs::write(config.path().join("reactors/ratio.toml"), POISON_RULE.replace("ON_ERROR", "park")).unwrap();
    let mut settings = config_at(config.path(), &nats.url(), &nats.dir.path().join("eddy"));
    settings.engine.http.token = Some("op-token-0123456789".into());
    let eddy = engine(&settings).await;
    append_raw(&c, "product", "p1", "StockAdded", json!({"quantity": 8})).await;
    let after = append_raw(&c, "product", "p2", "Noted", json!({})).await;
    reactor_at(&c, "ratio", after).await;
    let base = format!("http://{}", eddy.http_addr().unwrap());

    let page = browse(&format!("{base}/reactors"), &["--dump-dom"]).await;
    assert!(page.contains("Division by zero"), "the parked event's error: {page}");
    assert!(page.contains(r#"name="token""#), "the buttons ask for the operator token");
    let shot = artifacts().join("reactors-parked.png");
    browse(&format!("{base}/reactors"), &[&format!("--screenshot={}", shot.display())]).await;

    // The retry button's request: refused without the token, or with a wrong one.
    let http = reqwest::Client::new();
    let retry = format!("{base}/reactors/ratio/retry");
    assert_eq!(http.post(&retry).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&retry).form(&[("token", "guess")]).send().await.unwrap().status(), 401);
    assert_eq!(reactor_status(&c, "ratio").await["parked"], 1);

    // Once the state allows it, an operator types the token into the page and presses the button.
    let enabled = append_raw(&c, "product", "p3", "Enabled", json!({})).await;
    reactor_at(&c, "ratio", enabled).await;
    let mut page = cdp::Page::open(&chromium(), &format!("{base}/reactors")).await;
    let form = r#"document.querySelector('form[action="/reactors/ratio/retry"]')"#;
    assert!(page.until(&format!("{form} !== null")).await, "the page shows ratio's retry button");
    let press = format!(
        "{form}.querySelector('input[name=token]').value = 'op-token-0123456789'; \
         {form}.querySelector('button.retry').click(); true"
    );
    assert_eq!(page.eval(&press).await, json!(true));
    assert!(
        page.until("document.body !== null && document.body.innerText.includes('ratio: retry requested')").await,
        "the button's answer is shown"
    );
    assert!(eventually(10, || async { reactor_status(&c, "ratio").await["parked"] == 0 }).await);
    let page = browse(&format!("{base}/reactors"), &["--dump-dom"]).await;
    assert!(page.contains(r#"<td class="parked">0</td>"#), "{page}");
    stop(eddy).await;
}
