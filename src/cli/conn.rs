//! How a client verb reaches a running engine: `--server` and credential flags over the config's `[nats]`
//! (which already holds the `EDDY_NATS__*` env overrides, with or without a config file).

use std::path::PathBuf;

use anyhow::Context;
use async_nats::Client;
use eddy_engine::config::{Config, ServerUrls, TlsConfig};

/// Where the engine is and what to present. Each flag overrides the config and `EDDY_NATS__*`.
#[derive(clap::Args, Clone, Default)]
pub struct Conn {
    /// NATS URL(s) of a running engine, comma-separated; default: the config's nats.url, else the embedded
    /// server's port.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// User name, with --password.
    #[arg(long, global = true, requires = "password")]
    pub user: Option<String>,
    /// Password, with --user. Other local users can read a command line: prefer EDDY_NATS__PASSWORD.
    #[arg(long, global = true, requires = "user")]
    pub password: Option<String>,
    /// Token. Other local users can read a command line: prefer EDDY_NATS__TOKEN.
    #[arg(long, global = true, conflicts_with = "user")]
    pub token: Option<String>,
    /// A .creds file (JWT and nkey seed).
    #[arg(long, global = true, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, global = true, value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// CA certificate to verify the server with (turns TLS on).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS, with --tls-key.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS, with --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl Conn {
    /// The config with these flags applied over its `[nats]`.
    fn apply(&self, config: &Config) -> Config {
        let mut config = config.clone();
        let nats = &mut config.nats;
        if let Some(server) = &self.server {
            nats.url = Some(ServerUrls::parse(server));
        }
        // A flag for one kind of secret replaces the configured one of the other kind, so that a token in
        // the environment does not ride along with a user given on the command line.
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            (nats.user, nats.password, nats.token) = (Some(user.clone()), Some(password.clone()), None);
        }
        if let Some(token) = &self.token {
            (nats.user, nats.password, nats.token) = (None, None, Some(token.clone()));
        }
        if self.creds.is_some() {
            nats.creds_file.clone_from(&self.creds);
        }
        if self.nkey.is_some() {
            nats.nkey_seed_file.clone_from(&self.nkey);
        }
        if self.tls_ca.is_some() || self.tls_cert.is_some() {
            let tls = nats.tls.get_or_insert_with(TlsConfig::default);
            if self.tls_ca.is_some() {
                tls.ca_file.clone_from(&self.tls_ca);
            }
            if self.tls_cert.is_some() {
                tls.cert_file.clone_from(&self.tls_cert);
                tls.key_file.clone_from(&self.tls_key);
            }
        }
        config
    }

    /// Connects as the flags and config say. Returns the client and the URLs as they may be shown
    /// (redacted).
    pub async fn connect(&self, config: &Config, name: &str) -> anyhow::Result<(Client, String)> {
        let config = self.apply(config);
        let urls = match &config.nats.url {
            Some(urls) => urls.0.clone(),
            None => vec![format!("nats://127.0.0.1:{}", config.nats.port)],
        };
        let client = eddy_engine::nats::connect(&urls, &config.nats, name).await.context("connecting")?;
        Ok((client, eddy_engine::nats::redact_all(&urls)))
    }
}
