//! Generated event histories, appended straight to the stream as eddy would have written them: for
//! benchmarks and tests that need many events fast.

use async_nats::{Client, HeaderMap};
use serde_json::json;

/// Publishes one `AccountOpened` per account (`acct-<i>`) and then `deposits` `MoneyDeposited` events spread
/// round-robin over them, with up to 2000 acks in flight. Returns each account's final balance.
pub async fn seed_bank(client: &Client, accounts: usize, deposits: usize) -> Result<Vec<i64>, async_nats::Error> {
    let js = async_nats::jetstream::new(client.clone());
    let accounts = accounts.max(1);
    let mut versions = vec![0u64; accounts];
    let mut balances = vec![0i64; accounts];
    let mut acks = Vec::with_capacity(2000);
    for i in 0..accounts + deposits {
        let (account, event_type, data) = if i < accounts {
            (i, "AccountOpened", json!({"owner": format!("o{i}")}))
        } else {
            let n = i - accounts;
            let amount = (n % 7 + 1) as i64;
            balances[n % accounts] += amount;
            (n % accounts, "MoneyDeposited", json!({"amount": amount}))
        };
        versions[account] += 1;
        let mut h = HeaderMap::new();
        h.insert("Eddy-Event-Type", event_type);
        h.insert("Eddy-Version", versions[account].to_string().as_str());
        h.insert("Eddy-Time", "2026-01-02T03:04:05.000000Z");
        h.insert("Eddy-Command-Id", format!("seed-{account}-{}", versions[account]).as_str());
        acks.push(js.publish_with_headers(format!("events.account.acct-{account}"), h, data.to_string().into()).await?);
        if acks.len() == 2000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(balances)
}
