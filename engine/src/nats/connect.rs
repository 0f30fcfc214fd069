//! Connecting with the credentials of `[nats]`.

use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use super::{Error, Result};
use crate::config::NatsConfig;

/// The longest wait between two attempts to reconnect.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);

/// Connects to `url` with the credentials in `config`. The first connection must succeed (so a wrong URL is
/// reported at once); after that the client reconnects forever.
pub async fn connect(url: &str, config: &NatsConfig, name: &str) -> Result<Client> {
    let err = |message: String| Error::Connect { url: url.to_string(), message };
    let mut options = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        // The default grows to 4 s between attempts: after a server restart of a few seconds, eddy would sit
        // idle for up to that long after the server is back. A connection attempt is cheap.
        .reconnect_delay_callback(|attempts| {
            let exp = attempts.saturating_sub(1).min(20) as u32;
            Duration::from_millis(2u64.pow(exp).saturating_sub(1)).min(RECONNECT_DELAY_MAX)
        })
        .request_timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(creds) = &config.creds_file {
        options = options.credentials_file(creds).await.map_err(|e| err(format!("creds_file: {e}")))?;
    }
    if let Some(seed_file) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(seed_file).map_err(|e| err(format!("nkey_seed_file: {e}")))?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    options.connect(url).await.map_err(|e| err(e.to_string()))
}
