//! Server URLs: credentials taken out of them for the connection, and hidden wherever a URL is shown.

/// The URL with its password or token replaced by `***`, for logs and errors: `nats://ann:***@host:4222`,
/// `nats://***@host:4222` (a lone user-info part is a token by NATS convention). Anything without
/// user-info is returned as it is.
pub fn redact(url: &str) -> String {
    // Up to the last `@` of the whole URL, not only of the authority: a password with an unescaped `/`,
    // `?` or `#` must not leak because the URL does not parse the way it should.
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else { return url.to_string() };
    let userinfo = &url[start..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***"),
        _ => "***".to_string(),
    };
    format!("{}{shown}{}", &url[..start], &url[at..])
}

/// Every URL redacted, joined with commas as they are configured.
pub fn redact_all(urls: &[String]) -> String {
    urls.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",")
}

/// The URL without its user-info, for the client library, which would otherwise log it at debug level.
pub fn strip_userinfo(url: &str) -> String {
    match split_userinfo(url) {
        Some((before, _, after)) => format!("{before}{after}"),
        None => url.to_string(),
    }
}

/// Credentials written into a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlAuth {
    /// `nats://user:password@host`.
    UserPassword(String, String),
    /// `nats://token@host`.
    Token(String),
}

/// The credentials in a URL (percent-decoded), if any.
pub fn url_auth(url: &str) -> Option<UrlAuth> {
    let (_, userinfo, _) = split_userinfo(url)?;
    Some(match userinfo.split_once(':') {
        Some((user, password)) => UrlAuth::UserPassword(decode(user), decode(password)),
        None => UrlAuth::Token(decode(userinfo)),
    })
}

/// `scheme://` + user-info + `@host...`, split around the user-info; `None` when there is none.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    // The last `@` of the authority: a password may itself contain an unescaped `@`.
    let at = start + url[start..authority_end].rfind('@')?;
    Some((&url[..start], &url[start..at], &url[at + 1..]))
}

/// Percent-decoding, so `p%40ss` is the password `p@ss`.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_and_tokens_and_keeps_the_rest() {
        assert_eq!(redact("nats://ann:s3cret@10.0.0.5:4222"), "nats://ann:***@10.0.0.5:4222");
        assert_eq!(redact("nats://t0ken@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("tls://ann:p@ss@host:4222/x"), "tls://ann:***@host:4222/x");
        assert_eq!(redact("ann:pw@host:4222"), "ann:***@host:4222");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact("nats://ann:p/w?x#y@host:4222"), "nats://ann:***@host:4222");
        assert_eq!(redact("nats://host:4222/a@b"), "nats://host:***@b", "when in doubt, hidden");
        let all = redact_all(&["nats://a:x@h1:1".into(), "nats://h2:2".into()]);
        assert_eq!(all, "nats://a:***@h1:1,nats://h2:2");
        assert!(!all.contains('x'));
    }

    #[test]
    fn credentials_in_a_url_are_found_and_decoded() {
        assert_eq!(url_auth("nats://ann:p%40ss@h:1"), Some(UrlAuth::UserPassword("ann".into(), "p@ss".into())));
        assert_eq!(url_auth("nats://tok@h:1"), Some(UrlAuth::Token("tok".into())));
        assert_eq!(url_auth("nats://h:1"), None);
        assert_eq!(decode("100%"), "100%");
        assert_eq!(strip_userinfo("nats://ann:pw@h:1"), "nats://h:1");
    }
}
