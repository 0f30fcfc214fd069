//! Creating or updating the event stream, and refusing servers that lack what eddy relies on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::{Error, Result};
use crate::config::EngineConfig;

/// Refuses servers older than 2.12: atomic batch publish (ADR-50) and batch Direct Get arrived there.
pub fn check_server_version(version: &str) -> Result<()> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 12) {
        return Err(Error::ServerTooOld { found: version.to_string() });
    }
    Ok(())
}

/// The stream as eddy needs it.
pub fn desired(engine: &EngineConfig) -> stream::Config {
    stream::Config {
        name: engine.stream.clone(),
        subjects: vec!["events.>".into(), super::TIMER_SUBJECTS.into()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: engine.replicas,
        duplicate_window: Duration::from_secs(engine.dedup_window_secs),
        allow_direct: true,
        allow_atomic_publish: true,
        allow_message_schedules: true,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to the settings eddy needs, keeping its other settings.
pub async fn ensure(js: &jetstream::Context, engine: &EngineConfig) -> Result<()> {
    let want = desired(engine);
    match js.get_stream(&engine.stream).await {
        Ok(existing) => {
            let info = existing.cached_info();
            let mut config = info.config.clone();
            for subject in ["events.>", super::TIMER_SUBJECTS] {
                if !config.subjects.iter().any(|s| s == subject) {
                    config.subjects.push(subject.into());
                }
            }
            config.num_replicas = want.num_replicas;
            config.duplicate_window = want.duplicate_window;
            config.allow_direct = true;
            config.allow_atomic_publish = true;
            config.allow_message_schedules = true;
            if config != info.config {
                js.update_stream(config).await.map_err(|e| Error::JetStream(e.to_string()))?;
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js_err)
                    if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(want).await.map_err(|e| Error::JetStream(e.to_string()))?;
            Ok(())
        }
        Err(e) => Err(Error::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_servers_before_2_12() {
        assert!(check_server_version("2.11.9").is_err());
        assert!(check_server_version("2.12.0").is_ok());
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("3.0.0-beta").is_ok());
        let msg = check_server_version("2.10.4").unwrap_err().to_string();
        assert!(msg.contains("2.10.4") && msg.contains("2.12"), "{msg}");
    }
}
