//! Per reactor, in a JetStream KV bucket beside the event store: when it was deployed and up to which
//! stream sequence its actions have run. Kept outside the reactor's sled files so that losing or rebuilding
//! them never repeats an action.

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::partition::{is_layout_of, Partition};
use super::shared::{retry_forever, Host, Shared};

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

    /// Every record of `reactor` under any partition layout, by key.
    pub async fn layouts(&self, reactor: &str) -> Result<Vec<(String, Mark)>> {
        let entry = |message: String| Error::Entry { name: reactor.to_string(), message };
        let keys = self.kv.keys().await.map_err(|e| entry(e.to_string()))?;
        let keys: Vec<String> = keys.try_collect().await.map_err(|e| entry(e.to_string()))?;
        let mut out = Vec::new();
        for key in keys.into_iter().filter(|k| is_layout_of(reactor, k)) {
            if let Some(mark) = self.get(&key).await? {
                out.push((key, mark));
            }
        }
        Ok(out)
    }

    /// Forgets a reactor that was deleted from the config: deploying one by that name again starts anew.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.kv.purge(name).await.map_err(|e| Error::Entry { name: name.to_string(), message: e.to_string() })
    }
}

/// The first watermark of a partition (or whole reactor), written when it has none:
/// - After a change of `partitions`, the records of the previous layout: the earliest deployment, and the
///   lowest seq up to which every partition's actions ran. Events past it are decided again live, with the
///   same effect ids, as after a crash; nothing below it is acted on again. Once every partition of the new
///   layout has its record, the old layout's records are removed.
/// - On a first deployment of a partitioned reactor, the deployment of a sibling that came first, so all
///   partitions draw the line between history and new events at the same place.
/// - Otherwise (a first deployment): the stream's last seq now.
pub(super) async fn deploy(shared: &Shared, host: &Host, cancel: &CancellationToken) -> Option<Mark> {
    let (key, reactor) = (&shared.key, shared.name());
    let marks = retry_forever(cancel, key, "reading the watermarks", || host.watermarks.layouts(reactor)).await?;
    let siblings: Vec<String> = Partition::all(shared.partition.count).map(|p| p.key(reactor)).collect();
    let (ours, old): (Vec<_>, Vec<_>) = marks.into_iter().partition(|(k, _)| siblings.contains(k));
    let earliest = |marks: &[(String, Mark)]| marks.iter().map(|(_, m)| m.deployed_seq).min();
    let mark = if let Some(deployed_seq) = earliest(&old) {
        let handled_seq = old.iter().map(|(_, m)| m.handled_seq).min().unwrap_or(0);
        tracing::info!(reactor = %key, partitions = shared.partition.count, handled_seq, "the reactor's partitions changed; this partition rebuilds its state and acts on events past the old layout's watermark");
        Mark { deployed_seq, handled_seq }
    } else if let Some(deployed_seq) = earliest(&ours) {
        Mark { deployed_seq, handled_seq: 0 }
    } else {
        let store = host.effects.store().clone();
        let last = retry_forever(cancel, key, "reading the stream", || store.last_seq()).await?;
        tracing::info!(reactor = %key, deployed_seq = last, "reactor deployed");
        Mark { deployed_seq: last, handled_seq: 0 }
    };
    retry_forever(cancel, key, "writing the watermark", || host.watermarks.put(key, mark)).await?;
    if !old.is_empty() && ours.len() + 1 == siblings.len() {
        for (old_key, _) in &old {
            if let Err(e) = host.watermarks.remove(old_key).await {
                tracing::warn!(reactor = %key, old = %old_key, error = %e, "cannot remove the previous layout's watermark");
            }
        }
    }
    Some(mark)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_names_are_valid() {
        assert_eq!(super::bucket_name("EVENTS"), "EVENTS_reactors");
        assert_eq!(super::bucket_name("my.events"), "my_events_reactors");
    }
}
