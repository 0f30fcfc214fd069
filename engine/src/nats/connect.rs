//! Connecting with the credentials of `[nats]` (or those written into the URLs) to any of the servers.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};

use super::url::{redact_all, strip_userinfo, url_auth, UrlAuth};
use super::{Error, Result};
use crate::config::NatsConfig;

/// The longest wait between two attempts to reconnect.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);

/// Connects to one of `urls` (the nodes of one cluster) with the credentials in `config`, else those in the
/// URLs. The first connection tries every URL once, in a random order, and fails with the last error when
/// none answers, so a wrong URL or a cluster that is entirely down is reported at once; one live node is
/// enough. After that the client reconnects forever, to any node.
pub async fn connect(urls: &[String], config: &NatsConfig, name: &str) -> Result<Client> {
    let shown = redact_all(urls);
    let err = |message: String| Error::Connect { url: shown.clone(), message };
    if urls.is_empty() {
        return Err(err("no server URL".into()));
    }
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
    let configured = config.user.is_some() || config.token.is_some();
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if !configured {
        // async-nats ignores the user-info of a URL, so eddy passes it on itself. One client has one set of
        // credentials: URLs that disagree are a mistake worth stopping for.
        let mut found: Vec<UrlAuth> = urls.iter().filter_map(|u| url_auth(u)).collect();
        found.dedup();
        match found.as_slice() {
            [] => {}
            [UrlAuth::UserPassword(user, password)] => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            [UrlAuth::Token(token)] => options = options.token(token.clone()),
            _ => return Err(err("the URLs carry different credentials".into())),
        }
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
    let mut addrs = Vec::with_capacity(urls.len());
    for url in urls {
        let addr: ServerAddr = strip_userinfo(url)
            .parse()
            .map_err(|e| err(format!("`{}` is not a server URL: {e}", super::redact(url))))?;
        addrs.push(addr);
    }
    options.connect(addrs).await.map_err(|e| err(e.to_string()))
}
