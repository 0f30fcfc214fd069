//! Offline replay of the recordings in `tests/streams/` (snapshots in `tests/snapshots/`), the virtual clock,
//! bad recordings, and `eddy replay --check/--update`. No NATS here: a replay needs none.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::root;
use eddy::replay::{self, Format, Recorded, Recording, Source, Transcript};
use eddy_engine::host::reactor::Action;
use serde_json::{json, Value};

fn settings(domain: &str) -> eddy::Settings {
    eddy::load(&root().join("config/examples").join(domain)).unwrap()
}

fn stream(domain: &str) -> PathBuf {
    root().join("tests/streams").join(format!("{domain}.jsonl"))
}

fn replayed(domain: &str) -> Transcript {
    replay::replay(&settings(domain), &Recording::read(stream(domain)).unwrap())
}

#[test]
fn bank_recording_snapshot() {
    insta::assert_yaml_snapshot!("bank", replayed("bank"));
}

#[test]
fn inventory_recording_snapshot() {
    insta::assert_yaml_snapshot!("inventory", replayed("inventory"));
}

#[test]
fn financing_recording_snapshot() {
    insta::assert_yaml_snapshot!("financing", replayed("financing"));
}

#[test]
fn a_replay_gives_the_same_bytes_every_time() {
    let settings = settings("bank");
    let recording = Recording::read(stream("bank")).unwrap();
    let first = replay::replay(&settings, &recording);
    for format in [Format::Yaml, Format::Json] {
        let text = first.render(format);
        for _ in 0..3 {
            assert_eq!(replay::replay(&settings, &recording).render(format), text);
        }
    }
}

/// `eddy replay` streams: it reads the file twice and writes each decision as it is made. The bytes are
/// the whole transcript's, for every recording and format, and for one that decides nothing.
#[test]
fn a_streamed_replay_writes_the_rendered_transcript_byte_for_byte() {
    for domain in ["bank", "inventory", "financing"] {
        let settings = settings(domain);
        let whole = replayed(domain);
        assert!(!whole.decisions.is_empty(), "{domain} decides something");
        for format in [Format::Yaml, Format::Json] {
            let mut out = Vec::new();
            let (tail, decisions) =
                replay::replay_to(&settings, Source::File(&stream(domain)), format, &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), whole.render(format), "{domain}, {format:?}");
            assert_eq!(decisions, whole.decisions.len());
            assert_eq!(tail.with(whole.decisions.clone()), whole);
        }
    }
    let quiet =
        Recording::from_lines([line(1, "orders.created", "OrderCreated", 1, "2030-01-01T00:00:00Z", json!({}))])
            .unwrap();
    let whole = replay::replay(&settings("bank"), &quiet);
    assert!(whole.decisions.is_empty() && !whole.warnings.is_empty());
    for format in [Format::Yaml, Format::Json] {
        let mut out = Vec::new();
        replay::replay_to(&settings("bank"), Source::Memory(&quiet), format, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole.render(format), "nothing decided, {format:?}");
    }
}

/// A file's replay keeps final saga instances on disk and reads them back for a late event and for the end
/// state: after events that reach a completed transfer (a correlated deposit, an operator's move), the
/// transcript is the in-memory replay's, and the instance is still completed with its whole history.
#[test]
fn late_events_on_finished_instances_replay_the_same_from_a_file() {
    let mut events = Recording::read(stream("bank")).unwrap().lines().collect::<Vec<_>>();
    let last = events.last().unwrap().clone();
    let time = eddy_engine::envelope::format_time(last.time);
    let mut late = line(last.seq + 1, "events.account.a2", "MoneyDeposited", 98, &time, json!({"amount": 1}));
    late.headers.insert("Eddy-Correlation-Id".into(), replay::HeaderValue::One("transfer:t1".into()));
    events.push(late);
    let steer = json!({"action": "move", "state": "debit", "by": "ops", "entry": 12});
    events.push(line(last.seq + 2, "events.saga-transfer.t1", "OperatorSteered", 9, &time, steer));
    let recording = Recording::from_lines(events).unwrap();
    let whole = replay::replay(&settings("bank"), &recording);
    let file = tempfile::NamedTempFile::new().unwrap();
    let text: Vec<String> = recording.lines().map(|l| serde_json::to_string(&l).unwrap()).collect();
    std::fs::write(file.path(), text.join("\n") + "\n").unwrap();
    for format in [Format::Yaml, Format::Json] {
        let mut out = Vec::new();
        replay::replay_to(&settings("bank"), Source::File(file.path()), format, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole.render(format), "{format:?}");
    }
    let t1 = &whole.end.sagas["transfer"].load().unwrap()["t1"];
    assert_eq!((t1.state.as_str(), t1.history.len(), t1.last_seq), ("completed", 3, last.seq + 2), "{t1:#?}");
    let late_transitions = whole.decisions.iter().filter(|d| d.seq > last.seq).flat_map(|d| d.reactors.iter());
    assert_eq!(late_transitions.flat_map(|(_, r)| &r.transitions).count(), 0, "a final instance is not moved");
}

/// A bad line stops a streamed replay before anything is written: the first pass checks every line.
#[test]
fn a_streamed_replay_of_a_bad_file_writes_nothing() {
    let mut lines = bank_lines();
    let last = lines.len() - 1;
    lines[last].truncate(12);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let mut out = Vec::new();
    let err = replay::replay_to(&settings("bank"), Source::File(file.path()), Format::Yaml, &mut out).unwrap_err();
    assert!(err.to_string().starts_with(&format!("line {}: the line is truncated", last + 1)), "{err}");
    assert!(out.is_empty(), "nothing replayed from a recording that does not read");
}

/// A recording's line for an account event, at `time`.
fn line(seq: u64, subject: &str, event_type: &str, version: u64, time: &str, data: Value) -> Recorded {
    let headers = json!({"Eddy-Event-Type": event_type, "Eddy-Version": version.to_string(), "Eddy-Time": time});
    serde_json::from_value(json!({"seq": seq, "subject": subject, "time": time, "headers": headers, "data": data}))
        .unwrap()
}

/// The bank recording ends with t5 waiting for approval. With one more event two minutes later, the virtual
/// clock passes the approval timer: the replay fires it and the saga refunds.
#[test]
fn a_timer_the_recording_does_not_hold_fires_when_the_clock_passes_it() {
    let mut events = Recording::read(stream("bank")).unwrap().lines().collect::<Vec<_>>();
    let last = events.last().unwrap().clone();
    let later = last.time + chrono::Duration::minutes(2);
    let time = eddy_engine::envelope::format_time(later);
    events.push(line(last.seq + 1, "events.account.a2", "MoneyDeposited", 99, &time, json!({"amount": 1})));
    let transcript = replay::replay(&settings("bank"), &Recording::from_lines(events).unwrap());

    assert_eq!(transcript.recording.timers_fired, 1);
    let fired = transcript.decisions.iter().find(|d| d.made_up).expect("a made-up timer firing");
    assert_eq!((fired.event.as_str(), fired.id.as_str()), ("saga-transfer.TimerFired", "t5"));
    assert!(fired.seq > last.seq, "made-up events get sequences after the recording's");
    let saga = &fired.reactors["transfer"];
    assert_eq!((saga.transitions[0].to.as_str(), saga.transitions[0].recorded), ("refund", false));
    let refund = saga.actions.iter().find_map(|a| match &a.action {
        Action::Command { data, .. } => Some(data),
        _ => None,
    });
    assert_eq!(refund, Some(&json!({"id": "a1", "amount": 1500})));
    let t5 = &transcript.end.sagas["transfer"].load().unwrap()["t5"];
    assert_eq!(t5.state, "refund");
    assert_eq!(t5.data["reason"], "approval timed out");
    assert!(transcript.end.timers.is_empty());
    // The firing comes before the event that moved the clock past it.
    let pos = |seq| transcript.decisions.iter().position(|d| d.seq == seq);
    assert!(pos(fired.seq) < pos(last.seq + 1).or(Some(usize::MAX)));
}

/// A saga whose decisions differ from the recorded ones (here: a lower approval threshold) replays as
/// what-if: its transitions are made up, and the recorded ones are not folded into it.
#[test]
fn a_changed_saga_decides_anew_on_recorded_events() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_example("bank", dir.path());
    let saga = dir.path().join("sagas/transfer.toml");
    let text = std::fs::read_to_string(&saga).unwrap().replace("saga.amount > 1000", "saga.amount > 50");
    std::fs::write(&saga, text).unwrap();
    let settings = eddy::load(dir.path()).unwrap();
    let transcript = replay::replay(&settings, &Recording::read(stream("bank")).unwrap());
    let t1 = &transcript.end.sagas["transfer"].load().unwrap()["t1"];
    assert_eq!(t1.state, "approval", "100 now needs approval; nothing approved t1 in the recording");
    let steps: Vec<_> = t1.history.iter().map(|s| s.to.as_str()).collect();
    assert_eq!(steps, ["debit", "approval"]);
    let mut made_up = transcript.decisions.iter().flat_map(|d| d.reactors.values()).flat_map(|r| &r.transitions);
    assert!(made_up.any(|t| t.instance == "t1" && !t.recorded));
}

fn bank_lines() -> Vec<String> {
    std::fs::read_to_string(stream("bank")).unwrap().lines().map(str::to_string).collect()
}

fn parse(lines: &[String]) -> Result<Recording, String> {
    Recording::parse(&(lines.join("\n") + "\n")).map_err(|e| e.to_string())
}

#[test]
fn a_truncated_line_is_an_error_with_its_number() {
    let mut lines = bank_lines();
    let half = lines[6].len() / 2;
    lines[6].truncate(half);
    let err = parse(&lines).unwrap_err();
    assert!(err.starts_with("line 7: the line is truncated"), "{err}");
}

#[test]
fn bytes_that_are_not_utf8_are_an_error_with_their_line_in_a_file_too() {
    let mut bytes = Vec::new();
    for (i, line) in bank_lines().iter().enumerate() {
        if i == 4 {
            bytes.extend_from_slice(b"{\"seq\": \xff\xfe}");
        } else {
            bytes.extend_from_slice(line.as_bytes());
        }
        bytes.push(b'\n');
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let err = Recording::read(file.path()).unwrap_err().to_string();
    assert_eq!(err, "line 5: not UTF-8 text (invalid byte at column 9)");
}

#[test]
fn seq_out_of_order_is_an_error_and_a_gap_a_warning() {
    let mut lines = bank_lines();
    lines.swap(3, 4);
    let err = parse(&lines).unwrap_err();
    assert!(err.starts_with("line 5: seq 4 does not come after seq 5 (line 4)"), "{err}");

    let mut lines = bank_lines();
    lines.remove(2);
    let recording = parse(&lines).unwrap();
    assert!(
        recording.warnings[0].starts_with("line 3: seq jumps from 2 to 4: 1 message(s)"),
        "{:?}",
        recording.warnings
    );
    let transcript = replay::replay(&settings("bank"), &recording);
    assert_eq!(transcript.warnings[0], recording.warnings[0], "the replay reports it");
}

#[test]
fn an_unknown_event_type_is_reported_and_skipped() {
    let recording = Recording::read(stream("bank")).unwrap();
    let mut events: Vec<_> = recording.lines().collect();
    let at = events.iter().position(|e| e.header("Eddy-Event-Type") == Some("MoneyDeposited")).unwrap();
    events[at].headers.insert("Eddy-Event-Type".into(), eddy::replay::HeaderValue::One("MoneyPrinted".into()));
    let line = events[at].line;
    let account = events[at].subject.rsplit('.').next().unwrap().to_string();
    let transcript = replay::replay(&settings("bank"), &Recording::from_lines(events.clone()).unwrap());
    let expected = format!("line {line}: unknown event type account.MoneyPrinted");
    assert!(transcript.warnings.iter().any(|w| w.starts_with(&expected)), "{:?}", transcript.warnings);
    let clean = replay::replay(&settings("bank"), &recording);
    let balance = |t: &Transcript| t.end.aggregates["account"][&account]["balance"].as_i64().unwrap();
    let amount = events[at].data["amount"].as_i64().unwrap();
    assert_eq!(balance(&transcript), balance(&clean) - amount, "the deposit is not applied");
}

#[test]
fn malformed_lines_never_panic() {
    let lines = bank_lines();
    let bad = [
        r#"{"seq": 1}"#.to_string(),
        r#"{"seq": -1, "subject": "events.account.a1", "time": "now", "data": {}}"#.to_string(),
        r#"{"seq": 1, "subject": "events.account.a1", "time": "2026-01-01T00:00:00Z", "data": {}, "extra": 1}"#
            .to_string(),
        "[1, 2, 3]".to_string(),
        "not json".to_string(),
    ];
    for b in &bad {
        let err = parse(std::slice::from_ref(b)).unwrap_err();
        assert!(err.starts_with("line 1: not a recorded event"), "{b}: {err}");
    }
    // Lines that parse but carry nonsense: no headers, a foreign subject, wrong types in the data.
    let odd = [
        line(100, "events.account.a1", "MoneyDeposited", 9, "2030-01-01T00:00:00Z", json!({"amount": "lots"})),
        line(101, "orders.created", "OrderCreated", 1, "2030-01-01T00:00:00Z", json!({})),
        line(102, "events.account.a1", "MoneyWithdrawn", 10, "2030-01-01T00:00:00Z", json!(["not", "a", "map"])),
        line(103, "events.transfer.t9", "TransferRequested", 1, "2030-01-01T00:00:00Z", json!({"from": 1})),
        Recorded {
            headers: Default::default(),
            ..line(104, "events.account.a1", "X", 1, "2030-01-01T00:00:00Z", json!({}))
        },
    ];
    let mut events = Recording::parse(&(lines.join("\n") + "\n")).unwrap().lines().collect::<Vec<_>>();
    events.extend(odd);
    let transcript = replay::replay(&settings("bank"), &Recording::from_lines(events).unwrap());
    let n = lines.len();
    let has = |line: usize, text: &str| {
        let prefix = format!("line {line}: ");
        transcript.warnings.iter().any(|w| w.starts_with(&prefix) && w.contains(text))
    };
    assert!(has(n + 1, "aggregate account: apply MoneyDeposited"), "{:#?}", transcript.warnings);
    assert!(has(n + 2, "not an eddy event"), "{:#?}", transcript.warnings);
    assert!(has(n + 3, "apply MoneyWithdrawn"), "{:#?}", transcript.warnings);
    assert!(has(n + 5, "not an eddy event"), "{:#?}", transcript.warnings);
    let t9 = transcript.decisions.iter().find(|d| d.id == "t9").expect("the saga tried t9");
    assert!(t9.reactors["transfer"].error.is_some() || !t9.reactors["transfer"].transitions.is_empty());
}

fn eddy(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eddy")).args(args).current_dir(dir).output().expect("eddy runs")
}

#[test]
fn the_cli_checks_and_updates_a_stored_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let config = root().join("config/examples/bank");
    let (config, rec) = (config.to_str().unwrap(), stream("bank"));
    let rec = rec.to_str().unwrap();
    let stored = dir.path().join("bank.yaml");
    let stored_s = stored.to_str().unwrap();

    let out = eddy(&["replay", "--config", config, rec, "--update", stored_s], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), replayed("bank").render(Format::Yaml));

    let out = eddy(&["replay", "--config", config, rec, "--check", stored_s], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let changed = std::fs::read_to_string(&stored).unwrap().replace("owner: ann", "owner: anne");
    std::fs::write(&stored, changed).unwrap();
    let out = eddy(&["replay", "--config", config, rec, "--check", stored_s], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("-    owner: anne") || diff.contains("-        owner: anne"), "{diff}");
    assert!(diff.contains("owner: ann\n"), "{diff}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the transcript differs"));

    let out = eddy(&["replay", "--config", config, rec, "--format", "json"], dir.path());
    let json: Value = serde_json::from_slice(&out.stdout).expect("--format json prints JSON");
    assert_eq!(json["recording"]["events"], replayed("bank").recording.events);
}

#[test]
fn the_cli_names_the_line_of_a_bad_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = bank_lines();
    lines[2].truncate(10);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let config = root().join("config/examples/bank");
    let out = eddy(&["replay", "--config", config.to_str().unwrap(), bad.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.jsonl") && stderr.contains("line 3: the line is truncated"), "{stderr}");
    assert!(out.stdout.is_empty());
}
