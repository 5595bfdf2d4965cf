//! The policy's configuration, from the `[policy.config]` table.

use std::fmt::Display;
use std::str::FromStr;

/// The `[policy.config]` table of the proxy config, as strings (arrays are
/// joined with commas by the host).
///
/// ```
/// use viaduct_guest_sdk::Config;
///
/// let config = Config::from_iter([("backends", "sip:10.0.0.1, sip:10.0.0.2"), ("retry_after", "30")]);
/// assert_eq!(config.list("backends"), ["sip:10.0.0.1", "sip:10.0.0.2"]);
/// assert_eq!(config.parse::<u32>("retry_after"), Ok(Some(30)));
/// assert_eq!(config.get_or("mode", "strict"), "strict");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// The value of `key`, if set (the last one wins when set twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The comma-separated items of `key`, trimmed, empty items skipped;
    /// empty when it is not set.
    pub fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of `key` parsed as a `T`: `Ok(None)` when it is not set, an
    /// `Err` naming the key when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| format!("config `{key}` = {v:?}: {e}")),
        }
    }

    /// Like [`Config::parse`], with `default` when it is not set.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Every (key, value) pair, in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Config {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_trims_and_skips_empty_items() {
        let c = Config::from_iter([("a", " x ,, y,")]);
        assert_eq!(c.list("a"), ["x", "y"]);
        assert!(c.list("missing").is_empty());
    }

    #[test]
    fn parse_names_the_key_on_error() {
        let c = Config::from_iter([("n", "ten")]);
        let err = c.parse::<u32>("n").unwrap_err();
        assert!(err.contains("`n`"), "{err}");
        assert_eq!(c.parse_or("missing", 7u32), Ok(7));
    }

    #[test]
    fn last_value_wins() {
        let c = Config::from_iter([("k", "1"), ("k", "2")]);
        assert_eq!(c.get("k"), Some("2"));
    }
}
