//! Per reactor, in a JetStream KV bucket beside the event store: when it was deployed and up to which
//! stream sequence its actions have run. Kept outside the reactor's sled files so that losing or rebuilding
//! them never repeats an action.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

/// Errors of the watermark bucket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reactor watermark bucket `{bucket}`: {message}")]
    Bucket { bucket: String, message: String },
    #[error("reactor watermark of `{name}`: {message}")]
    Entry { name: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One reactor's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The stream's last sequence when the reactor was first deployed: history ends here.
    pub deployed_seq: u64,
    /// Every action caused by events up to here has run.
    pub handled_seq: u64,
}

/// The bucket.
#[derive(Clone)]
pub struct Watermarks {
    kv: kv::Store,
}

/// `<stream>_reactors`, with characters a bucket name cannot hold replaced.
pub fn bucket_name(stream: &str) -> String {
    crate::store::kv_bucket(stream, "reactors")
}

impl Watermarks {
    /// Creates the bucket if needed.
    pub async fn open(js: &jetstream::Context, stream: &str, replicas: usize) -> Result<Self> {
        let bucket = bucket_name(stream);
        let config = kv::Config { bucket: bucket.clone(), history: 1, num_replicas: replicas, ..Default::default() };
        let kv = js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| Error::Bucket { bucket, message: e.to_string() })?;
        Ok(Self { kv })
    }

    pub async fn get(&self, name: &str) -> Result<Option<Mark>> {
        let entry = |message: String| Error::Entry { name: name.to_string(), message };
        match self.kv.get(name).await.map_err(|e| entry(e.to_string()))? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| entry(e.to_string())),
            None => Ok(None),
        }
    }

    pub async fn put(&self, name: &str, mark: Mark) -> Result<()> {
        let bytes = serde_json::to_vec(&mark).expect("serializes");
        self.kv
            .put(name, bytes.into())
            .await
            .map_err(|e| Error::Entry { name: name.to_string(), message: e.to_string() })?;
        Ok(())
    }

    /// Forgets a reactor that was deleted from the config: deploying one by that name again starts anew.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.kv.purge(name).await.map_err(|e| Error::Entry { name: name.to_string(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_names_are_valid() {
        assert_eq!(super::bucket_name("EVENTS"), "EVENTS_reactors");
        assert_eq!(super::bucket_name("my.events"), "my_events_reactors");
    }
}
