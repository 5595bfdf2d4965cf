//! Request methods.

use std::fmt;

/// A request method: the RFC 3261 ones and common extensions by name, any other token kept as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// RFC 3261
    Invite,
    /// RFC 3261
    Ack,
    /// RFC 3261
    Bye,
    /// RFC 3261
    Cancel,
    /// RFC 3261
    Options,
    /// RFC 3261
    Register,
    /// RFC 3265 / 6665
    Subscribe,
    /// RFC 3265 / 6665
    Notify,
    /// RFC 3903
    Publish,
    /// RFC 3515
    Refer,
    /// RFC 3428
    Message,
    /// RFC 2976
    Info,
    /// RFC 3311
    Update,
    /// RFC 3262
    Prack,
    /// Any other token (method names are case-sensitive, RFC 3261 §7.1).
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// Maps a method token; `None` when it is not a token.
    pub fn parse(s: &'a [u8]) -> Option<Self> {
        Some(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            _ if crate::scan::is_token_str(s) => {
                // Token characters are ASCII, so this cannot fail.
                Method::Other(std::str::from_utf8(s).ok()?)
            }
            _ => return None,
        })
    }

    /// The method name as it appears on the wire.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
