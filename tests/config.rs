//! Config loading: the examples load, and a broken config reports every error at once, pinned by a
//! snapshot of the text `eddy validate` prints.

mod common;

use eddy_engine::config::Config;

#[test]
fn every_example_loads() {
    for name in ["bank", "inventory", "financing"] {
        let path = common::root().join("config/examples").join(name);
        let settings = eddy::load(&path).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(!settings.engine.aggregates.is_empty(), "{name} has aggregates");
    }
    let bank = eddy::load(&common::root().join("config/examples/bank")).unwrap();
    assert_eq!(bank.engine.engine.data_dir, std::path::Path::new(".eddy/bank"));
    assert_eq!(bank.engine.aggregates["account"].commands.len(), 4);
    assert_eq!(bank.views.keys().collect::<Vec<_>>(), ["balances", "daily-totals"]);
}

#[test]
fn all_errors_are_reported_with_file_and_key() {
    let errors = eddy::load(&common::root().join("tests/fixtures/bad-config")).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn validate_prints_the_errors_and_fails() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["validate", "--config"])
        .arg(common::root().join("tests/fixtures/bad-config"))
        .output()
        .expect("eddy runs");
    assert!(!out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let expected = eddy::load(&common::root().join("tests/fixtures/bad-config")).unwrap_err().to_string();
    assert_eq!(printed.trim_end(), expected);
}

#[test]
fn env_vars_override_keys_and_unknown_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eddy.toml"), "[engine]\nstream = \"A\"\n").unwrap();
    // Run in a child process: env vars are process-wide.
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"));
        cmd.args(["validate", "--config"]).arg(dir.path());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("eddy runs")
    };
    assert!(run(&[("EDDY_ENGINE__STREAM", "B"), ("EDDY_NATS__URL", "nats://10.0.0.5:4222")]).status.success());
    let bad = run(&[("EDDY_ENGINE__STRAEM", "B")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("straem"), "{}", String::from_utf8_lossy(&bad.stdout));
}

#[test]
fn a_missing_path_is_a_clear_error() {
    let errors = Config::load(std::path::Path::new("/nonexistent/eddy")).unwrap_err();
    assert_eq!(errors.to_string(), "/nonexistent/eddy: no such file or directory");
}

#[test]
fn misspelt_inputs_and_state_keys_are_config_errors_with_suggestions() {
    let errors = eddy::load(&common::root().join("tests/fixtures/typos")).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn http_telemetry_and_log_errors_are_reported_with_file_and_key() {
    let errors = eddy::load(&common::root().join("tests/fixtures/bad-observability")).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn saga_version_errors_are_reported_with_file_and_key() {
    let errors = eddy::load(&common::root().join("tests/fixtures/bad-saga-versions")).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn partition_counts_out_of_range_are_reported_with_file_and_key() {
    let errors = eddy::load(&common::root().join("tests/fixtures/bad-partitions")).unwrap_err();
    insta::assert_snapshot!(errors.to_string());
}
