//! `eddy sagas <saga> [<id>]`: a saga's instances (state, age, last transition), or one instance's history.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::views::{finish, print_json, request};

/// Which instances to list.
pub struct SagasArgs {
    pub saga: String,
    pub id: Option<String>,
    pub state: Option<String>,
    pub stuck_secs: Option<u64>,
    pub active: bool,
    pub limit: Option<usize>,
    /// Print the reply as JSON.
    pub json: bool,
}

/// `eddy sagas <saga> <id> cancel | move <state>`.
pub struct SteerArgs {
    pub saga: String,
    pub id: String,
    pub action: String,
    pub to: Option<String>,
    pub by: String,
    pub reason: String,
}

/// Asks the engine to record an operator's cancel or move on the instance's log; the saga then takes it.
pub async fn steer(config: &Path, server: &super::Conn, args: SteerArgs) -> anyhow::Result<ExitCode> {
    if (args.action == "move") != args.to.is_some() {
        anyhow::bail!("`move` takes the state to move to, `cancel` nothing more");
    }
    let body = json!({"saga": args.saga, "id": args.id, "by": args.by, "reason": args.reason, "state": args.to});
    let action = args.action;
    let reply = request(config, server, |p| format!("{p}.admin.sagas.{action}"), body).await?;
    if reply["ok"] == true {
        println!("{action} of {} {} recorded by {} (the saga takes it in stream order)", args.saga, args.id, args.by);
    }
    Ok(finish(&reply))
}

pub async fn sagas(config: &Path, server: &super::Conn, args: SagasArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = &args.id {
        let body = json!({"saga": args.saga, "id": id});
        let reply = request(config, server, |p| format!("{p}.admin.sagas.get"), body).await?;
        if args.json {
            return Ok(print_json(&reply, true));
        }
        if reply["ok"] == true {
            print_instance(&reply["instance"]);
            // The same timeline as the console's instance page, read from the saga's log.
            let config = super::load_or_default(config)?;
            let (client, _url) = server.connect(&config, "eddy-cli").await?;
            let store = eddy_engine::store::EventStore::attach(client, &config.engine);
            match eddy::timeline::load(&store, &args.saga, id).await {
                Ok(steps) => print!("timeline\n{}", eddy::timeline::text(&steps)),
                Err(e) => eprintln!("reading the saga's log: {e}"),
            }
        }
        return Ok(finish(&reply));
    }
    let body = json!({"saga": args.saga, "state": args.state, "stuck_secs": args.stuck_secs,
        "active": args.active, "limit": args.limit});
    let reply = request(config, server, |p| format!("{p}.admin.sagas"), body).await?;
    if reply["ok"] != true || args.json {
        return Ok(print_json(&reply, args.json));
    }
    println!("{:<28} {:>7} {:<14} {:>10} {:>10}  LAST TRANSITION", "INSTANCE", "VERSION", "STATE", "AGE", "IN STATE");
    for i in reply["items"].as_array().into_iter().flatten() {
        let state = format!("{}{}", i["state"].as_str().unwrap_or(""), if i["final"] == true { " ✓" } else { "" });
        println!(
            "{:<28} {:>7} {:<14} {:>10} {:>10}  {}",
            i["id"].as_str().unwrap_or(""),
            i["version"],
            state,
            secs(&i["age_secs"]),
            secs(&i["in_state_secs"]),
            step(&i["last"]),
        );
    }
    if let Some(next) = reply["next"].as_str() {
        println!("(more after {next})");
    }
    let counts: Vec<String> =
        reply["states"].as_object().into_iter().flatten().map(|(s, n)| format!("{s}: {n}")).collect();
    println!("all instances by state: {}", if counts.is_empty() { "none".into() } else { counts.join(", ") });
    if let (Some(status), Some(position)) = (reply["status"].as_str(), reply["position"].as_u64()) {
        println!("answered by an engine where the saga is {status}, at seq {position}");
    }
    Ok(ExitCode::SUCCESS)
}

fn secs(v: &Value) -> String {
    let s = v.as_f64().unwrap_or(0.0);
    match s {
        s if s < 60.0 => format!("{s:.1}s"),
        s if s < 3600.0 => format!("{:.1}m", s / 60.0),
        s => format!("{:.1}h", s / 3600.0),
    }
}

fn step(s: &Value) -> String {
    if s.is_null() {
        return String::new();
    }
    let from = s["from"].as_str().map(|f| format!("{f} -> ")).unwrap_or_default();
    format!(
        "{from}{} on {} (seq {}, at {})",
        s["to"].as_str().unwrap_or(""),
        s["trigger"].as_str().unwrap_or(""),
        s["cause"],
        s["at"].as_str().unwrap_or("")
    )
}

fn print_instance(inst: &Value) {
    println!(
        "instance {}  version {}  state {}{}",
        inst["id"].as_str().unwrap_or(""),
        // The stored instance omits the first version.
        inst["saga_version"].as_u64().unwrap_or(1),
        inst["state"].as_str().unwrap_or(""),
        if inst["final"] == true { " (final)" } else { "" }
    );
    println!("data     {}", inst["data"]);
    if let Some(at) = inst["timer_at"].as_str() {
        println!("timer    fires at {at}");
    }
    println!("history");
    for s in inst["history"].as_array().into_iter().flatten() {
        println!("  seq {:<8} {}", s["seq"], step(s));
    }
}
