//! eddy's configuration: the `nats` and `engine` sections, aggregates, and the loader that collects every
//! error at once. Defaults live in the `Default` impls below and nowhere else.

mod errors;
mod http;
mod nats;
mod source;
mod suggest;
mod telemetry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use errors::{ConfigError, ConfigErrors};
pub use http::{HttpConfig, HttpToken, DEFAULT_LISTEN, SCOPES};
pub use nats::{ServerUrls, SyncMode};
pub use source::{from_value, Source};
pub use suggest::did_you_mean;
pub use telemetry::{LogConfig, LogFormat, TelemetryConfig};

use crate::aggregate::Aggregate;

/// How eddy reaches NATS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs: one, or a cluster's nodes as a list or comma-separated (`nats://a:4222,nats://b:4222`).
    /// eddy connects to any node that is up. Credentials in a URL (`nats://user:pass@host`) are used when
    /// no `user`/`password`/`token` is set, and never printed. Absent: eddy starts and supervises its own
    /// nats-server (the embedded default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<ServerUrls>,
    /// Port of the embedded nats-server.
    pub port: u16,
    /// When the embedded nats-server flushes writes to disk: `always` (the default: an acknowledged event
    /// survives an OS crash) or `default` (nats-server's 2-minute interval: faster, but an OS crash can
    /// lose acknowledged events). Ignored with `url`: a server of your own follows its own config.
    pub sync: SyncMode,
    /// User name, with `password`. Without `url`, the embedded server requires them too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password, with `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Token authentication. Without `url`, the embedded server requires it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A `.creds` file (JWT and nkey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_seed_file: Option<PathBuf>,
    /// TLS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// TLS files for the NATS connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate used to verify the server.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client key, with `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            port: 4222,
            sync: SyncMode::Always,
            user: None,
            password: None,
            token: None,
            creds_file: None,
            nkey_seed_file: None,
            tls: None,
        }
    }
}

/// The engine's own settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Local state (sled) and the embedded server's store (`data_dir/nats`).
    pub data_dir: PathBuf,
    /// The JetStream stream that is the event store.
    pub stream: String,
    /// Stream replicas: 1 on a single server, 3 on a cluster.
    pub replicas: usize,
    /// Prefix of request subjects: `<api_prefix>.cmd.*`, `<api_prefix>.query.*`, `<api_prefix>.admin.*`.
    pub api_prefix: String,
    /// How long a repeated command id returns the first reply (also the stream's duplicate window).
    pub dedup_window_secs: u64,
    /// How many aggregates' states the command service keeps in memory.
    pub cache_size: usize,
    /// Start even when a live engine on the same `api_prefix` serves different aggregates or commands (a
    /// rolling upgrade between configs); otherwise such a start is refused (`engine/src/peers.rs`).
    pub allow_mixed: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".eddy"),
            stream: "EVENTS".into(),
            replicas: 1,
            api_prefix: "eddy".into(),
            dedup_window_secs: 120,
            cache_size: 100_000,
            allow_mixed: false,
        }
    }
}

/// Top-level sections that other crates read (`eddy::load` claims them); `Config::load` alone reports them
/// rather than calling them unknown.
const NOT_YET_SUPPORTED: &[&str] = &["reactors", "projections"];

impl Config {
    /// A config with no aggregates, the defaults and the `EDDY_` env overrides of `[nats]` and `[engine]`
    /// (for client verbs run without a config file, so `EDDY_NATS__PASSWORD` works there too).
    pub fn from_env(path: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let source = Source::env_only();
        let nats = source.extract::<NatsConfig>("nats", &mut errors).unwrap_or_default();
        let engine = source.extract::<EngineConfig>("engine", &mut errors).unwrap_or_default();
        let http = source.extract::<HttpConfig>("http", &mut errors).unwrap_or_default();
        let telemetry = source.extract::<TelemetryConfig>("telemetry", &mut errors).unwrap_or_default();
        let log = source.extract::<LogConfig>("log", &mut errors).unwrap_or_default();
        let config =
            Config { nats, engine, http, telemetry, log, aggregates: BTreeMap::new(), path: path.to_path_buf() };
        errors.into_result(config)
    }
}

/// A loaded, validated config with every CEL expression compiled.
#[derive(Debug, Clone)]
pub struct Config {
    /// The NATS connection.
    pub nats: NatsConfig,
    /// Engine settings.
    pub engine: EngineConfig,
    /// The HTTP listener (health, metrics, console, API).
    pub http: HttpConfig,
    /// Metrics and trace export.
    pub telemetry: TelemetryConfig,
    /// The log format.
    pub log: LogConfig,
    /// The aggregates by name.
    pub aggregates: BTreeMap<String, Arc<Aggregate>>,
    /// The path it was loaded from.
    pub path: PathBuf,
}

impl Config {
    /// Loads and validates the config at `path`, returning every error found.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with(path, &[], |_, _, _| ()).map(|(config, ())| config)
    }

    /// Only what a client needs to reach a running engine: `[nats]` and `[engine]` of the config at `path`
    /// (files and `EDDY_` env), validated; errors in other sections do not count. A client verb must work
    /// while an aggregate or reactor being edited has errors, since the running engine is fine.
    pub fn connection(path: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let source = Source::load(path, &mut errors);
        let nats = source.extract::<NatsConfig>("nats", &mut errors).unwrap_or_default();
        let engine = source.extract::<EngineConfig>("engine", &mut errors).unwrap_or_default();
        validate_nats(&nats, &source, &mut errors);
        validate_engine(&engine, &source, &mut errors);
        let config = Config {
            nats,
            engine,
            http: Default::default(),
            telemetry: Default::default(),
            log: Default::default(),
            aggregates: BTreeMap::new(),
            path: path.to_path_buf(),
        };
        errors.into_result(config)
    }

    /// Loads the engine's sections and lets `extra` read the top-level sections named in `claimed` (reactors,
    /// projections), so that every error of every section is reported together.
    pub fn load_with<T>(
        path: &Path,
        claimed: &[&str],
        extra: impl FnOnce(&Source, &Config, &mut ConfigErrors) -> T,
    ) -> Result<(Config, T), ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let source = Source::load(path, &mut errors);
        let nats = source.extract::<NatsConfig>("nats", &mut errors).unwrap_or_default();
        let engine = source.extract::<EngineConfig>("engine", &mut errors).unwrap_or_default();
        let http = source.extract::<HttpConfig>("http", &mut errors).unwrap_or_default();
        let telemetry = source.extract::<TelemetryConfig>("telemetry", &mut errors).unwrap_or_default();
        let log = source.extract::<LogConfig>("log", &mut errors).unwrap_or_default();
        telemetry::validate(&telemetry, &source, &mut errors);
        validate_nats(&nats, &source, &mut errors);
        validate_engine(&engine, &source, &mut errors);
        http::validate(&http, &source, &mut errors);
        let mut aggregates = BTreeMap::new();
        for name in source.children("aggregates", &mut errors) {
            if let Some(aggregate) = Aggregate::load(&source, &name, &mut errors) {
                aggregates.insert(name, Arc::new(aggregate));
            }
        }
        for key in source.top_level_keys() {
            match key.as_str() {
                "nats" | "engine" | "http" | "telemetry" | "log" | "aggregates" => {}
                k if claimed.contains(&k) => {}
                k if NOT_YET_SUPPORTED.contains(&k) => {
                    errors.push(source.file_of(k), k, "not supported yet by this version of eddy")
                }
                k => {
                    let known: Vec<String> =
                        ["nats", "engine", "aggregates"].iter().chain(claimed).map(|s| s.to_string()).collect();
                    let hint = did_you_mean(k, &known).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
                    errors.push(source.file_of(k), k, format!("unknown section ({}){hint}", known.join(", ")))
                }
            }
        }
        let config = Config { nats, engine, http, telemetry, log, aggregates, path: path.to_path_buf() };
        let extra = extra(&source, &config, &mut errors);
        errors.into_result((config, extra))
    }
}

impl Config {
    /// The event types this config's aggregates put in the stream, as declared in `source` (also those whose
    /// `apply` has errors); an aggregate that could not be read at all is known by name only.
    pub fn catalog(&self, source: &Source) -> crate::host::Catalog {
        let mut catalog = crate::host::Catalog::default();
        let mut ignored = ConfigErrors::default();
        for name in source.children("aggregates", &mut ignored) {
            let types = source.children(&format!("aggregates.{name}.events"), &mut ignored);
            types.iter().for_each(|t| catalog.add(&name, t));
            if !self.aggregates.contains_key(&name) {
                catalog.add_unchecked(&name);
            }
        }
        catalog
    }
}

fn validate_nats(nats: &NatsConfig, source: &Source, errors: &mut ConfigErrors) {
    let mut check = |ok: bool, key: &str, message: &str| {
        if !ok {
            errors.push(source.file_of(key), key, message);
        }
    };
    check(nats.url.as_ref().is_none_or(|u| !u.0.is_empty()), "nats.url", "must name at least one server");
    check(nats.user.is_some() == nats.password.is_some(), "nats.user", "user and password go together");
    check(!(nats.user.is_some() && nats.token.is_some()), "nats.token", "use either user/password or token");
    if nats.url.is_none() {
        // The embedded server is configured from these settings; it can require a password or a token, but
        // it has no account JWTs, nkeys or certificates to check the others against.
        let embedded = "needs nats.url: the embedded server supports user/password or token";
        check(nats.creds_file.is_none(), "nats.creds_file", embedded);
        check(nats.nkey_seed_file.is_none(), "nats.nkey_seed_file", embedded);
        check(nats.tls.is_none(), "nats.tls", embedded);
    }
}

fn validate_engine(engine: &EngineConfig, source: &Source, errors: &mut ConfigErrors) {
    let mut check = |ok: bool, key: &str, message: &str| {
        if !ok {
            errors.push(source.file_of(key), key, message);
        }
    };
    check(is_token(&engine.stream), "engine.stream", "must be a stream name (letters, digits, `_`, `-`)");
    check(
        engine.api_prefix.split('.').all(is_token),
        "engine.api_prefix",
        "must be a subject prefix without wildcards",
    );
    check((1..=5).contains(&engine.replicas), "engine.replicas", "must be between 1 and 5");
    check(engine.dedup_window_secs > 0, "engine.dedup_window_secs", "must be positive");
    check(engine.cache_size > 0, "engine.cache_size", "must be positive");
}

/// A name usable as one subject token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
