//! The value types of `[nats]`: the server list of `url` and the embedded server's `sync`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One or more NATS server URLs: a cluster is a list of servers. Written as a TOML array
/// (`url = ["nats://a:4222", "nats://b:4222"]`) or as one string with commas (`url = "nats://a:4222,nats://b:4222"`),
/// which is also what `EDDY_NATS__URL=a,b` gives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerUrls(pub Vec<String>);

impl ServerUrls {
    /// Splits a comma-separated list, dropping blanks around and between the commas.
    pub fn parse(list: &str) -> ServerUrls {
        ServerUrls(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
    }

    /// The URLs, in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for ServerUrls {
    fn from(list: &str) -> Self {
        ServerUrls::parse(list)
    }
}

impl From<String> for ServerUrls {
    fn from(list: String) -> Self {
        ServerUrls::parse(&list)
    }
}

impl Serialize for ServerUrls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ServerUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> Visitor<'de> for Urls {
            type Value = ServerUrls;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL, comma-separated URLs, or a list of URLs")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServerUrls, E> {
                Ok(ServerUrls::parse(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ServerUrls, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.extend(ServerUrls::parse(&item).0);
                }
                Ok(ServerUrls(out))
            }
        }
        deserializer.deserialize_any(Urls)
    }
}

/// When the embedded nats-server flushes JetStream writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync every write before it is acknowledged (`sync_interval: always`): an acknowledged event
    /// survives an OS crash or power loss.
    #[default]
    Always,
    /// nats-server's own default (fsync every 2 minutes): faster writes, but an OS crash can lose events
    /// that were acknowledged in the last interval. A process crash alone loses nothing.
    Default,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        url: ServerUrls,
    }

    fn urls(toml: &str) -> Vec<String> {
        toml::from_str::<T>(toml).expect("parses").url.0
    }

    #[test]
    fn one_url_a_comma_list_and_an_array_give_the_same_list() {
        assert_eq!(urls(r#"url = "nats://a:1""#), ["nats://a:1"]);
        assert_eq!(urls(r#"url = "nats://a:1, nats://b:2,,""#), ["nats://a:1", "nats://b:2"]);
        assert_eq!(urls(r#"url = ["nats://a:1", "nats://b:2"]"#), ["nats://a:1", "nats://b:2"]);
        assert!(urls(r#"url = """#).is_empty());
        assert!(toml::from_str::<T>("url = 5").is_err());
    }

    #[test]
    fn sync_is_always_unless_traded_away() {
        #[derive(Deserialize)]
        struct S {
            sync: SyncMode,
        }
        assert_eq!(SyncMode::default(), SyncMode::Always);
        assert_eq!(toml::from_str::<S>(r#"sync = "default""#).unwrap().sync, SyncMode::Default);
        assert!(toml::from_str::<S>(r#"sync = "sometimes""#).is_err());
    }
}
