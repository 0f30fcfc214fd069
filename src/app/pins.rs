//! A live reload must not move running saga instances onto other states, nor keys onto other partitions: a version's definition that a new
//! config changes while this engine has instances on it is refused, and the running config stays.

use eddy_engine::host::reactor::Reactors;
use eddy_reactors::saga::state::Instance;
use eddy_reactors::saga::Saga;
use eddy_reactors::Reactor;

fn sagas(reactors: &[Reactor]) -> impl Iterator<Item = &Saga> {
    reactors.iter().filter_map(|r| match r {
        Reactor::Saga(s) => Some(s.as_ref()),
        Reactor::Rule(_) => None,
    })
}

/// A change of `partitions` moves keys between partitions, whose state, lease and watermark are their
/// own: every engine must switch at once, which a live reload of one engine cannot do (see the README).
fn repartitioned(old: &[Reactor], new: &[Reactor]) -> Vec<String> {
    let count = |r: &Reactor| r.logic().policy().partitions;
    new.iter()
        .filter_map(|r| old.iter().find(|o| o.name() == r.name()).map(|o| (r, count(o), count(r))))
        .filter(|(_, before, after)| before != after)
        .map(|(r, before, after)| {
            format!("reactors.{}: `partitions` changed from {before} to {after}; stop every engine and start them on the new config", r.name())
        })
        .collect()
}

/// Why `new` cannot replace `old` while `running` holds the instances: one line per saga version changed
/// under its running instances.
pub fn changed_under_instances(running: &Reactors, old: &[Reactor], new: &[Reactor]) -> Vec<String> {
    let mut problems = repartitioned(old, new);
    for saga in sagas(new) {
        let Some(before) = sagas(old).find(|s| s.name == saga.name) else { continue };
        let changed: Vec<u32> = saga
            .definitions
            .iter()
            .filter(|(v, def)| before.definitions.get(v).is_some_and(|b| b.fingerprint != def.fingerprint))
            .map(|(v, _)| *v)
            .collect();
        if changed.is_empty() {
            continue;
        }
        let entries = match running.inspect(&saga.name).map(|(_, state)| state.entries()) {
            Ok(Ok(entries)) => entries,
            // Not running here, or unreadable: nothing known to move.
            _ => continue,
        };
        let instances: Vec<Instance> = entries.into_iter().filter_map(|(_, e)| Instance::from_entry(e).ok()).collect();
        for v in changed {
            let on: Vec<&str> =
                instances.iter().filter(|i| !i.done && i.saga_version == v).map(|i| i.id.as_str()).collect();
            if !on.is_empty() {
                let shown = on.iter().take(3).copied().collect::<Vec<_>>().join(", ");
                problems.push(format!(
                    "reactors.{}: the states of version {v} changed while {} instance(s) run on it ({shown}); raise `version` and keep the running definition under `versions.{v}`",
                    saga.name,
                    on.len()
                ));
            }
        }
    }
    problems
}
