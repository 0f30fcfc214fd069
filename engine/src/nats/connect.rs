//! Connecting with the credentials of `[nats]`.

use std::time::Duration;

use async_nats::{Client, ConnectOptions};

use super::{Error, Result};
use crate::config::NatsConfig;

/// Connects to `url` with the credentials in `config`. The first connection must succeed (so a wrong URL is
/// reported at once); after that the client reconnects forever.
pub async fn connect(url: &str, config: &NatsConfig, name: &str) -> Result<Client> {
    let err = |message: String| Error::Connect { url: url.to_string(), message };
    let mut options = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
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
