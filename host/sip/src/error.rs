//! The parse error type and its mapping to a SIP answer.

use thiserror::Error;

/// Why a message could not be parsed or is not acceptable as SIP.
///
/// Every variant names the problem so the 400 reason phrase tells the sender
/// what to fix (RFC 3261 §21.4.1 leaves the phrase to us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The buffer ends before the blank line that closes the header section.
    #[error("incomplete message")]
    Incomplete,
    /// The start line is not a Request-Line or Status-Line (RFC 3261 §7.1, §7.2).
    #[error("malformed start line")]
    BadStartLine,
    /// A well-formed SIP-Version other than 2.0: answered with 505.
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    /// The status code is not three digits in 100..=699.
    #[error("bad status code")]
    BadStatusCode,
    /// The Request-URI does not parse (RFC 3261 §19.1, §25.1).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A header line has no colon or its name is not a token.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header this layer needs is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header this layer reads has a value that does not parse.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// A From/To display name opens a quote it never closes (RFC 4475 §3.1.2.6).
    #[error("unterminated quoted string in {0} header")]
    UnterminatedQuote(&'static str),
    /// A From/To display name holds characters a display name cannot (RFC 4475 §3.1.2.15).
    #[error("malformed display name in {0} header")]
    BadDisplayName(&'static str),
    /// Content-Length is not a non-negative decimal that fits, or appears twice.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Content-Length announces more bytes than the datagram carries (RFC 3261 §18.3).
    #[error("Content-Length larger than body")]
    ContentLengthTooLarge,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// More header lines than the parser keeps track of.
    #[error("too many headers")]
    TooManyHeaders,
    /// The message is larger than the configured maximum (RFC 3261 §21.5.14: 513).
    #[error("message too large")]
    TooLarge,
}

impl ParseError {
    /// The status code a server answers a request that failed with this error.
    pub fn status(self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem, for the answer's status line.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Incomplete => "Bad Request - Incomplete Message",
            ParseError::BadStartLine => "Bad Request-Line",
            ParseError::UnsupportedVersion => "Version Not Supported",
            ParseError::BadStatusCode => "Bad Status Code",
            ParseError::BadRequestUri => "Bad Request-URI",
            ParseError::BadHeaderLine => "Bad Request - Malformed Header Line",
            ParseError::MissingHeader(name) => missing_reason(name),
            ParseError::BadHeader(name) => bad_reason(name),
            ParseError::UnterminatedQuote(name) => match name {
                "From" => "Unterminated Quote in From",
                "To" => "Unterminated Quote in To",
                _ => "Bad Request - Unterminated Quote",
            },
            ParseError::BadDisplayName(name) => match name {
                "From" => "Bad Display Name in From",
                "To" => "Bad Display Name in To",
                _ => "Bad Request - Bad Display Name",
            },
            ParseError::BadContentLength => "Bad Content-Length",
            ParseError::ContentLengthTooLarge => "Bad Request - Content-Length Larger Than Body",
            ParseError::CSeqMethodMismatch => "Bad Request - CSeq Method Does Not Match",
            ParseError::TooManyHeaders => "Bad Request - Too Many Headers",
            ParseError::TooLarge => "Message Too Large",
        }
    }
}

// Static phrases so building an answer never allocates for the reason.
fn missing_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Missing Via",
        "From" => "Missing From",
        "To" => "Missing To",
        "Call-ID" => "Missing Call-ID",
        "CSeq" => "Missing CSeq",
        _ => "Bad Request - Missing Header",
    }
}

fn bad_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Bad Via",
        "From" => "Bad From",
        "To" => "Bad To",
        "Call-ID" => "Bad Call-ID",
        "CSeq" => "Bad CSeq",
        "Max-Forwards" => "Bad Max-Forwards",
        "Contact" => "Bad Contact",
        "Route" => "Bad Route",
        "Record-Route" => "Bad Record-Route",
        "Content-Type" => "Bad Content-Type",
        "Date" => "Bad Date",
        "Expires" => "Bad Expires",
        _ => "Bad Request - Malformed Header",
    }
}

#[cfg(test)]
mod tests {
    use super::ParseError;

    #[test]
    fn reasons_name_the_problem() {
        // The RFC 4475 reason hints: each phrase names what the sender got wrong.
        for (err, word) in [
            (ParseError::BadStartLine, "request-line"),
            (ParseError::BadRequestUri, "request-uri"),
            (ParseError::UnterminatedQuote("To"), "quote"),
            (ParseError::BadDisplayName("From"), "display"),
            (ParseError::BadContentLength, "content-length"),
            (ParseError::ContentLengthTooLarge, "content-length"),
            (ParseError::BadHeader("CSeq"), "cseq"),
            (ParseError::CSeqMethodMismatch, "cseq"),
            (ParseError::UnsupportedVersion, "version"),
        ] {
            assert!(
                err.reason().to_ascii_lowercase().contains(word),
                "{err:?}: {}",
                err.reason()
            );
            assert!(err.reason().len() <= 48, "{err:?}: keep it short");
        }
        assert_eq!(ParseError::UnterminatedQuote("To").status(), 400);
        assert_eq!(ParseError::BadDisplayName("From").status(), 400);
    }
}
