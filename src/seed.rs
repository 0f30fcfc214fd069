//! Generated event histories, appended straight to the stream as eddy would have written them: for
//! benchmarks and tests that need many events fast.

use async_nats::{Client, HeaderMap};
use serde_json::json;

/// Publishes one `ProductRegistered` (low mark 10) per product (`prod-<i>`) and then `changes` stock events
/// spread round-robin over them: stock is added while a product has less than 15 and reduced otherwise, so
/// every product keeps crossing its low mark. Up to 2000 acks in flight.
pub async fn seed_inventory(client: &Client, products: usize, changes: usize) -> Result<(), async_nats::Error> {
    let products = products.max(1);
    let mut on_hand = vec![0i64; products];
    let events = (0..products + changes).map(|i| {
        if i < products {
            return (i, "ProductRegistered", json!({"name": format!("part {i}"), "low_mark": 10}));
        }
        let p = (i - products) % products;
        if on_hand[p] < 15 {
            on_hand[p] += 10;
            (p, "StockAdded", json!({"quantity": 10}))
        } else {
            on_hand[p] -= 7;
            (p, "StockReduced", json!({"quantity": 7, "order": ""}))
        }
    });
    publish_all(client, "product", "prod", products, events).await
}

/// Opens `accounts` accounts (`acct-<i>`) with `amount` each: two events per account, so that loading one
/// is cheap (the saga benchmark measures sagas, not long aggregate histories).
pub async fn seed_funded_accounts(client: &Client, accounts: usize, amount: i64) -> Result<(), async_nats::Error> {
    let events = (0..accounts * 2).map(|i| {
        if i < accounts {
            (i, "AccountOpened", json!({"owner": format!("o{i}")}))
        } else {
            (i - accounts, "MoneyDeposited", json!({"amount": amount}))
        }
    });
    publish_all(client, "account", "acct", accounts, events).await
}

/// Appends `(index, event type, data)` to `events.<aggregate>.<prefix>-<index>` with eddy's headers.
async fn publish_all(
    client: &Client,
    aggregate: &str,
    prefix: &str,
    count: usize,
    events: impl Iterator<Item = (usize, &'static str, serde_json::Value)>,
) -> Result<(), async_nats::Error> {
    let js = async_nats::jetstream::new(client.clone());
    let mut versions = vec![0u64; count];
    let mut acks = Vec::with_capacity(2000);
    for (i, event_type, data) in events {
        versions[i] += 1;
        let mut h = HeaderMap::new();
        h.insert("Eddy-Event-Type", event_type);
        h.insert("Eddy-Version", versions[i].to_string().as_str());
        h.insert("Eddy-Time", "2026-01-02T03:04:05.000000Z");
        h.insert("Eddy-Command-Id", format!("seed-{i}-{}", versions[i]).as_str());
        acks.push(
            js.publish_with_headers(format!("events.{aggregate}.{prefix}-{i}"), h, data.to_string().into()).await?,
        );
        if acks.len() == 2000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// Publishes one `AccountOpened` per account (`acct-<i>`) and then `deposits` `MoneyDeposited` events spread
/// round-robin over them, with up to 2000 acks in flight. Returns each account's final balance.
pub async fn seed_bank(client: &Client, accounts: usize, deposits: usize) -> Result<Vec<i64>, async_nats::Error> {
    let accounts = accounts.max(1);
    let amount = |n: usize| (n % 7 + 1) as i64;
    let events = (0..accounts + deposits).map(|i| {
        if i < accounts {
            return (i, "AccountOpened", json!({"owner": format!("o{i}")}));
        }
        let n = i - accounts;
        (n % accounts, "MoneyDeposited", json!({"amount": amount(n)}))
    });
    publish_all(client, "account", "acct", accounts, events).await?;
    let mut balances = vec![0i64; accounts];
    for n in 0..deposits {
        balances[n % accounts] += amount(n);
    }
    Ok(balances)
}
