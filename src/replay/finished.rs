//! Finished saga instances, kept on disk while a replay runs. A week of a busy stream holds millions of
//! transfers that finished long before the recording ends. The transcript's end state lists every one,
//! but nothing decides on a final instance again (a late event only finds it final), so each is written
//! out when it finishes, and read back only for such a late event and for the end state, in id order.
//! What stays in memory is an offset per instance.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use eddy_reactors::saga::state::Instance;
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

/// Bytes gathered before they are written: one write per many instances.
const FLUSH_AT: usize = 1 << 20;

/// Finished instances in an anonymous temporary file, which the system removes when it is closed.
#[derive(Default)]
pub struct Finished {
    /// Created with the first instance: most reactors are not sagas, and most replays are short.
    file: Option<File>,
    /// Where each instance's JSON is: offset and length.
    at: HashMap<Box<str>, (u64, u32)>,
    /// Bytes not yet written, which start at `written`.
    pending: Vec<u8>,
    written: u64,
}

impl Finished {
    /// Writes `inst` out; an instance put again replaces the earlier copy.
    pub fn put(&mut self, inst: &Instance) -> io::Result<()> {
        let start = self.pending.len();
        serde_json::to_writer(&mut self.pending, inst)?;
        let len = u32::try_from(self.pending.len() - start).map_err(io::Error::other)?;
        self.at.insert(inst.id.as_str().into(), (self.written + start as u64, len));
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(tempfile::tempfile()?),
        };
        file.write_all_at(&self.pending, self.written)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// The finished instance `id`, if there is one.
    pub fn get(&self, id: &str) -> io::Result<Option<Instance>> {
        let Some(&(offset, len)) = self.at.get(id) else { return Ok(None) };
        let bytes = match offset.checked_sub(self.written) {
            Some(in_pending) => {
                let start = in_pending as usize;
                self.pending[start..start + len as usize].to_vec()
            }
            None => {
                let mut bytes = vec![0; len as usize];
                let file = self.file.as_ref().ok_or_else(|| io::Error::other("no file for a written instance"))?;
                file.read_exact_at(&mut bytes, offset)?;
                bytes
            }
        };
        serde_json::from_slice(&bytes).map(Some).map_err(io::Error::from)
    }

    /// Takes the instance `id` back: it is no longer finished here (an operator moved it on, say).
    pub fn take(&mut self, id: &str) -> io::Result<Option<Instance>> {
        let inst = self.get(id)?;
        self.at.remove(id);
        Ok(inst)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// A saga's instances after the last event: those still running, held in memory, and the finished ones,
/// read from disk one at a time when the end state is written.
#[derive(Clone, Default)]
pub struct SagaEnd {
    running: BTreeMap<String, Instance>,
    finished: Arc<Finished>,
}

impl SagaEnd {
    pub fn new(running: BTreeMap<String, Instance>, mut finished: Finished) -> io::Result<Self> {
        finished.flush()?;
        Ok(SagaEnd { running, finished: Arc::new(finished) })
    }

    pub fn len(&self) -> usize {
        self.running.len() + self.finished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every instance id, in order, with whether it is a finished one.
    fn ids(&self) -> Vec<(&str, bool)> {
        let mut ids: Vec<(&str, bool)> = self.running.keys().map(|id| (id.as_str(), false)).collect();
        ids.extend(self.finished.at.keys().map(|id| (&**id, true)));
        ids.sort_unstable();
        ids
    }

    /// Every instance, read into memory: for a test or a small recording.
    pub fn load(&self) -> io::Result<BTreeMap<String, Instance>> {
        let mut all = self.running.clone();
        for (id, _) in self.ids().into_iter().filter(|(_, finished)| *finished) {
            let inst = self.finished.get(id)?.ok_or_else(|| io::Error::other(format!("instance {id} is gone")))?;
            all.insert(id.to_string(), inst);
        }
        Ok(all)
    }
}

impl Serialize for SagaEnd {
    /// As a map by id, the same bytes as the map [`Self::load`] gives.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (id, finished) in self.ids() {
            if finished {
                let inst = self.finished.get(id).map_err(S::Error::custom)?;
                map.serialize_entry(id, &inst.ok_or_else(|| S::Error::custom(format!("instance {id} is gone")))?)?;
            } else {
                map.serialize_entry(id, &self.running[id])?;
            }
        }
        map.end()
    }
}

impl PartialEq for SagaEnd {
    fn eq(&self, other: &Self) -> bool {
        matches!((self.load(), other.load()), (Ok(a), Ok(b)) if a == b)
    }
}

impl fmt::Debug for SagaEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaEnd").field("running", &self.running).field("finished", &self.finished.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn instance(id: &str, done: bool) -> Instance {
        let entry = serde_json::json!({
            "id": id, "state": if done { "completed" } else { "debit" }, "data": {"id": id}, "final": done,
            "entry": 3, "version": 1, "last_seq": 3, "history": [],
            "started_at": DateTime::<chrono::Utc>::UNIX_EPOCH, "entered_at": DateTime::<chrono::Utc>::UNIX_EPOCH,
        });
        serde_json::from_value(entry).unwrap()
    }

    #[test]
    fn finished_instances_read_back_in_id_order_with_the_running_ones() {
        let mut finished = Finished::default();
        // Past the write buffer, so some are read from the file and some from memory.
        let ids: Vec<String> = (0..30_000).map(|n| format!("t{n}")).collect();
        for id in &ids {
            finished.put(&instance(id, true)).unwrap();
        }
        assert!(finished.file.is_some() && !finished.pending.is_empty());
        assert_eq!(finished.get("t7").unwrap(), Some(instance("t7", true)));
        assert_eq!(finished.get("t29999").unwrap(), Some(instance("t29999", true)));
        assert_eq!(finished.take("t5").unwrap(), Some(instance("t5", true)));
        assert_eq!(finished.get("t5").unwrap(), None);
        let running = BTreeMap::from([("t5".to_string(), instance("t5", false))]);
        let end = SagaEnd::new(running, finished).unwrap();
        assert_eq!(end.len(), 30_000);
        let mut expected: BTreeMap<String, Instance> = ids.iter().map(|id| (id.clone(), instance(id, true))).collect();
        expected.insert("t5".into(), instance("t5", false));
        assert_eq!(end.load().unwrap(), expected);
        assert_eq!(serde_json::to_string(&end).unwrap(), serde_json::to_string(&expected).unwrap());
    }
}
