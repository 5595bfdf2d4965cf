//! Number patterns: exact (`+15551234`) or with `*` for any run of
//! characters (`+1*`, `*0000`, `+44*9`).

/// One pattern of a `callers` or `numbers` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// A pattern from its text.
    pub fn new(text: &str) -> Self {
        Pattern(text.to_string())
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = s.strip_prefix(first) else {
            return false;
        };
        let mut parts: Vec<&str> = parts.collect();
        // No `*`: the prefix had to be the whole string.
        let Some(last) = parts.pop() else {
            return rest.is_empty();
        };
        for part in parts {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// The user part of a SIP or tel URI: `+1555` in `sip:+1555@host;x` or in
/// `tel:+1555;phone-context=x`.
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        return rest.split(';').next().filter(|u| !u.is_empty());
    }
    let (user, _host) = rest.split_once('@')?;
    let user = user.split(':').next().unwrap_or(user); // drop a password
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).matches(s)
    }

    #[test]
    fn exact_and_prefix() {
        assert!(m("+15551234", "+15551234"));
        assert!(!m("+15551234", "+155512345"));
        assert!(m("+1*", "+15551234"));
        assert!(m("+1*", "+1"));
        assert!(!m("+1*", "+44123"));
    }

    #[test]
    fn stars_anywhere() {
        assert!(m("*", ""));
        assert!(m("*0000", "+15550000"));
        assert!(!m("*0000", "+15550001"));
        assert!(m("+44*9", "+44123459"));
        assert!(!m("+44*9", "+4412345"));
        assert!(m("1*2*3", "1x2y3"));
        assert!(!m("1*23*3", "123"));
    }

    #[test]
    fn uri_users() {
        assert_eq!(
            uri_user("sip:+15551234@example.com;transport=tcp"),
            Some("+15551234")
        );
        assert_eq!(uri_user("<sips:alice:secret@example.com>"), Some("alice"));
        assert_eq!(uri_user("tel:+15551234;phone-context=x"), Some("+15551234"));
        assert_eq!(uri_user("sip:example.com"), None);
        assert_eq!(uri_user("garbage"), None);
    }
}
