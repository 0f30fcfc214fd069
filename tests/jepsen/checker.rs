//! The checker: given what clients saw (the history) and what the stream holds after the faults, lists every
//! broken promise. Pure over its inputs, so a test can feed it a fabricated history or stream.
//!
//! Specific to the bank example: every account command stores exactly one event, transfers at most 1000 never
//! wait for an approval, and `large-withdrawals` emits `DailyLimitExceeded` when an account's withdrawals on one
//! day pass 10000.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use eddy_engine::aggregate::date_of;
use eddy_engine::envelope::StoredEvent;

/// One event of the stream and its `Nats-Msg-Id`.
#[derive(Debug, Clone)]
pub struct Stored {
    pub msg_id: String,
    pub event: StoredEvent,
}

/// How a client command ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered ok with the seq of its (last) event.
    Ok { seq: u64 },
    /// Answered with an error (a business rejection): nothing stored by that answer.
    Rejected { code: String },
    /// Never answered before the client gave up (timeouts): stored at most once.
    Unknown,
}

/// One client command and its outcome.
#[derive(Debug, Clone)]
pub struct Op {
    pub command_id: String,
    /// `<aggregate>.<command>`.
    pub target: String,
    pub body: serde_json::Value,
    pub outcome: Outcome,
}

/// What the views answer after the run.
#[derive(Debug, Clone, Default)]
pub struct Views {
    /// `balances`: account id -> balance.
    pub balances: BTreeMap<String, i64>,
    /// `daily-totals` summed over days: (deposited, withdrawn, count).
    pub daily: (i64, i64, i64),
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

/// Figures for the report.
#[derive(Debug, Default)]
pub struct Summary {
    pub events: usize,
    pub ok: usize,
    pub rejected: usize,
    pub unknown: usize,
    pub transfers_completed: usize,
    pub transfers_failed: usize,
    pub limit_events: usize,
    pub money: i64,
}

/// Checks everything; returns the violations (empty when every promise held) and figures.
/// `views` holds one reading per query round (any engine may answer); each must equal the fold.
pub fn check(history: &[Op], stream: &[Stored], views: &[Views]) -> (Vec<Violation>, Summary) {
    let mut v = Vec::new();
    let mut s = Summary { events: stream.len(), ..Default::default() };
    let mut push = |rule, detail: String| v.push(Violation { rule, detail });

    // No id stored twice: Nats-Msg-Id anywhere, command ids per aggregate instance (effects included).
    let mut by_msg: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut by_cmd: BTreeMap<(&str, &str, &str), Vec<u64>> = BTreeMap::new();
    let mut cmd_seqs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for m in stream {
        let e = &m.event;
        if !m.msg_id.is_empty() {
            by_msg.entry(&m.msg_id).or_default().push(e.seq);
        }
        if !e.command_id.is_empty() {
            by_cmd.entry((&e.aggregate, &e.id, &e.command_id)).or_default().push(e.seq);
            cmd_seqs.entry(&e.command_id).or_default().push(e.seq);
        }
    }
    for (id, seqs) in by_msg.iter().filter(|(_, s)| s.len() > 1) {
        push("msg-id-twice", format!("Nats-Msg-Id {id} stored at seqs {seqs:?}"));
    }
    for ((agg, id, cmd), seqs) in by_cmd.iter().filter(|(_, s)| s.len() > 1) {
        push("command-twice", format!("command {cmd} stored {} times on {agg}.{id} at seqs {seqs:?}", seqs.len()));
    }

    // Acked commands stored exactly once, where the reply said; the others at most once.
    let mut client_ids = BTreeSet::new();
    for op in history {
        client_ids.insert(op.command_id.as_str());
        let seqs = cmd_seqs.get(op.command_id.as_str()).cloned().unwrap_or_default();
        match &op.outcome {
            Outcome::Ok { seq } => {
                s.ok += 1;
                if seqs.is_empty() {
                    push(
                        "acked-lost",
                        format!("{} {} {} acked at seq {seq}, not in the stream", op.command_id, op.target, op.body),
                    );
                } else if !seqs.contains(seq) {
                    push("acked-elsewhere", format!("{} acked at seq {seq}, stored at {seqs:?}", op.command_id));
                }
            }
            Outcome::Rejected { .. } => s.rejected += 1,
            Outcome::Unknown => s.unknown += 1,
        }
    }

    // Money: fold every account in stream order; a balance never goes negative.
    let mut balances: BTreeMap<&str, i64> = BTreeMap::new();
    let (mut deposited, mut withdrawn, mut count) = (0i64, 0i64, 0i64);
    let mut external = 0i64;
    let mut daily_withdrawn: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut triggers: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for m in stream.iter().filter(|m| m.event.aggregate == "account") {
        let e = &m.event;
        let amount = e.data["amount"].as_i64().unwrap_or(0);
        let signed = match e.event_type.as_str() {
            "MoneyDeposited" => amount,
            "MoneyWithdrawn" => -amount,
            _ => {
                balances.entry(&e.id).or_default();
                continue;
            }
        };
        if signed > 0 {
            deposited += amount;
        } else {
            withdrawn += amount;
            let day = (e.id.clone(), date_of(e.time));
            let before = *daily_withdrawn.get(&day).unwrap_or(&0);
            daily_withdrawn.insert(day.clone(), before + amount);
            if before <= 10_000 && before + amount > 10_000 {
                triggers.insert(format!("large-withdrawals:{}:0", e.seq), (e.seq, format!("{}-{}", day.0, day.1)));
            }
        }
        count += 1;
        let balance = balances.entry(&e.id).or_default();
        *balance += signed;
        if *balance < 0 {
            push("overdrawn", format!("account {} at {} after seq {}", e.id, balance, e.seq));
        }
        if client_ids.contains(e.command_id.as_str()) {
            external += signed;
        } else if !e.correlation_id.starts_with("transfer:") {
            push(
                "foreign-money",
                format!("seq {} {} on {} from command {:?}", e.seq, e.event_type, e.id, e.command_id),
            );
        }
    }
    let folded: i64 = balances.values().sum();
    s.money = folded;
    if folded != deposited - withdrawn {
        push("money", format!("balances fold to {folded}, deposits - withdrawals = {}", deposited - withdrawn));
    }
    if folded != external {
        push("money", format!("balances fold to {folded}, clients moved {external} in (transfers must net zero)"));
    }

    // Views equal the fold.
    for (n, views) in views.iter().enumerate() {
        for (id, balance) in &balances {
            match views.balances.get(*id) {
                Some(b) if b == balance => {}
                other => push("view-balances", format!("reading {n}: {id}: folded {balance}, view says {other:?}")),
            }
        }
        for id in views.balances.keys().filter(|id| !balances.contains_key(id.as_str())) {
            push("view-balances", format!("reading {n}: {id} in the view, no such account in the stream"));
        }
        let sum: i64 = views.balances.values().sum();
        if sum != folded {
            push("view-balances", format!("reading {n}: the view sums to {sum}, the fold to {folded}"));
        }
        if views.daily != (deposited, withdrawn, count) {
            let fold = (deposited, withdrawn, count);
            push(
                "view-daily-totals",
                format!("reading {n}: (deposited, withdrawn, count) = {:?}, fold {fold:?}", views.daily),
            );
        }
    }

    // Reactor: one DailyLimitExceeded per crossing, with the crossing's effect id, and none other.
    let mut emitted: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for m in stream.iter().filter(|m| m.event.aggregate == "large-withdrawals") {
        emitted.entry(&m.msg_id).or_default().push(m.event.seq);
        s.limit_events += 1;
        if !triggers.contains_key(&m.msg_id) {
            push(
                "reactor-spurious",
                format!("seq {} {} ({}) has no crossing behind it", m.event.seq, m.event.event_type, m.msg_id),
            );
        }
    }
    for (effect, (seq, key)) in &triggers {
        let n = emitted.get(effect.as_str()).map_or(0, Vec::len);
        if n != 1 {
            push(
                "reactor-once",
                format!("withdrawal at seq {seq} crossed 10000 for {key}: {n} DailyLimitExceeded ({effect})"),
            );
        }
    }

    check_transfers(stream, &mut s, &mut push);
    (v, s)
}

/// Every transfer final, with exact money moves.
fn check_transfers(stream: &[Stored], s: &mut Summary, push: &mut impl FnMut(&'static str, String)) {
    let mut transfers: BTreeMap<&str, (Option<&StoredEvent>, Vec<&str>)> = BTreeMap::new();
    let mut moves: BTreeMap<String, Vec<&StoredEvent>> = BTreeMap::new();
    for m in stream {
        let e = &m.event;
        if e.aggregate == "transfer" {
            let t = transfers.entry(&e.id).or_default();
            if e.event_type == "TransferRequested" {
                t.0 = Some(e);
            } else {
                t.1.push(&e.event_type);
            }
        } else if e.aggregate == "account" && e.correlation_id.starts_with("transfer:") {
            moves.entry(e.correlation_id["transfer:".len()..].to_string()).or_default().push(e);
        }
    }
    for (id, (requested, ends)) in &transfers {
        let Some(req) = requested else {
            push("transfer", format!("{id}: events without TransferRequested"));
            continue;
        };
        let (from, to, amount) = (
            req.data["from"].as_str().unwrap_or(""),
            req.data["to"].as_str().unwrap_or(""),
            req.data["amount"].as_i64().unwrap_or(0),
        );
        let moved = moves.remove(*id).unwrap_or_default();
        let net = |account: &str| -> (i64, usize) {
            let of: Vec<_> = moved.iter().filter(|e| e.id == account).collect();
            let sum = of
                .iter()
                .map(|e| e.data["amount"].as_i64().unwrap_or(0) * if e.event_type == "MoneyWithdrawn" { -1 } else { 1 })
                .sum();
            (sum, of.len())
        };
        match ends.as_slice() {
            ["TransferCompleted"] => {
                s.transfers_completed += 1;
                if net(from) != (-amount, 1) || net(to) != (amount, 1) || moved.len() != 2 {
                    push(
                        "transfer-moves",
                        format!("{id} completed ({from} -> {to}, {amount}): moves {}", describe(&moved)),
                    );
                }
            }
            ["TransferFailed"] => {
                s.transfers_failed += 1;
                let (f, n) = net(from);
                if f != 0 || net(to).1 != 0 || !(n == 0 || n == 2) {
                    push(
                        "transfer-moves",
                        format!("{id} failed ({from} -> {to}, {amount}): moves {}", describe(&moved)),
                    );
                }
            }
            other => push("transfer-final", format!("{id} ({from} -> {to}, {amount}) not final once: {other:?}")),
        }
    }
    for (id, moved) in moves {
        push("transfer-moves", format!("moves of unknown transfer {id}: {}", describe(&moved)));
    }
}

fn describe(moved: &[&StoredEvent]) -> String {
    let parts: Vec<String> =
        moved.iter().map(|e| format!("seq {} {} {} {}", e.seq, e.event_type, e.id, e.data["amount"])).collect();
    format!("[{}]", parts.join(", "))
}
