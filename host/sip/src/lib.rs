//! SIP messages for Viaduct, with no I/O.
//!
//! * [`Message::parse`] makes a zero-copy view over received bytes in one pass:
//!   the start line, every header line's span (long and compact names, folded
//!   lines), the body framed by Content-Length (RFC 3261 §18.3). Typed values
//!   ([`Via`], [`NameAddr`], [`CSeq`], [`Uri`] with RFC 5118 IPv6 references)
//!   are parsed on demand from those spans; [`Message::validate`] checks the
//!   ones a proxy relies on and maps failures to a SIP answer ([`ParseError`]).
//! * [`Editor`] forwards a message by editing its bytes, so what the proxy
//!   does not touch passes byte-exact.
//! * [`build`] writes the few messages a proxy originates (responses, ACK for
//!   non-2xx, CANCEL).
//!
//! # Sanity checks
//! What Kamailio's stock config checks with `sanity_check("17895")`, and
//! where Viaduct does it (`tests/sanity.rs` has one case per check):
//!
//! | Kamailio check (mask bit) | Here | Answer |
//! |---|---|---|
//! | R-URI SIP version (1) | [`Message::parse`] | 505 Version Not Supported |
//! | R-URI scheme (2) | proxy core, RFC 3261 §16.3 step 2 (sip/sips only) | 416 Unsupported URI Scheme |
//! | required headers (4): Via, From, To, Call-ID, CSeq | [`Message::validate`] | 400 Missing Via / From / ... |
//! | CSeq method matches the request (32) | [`Message::validate`] | 400 Bad Request - CSeq Method Does Not Match |
//! | CSeq value, < 2^31 (64) | [`Message::validate`] | 400 Bad CSeq |
//! | Content-Length a number, no larger than the body (128) | [`Message::parse`] | 400 Bad Content-Length, 400 Bad Request - Content-Length Larger Than Body |
//! | Expires a number (256) | [`Message::validate`] | 400 Bad Expires |
//! | URIs parse: R-URI, From, To, Contact (1024) | [`Message::parse`], [`Message::validate`] | 400 Bad Request-URI / Bad From / ... |
//! | first Via parses (16384); here every Via | [`Message::validate`] | 400 Bad Via |
//!
//! Beyond the mask: Proxy-Require (420, proxy core), Max-Forwards (400, and
//! 483 at 0), single Call-ID/CSeq/Max-Forwards/From/To, Call-ID syntax,
//! Route/Record-Route, Date in GMT, Content-Type syntax, header count
//! ([`MAX_HEADERS`]). Responses that fail are dropped, never answered.
//!
//! Not here: transactions, dialogs, routing, sockets. rsip is not used at all:
//! measured on this kind of machine rsip 0.4 parsed a 693-byte INVITE in about
//! 4.6 µs with 35 allocations and rejected valid RFC 4475 messages, while this
//! view parses without allocating (see `benches/parse.rs` for our figures).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod build;
mod edit;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod header;
mod message;
mod method;
mod scan;
pub mod text;
pub mod uri;

pub use edit::Editor;
pub use error::ParseError;
pub use header::{CSeq, HeaderName, NameAddr, Via};
pub use message::{frame_stream, Framing, HeaderField, Message, StartLine, MAX_HEADERS};
pub use method::Method;
pub use scan::Params;
pub use uri::{Scheme, Uri};
