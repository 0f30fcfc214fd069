//! Where config comes from: one TOML file or a directory of them, merged, then `EDDY_` env overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::Figment;
use serde::de::DeserializeOwned;

use super::{ConfigErrors, EngineConfig, HttpConfig, LogConfig, NatsConfig, TelemetryConfig};

/// Env vars with the `EDDY_` prefix that are not config keys.
const NON_CONFIG_ENV: &[&str] = &["nats_server", "config", "log"];

/// The merged config of one load, with enough provenance to name the file behind every key.
pub struct Source {
    figment: Figment,
    /// The figment merged once: figment merges (and clones) every provider's values on each lookup, which
    /// made loading quadratic in the number of aggregates.
    merged: Value,
    root: PathBuf,
}

impl Source {
    /// Reads `path` (a file, or a directory whose `*.toml` files are read recursively in path order).
    /// Syntax errors and keys defined in two files are collected into `errors`.
    pub fn load(path: &Path, errors: &mut ConfigErrors) -> Source {
        let root =
            if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new("")).to_path_buf() };
        let files = match toml_files(path) {
            Ok(files) => files,
            Err(e) => {
                errors.push(Some(path.display().to_string()), "", e);
                Vec::new()
            }
        };
        let mut figment = Figment::new()
            .merge(Serialized::default("nats", NatsConfig::default()))
            .merge(Serialized::default("engine", EngineConfig::default()))
            .merge(Serialized::default("http", HttpConfig::default()))
            .merge(Serialized::default("telemetry", TelemetryConfig::default()))
            .merge(Serialized::default("log", LogConfig::default()));
        let mut owners: BTreeMap<String, (String, bool)> = BTreeMap::new();
        for file in &files {
            let shown = display_path(&root, file);
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) => {
                    errors.push(Some(shown), "", format!("cannot read: {e}"));
                    continue;
                }
            };
            match text.parse::<toml::Table>() {
                Ok(table) => {
                    let mut leaves = Vec::new();
                    collect_keys("", &table, &mut leaves);
                    for (key, is_table) in leaves {
                        match owners.get(&key) {
                            Some((first, first_is_table)) if !(is_table && *first_is_table) => errors.push(
                                Some(shown.clone()),
                                key.clone(),
                                format!("defined in both {first} and {shown}"),
                            ),
                            Some(_) => {}
                            None => {
                                owners.insert(key, (shown.clone(), is_table));
                            }
                        }
                    }
                    figment = figment.merge(Toml::file_exact(file));
                }
                Err(e) => errors.push(Some(shown), "", format!("TOML syntax error: {}", one_line(&e.to_string()))),
            }
        }
        let figment = figment.merge(env());
        Source::merged(figment, root, errors)
    }

    /// The defaults of `[nats]` and `[engine]` with the `EDDY_` env overrides, and no file.
    pub fn env_only() -> Source {
        let figment = Figment::new()
            .merge(Serialized::default("nats", NatsConfig::default()))
            .merge(Serialized::default("engine", EngineConfig::default()))
            .merge(Serialized::default("http", HttpConfig::default()))
            .merge(Serialized::default("telemetry", TelemetryConfig::default()))
            .merge(Serialized::default("log", LogConfig::default()))
            .merge(env());
        Source::merged(figment, PathBuf::new(), &mut ConfigErrors::default())
    }

    fn merged(figment: Figment, root: PathBuf, errors: &mut ConfigErrors) -> Source {
        let merged = match figment.find_value("") {
            Ok(merged) => merged,
            Err(e) => {
                errors.push(None, "", one_line(&e.to_string()));
                Value::from(figment::value::Dict::new())
            }
        };
        Source { figment, merged, root }
    }

    /// The top-level keys present.
    pub fn top_level_keys(&self) -> Vec<String> {
        match &self.merged {
            Value::Dict(_, dict) => dict.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The names below a table key (`aggregates` -> `account`, `transfer`), or none.
    pub fn children(&self, key: &str, errors: &mut ConfigErrors) -> Vec<String> {
        match self.merged.find_ref(key) {
            Some(Value::Dict(_, dict)) => dict.keys().cloned().collect(),
            Some(_) => {
                errors.push(self.file_of(key), key, "expected a table");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Deserializes the value at `key`, recording an error (and returning `None`) on failure.
    pub fn extract<T: DeserializeOwned>(&self, key: &str, errors: &mut ConfigErrors) -> Option<T> {
        if let Some(Ok(v)) = self.merged.find_ref(key).map(Value::deserialize::<T>) {
            return Some(v);
        }
        // On failure, extract again through the figment: slower, but its errors name the file of the very
        // value that failed.
        match self.figment.extract_inner::<T>(key) {
            Ok(v) => Some(v),
            Err(err) => {
                for e in err {
                    // figment appends the extracted key after the inner path; keep only the inner part.
                    let parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
                    let mut inner: &[String] = &e.path;
                    if inner.len() >= parts.len()
                        && inner[inner.len() - parts.len()..].iter().zip(&parts).all(|(a, b)| a == b)
                    {
                        inner = &inner[..inner.len() - parts.len()];
                    }
                    let full = join_key(key, inner);
                    let file = e
                        .metadata
                        .as_ref()
                        .and_then(|m| m.source.as_ref())
                        .and_then(|s| s.file_path())
                        .map(|p| display_path(&self.root, p))
                        .or_else(|| self.file_of(key));
                    errors.push(file, full, describe(&e.kind));
                }
                None
            }
        }
    }

    /// The file that defines `key` (or its nearest parent figment can name), relative to the config root;
    /// `None` for env vars and defaults.
    pub fn file_of(&self, key: &str) -> Option<String> {
        let mut key = key.split('[').next().unwrap_or(key);
        loop {
            let metadata = self.merged.find_ref(key).and_then(|v| self.figment.get_metadata(v.tag()));
            if let Some(path) = metadata.and_then(|m| m.source.as_ref()?.file_path()) {
                return Some(display_path(&self.root, path));
            }
            key = key.rsplit_once('.')?.0;
        }
    }
}

/// `EDDY_NATS__URL` is `nats.url`; the variables that are not config keys are left out.
fn env() -> Env {
    Env::prefixed("EDDY_")
        .split("__")
        .filter(|key| !NON_CONFIG_ENV.iter().any(|n| key.as_str().eq_ignore_ascii_case(n)))
}

/// Lists the TOML files of a config path, in path order. Follows symlinks (config maps mount files that
/// way) but visits each directory and file once, so a link back up the tree cannot loop; skips hidden
/// entries (`.git`, a config map's `..data`); and takes only regular files, so a FIFO named `x.toml`
/// is an error instead of a read that never returns.
fn toml_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|_| "no such file or directory".to_string())?;
    if !meta.is_dir() {
        return match meta.is_file() {
            true => Ok(vec![path.to_path_buf()]),
            false => Err("not a regular file or a directory".into()),
        };
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        if !seen.insert(std::fs::canonicalize(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let p = entry.map_err(|e| e.to_string())?.path();
            if p.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.')) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&p) else { continue }; // a dangling link
            if meta.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                if !meta.is_file() {
                    return Err(format!("{} is not a regular file", p.display()));
                }
                if seen.insert(std::fs::canonicalize(&p).map_err(|e| e.to_string())?) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err("no *.toml files found".into());
    }
    Ok(out)
}

/// Every key path of a table with whether it is a table itself, for the duplicate check.
fn collect_keys(prefix: &str, table: &toml::Table, out: &mut Vec<(String, bool)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => {
                out.push((key.clone(), true));
                collect_keys(&key, t, out);
            }
            _ => out.push((key, false)),
        }
    }
}

fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// A deserialization error in plain words: an unknown key or value lists the known ones and suggests the
/// closest, the rest is the deserializer's own message on one line.
fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    let (what, found, expected) = match kind {
        Kind::UnknownField(found, expected) => ("key", found, expected),
        Kind::UnknownVariant(found, expected) => ("value", found, expected),
        other => return one_line(&other.to_string()),
    };
    let known: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let hint = super::did_you_mean(found, &known).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default();
    if known.is_empty() {
        format!("unknown {what} `{found}`: none is allowed here")
    } else {
        format!("unknown {what} `{found}` (expected one of: {}){hint}", known.join(", "))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Joins a key and a path below it, writing list indices as `[n]`.
fn join_key(key: &str, inner: &[String]) -> String {
    let mut out = key.to_string();
    for part in inner {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Deserializes a sub-value found below `key` (e.g. one command of an aggregate). On failure, the error's
/// full key path and message.
pub fn from_value<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, (String, String)> {
    value.deserialize::<T>().map_err(|e| (join_key(key, &e.path), describe(&e.kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_back_up_the_tree_are_visited_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.toml"), "").unwrap();
        for link in ["l1", "l2", "sub/up"] {
            std::os::unix::fs::symlink(dir.path(), dir.path().join(link)).unwrap();
        }
        std::os::unix::fs::symlink(dir.path().join("a.toml"), dir.path().join("sub/again.toml")).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/c.toml"), "").unwrap();
        let files = toml_files(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
    }

    #[test]
    fn a_fifo_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("x.toml").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path in a directory this test owns.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = toml_files(dir.path()).unwrap_err();
        assert!(err.ends_with("x.toml is not a regular file"), "{err}");
        assert_eq!(toml_files(&dir.path().join("x.toml")).unwrap_err(), "not a regular file or a directory");
    }
}
