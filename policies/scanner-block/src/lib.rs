//! `scanner-block`: drops requests from known SIP scanners without an
//! answer, and relays (or forwards to `next_hop`) everything else.
//!
//! A scanner is recognised by its User-Agent: a request whose User-Agent
//! contains one of the `user_agents` patterns (case-insensitive substring)
//! is dropped. Silence is the point: a scanner that gets no answer cannot
//! tell a SIP server from a closed port, and moves on without trying
//! passwords. Every drop is counted in the `scanner_dropped` metric with the
//! matching pattern as its only label (bounded by the list).
//!
//! This catches tools that announce themselves (SIPVicious and its forks
//! still do by default); a scanner that lies about its User-Agent is the
//! flood guard's job (`[limits]` in the host).
#![deny(missing_docs)]

use viaduct_guest_sdk::{export_policy, metrics, Config, Decision, Policy, Request};

/// User-Agent fragments of scanners seen on the open internet: SIPVicious
/// (`friendly-scanner` is its default, `sipvicious` its name), sipcli,
/// sip-scan/SIPScan, sundayddr, iWar and `pplsip`, which brute-force tools
/// copy. Not listed on purpose: sipsak and SIPp, which operators use for
/// their own probes.
pub const DEFAULT_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "sundayddr",
    "iwar",
    "pplsip",
];

/// The policy: the lowercased patterns and where other calls go.
pub struct ScannerBlock {
    patterns: Vec<String>,
    next_hop: Option<String>,
}

impl Policy for ScannerBlock {
    fn init(config: &Config) -> Result<Self, String> {
        // `user_agents` replaces the default list; `extra_user_agents` adds to it.
        let mut patterns: Vec<String> = match config.get("user_agents") {
            Some(_) => config
                .list("user_agents")
                .into_iter()
                .map(String::from)
                .collect(),
            None => DEFAULT_USER_AGENTS.iter().map(|s| s.to_string()).collect(),
        };
        patterns.extend(
            config
                .list("extra_user_agents")
                .into_iter()
                .map(String::from),
        );
        Ok(ScannerBlock::new(
            patterns,
            config.get("next_hop").map(String::from),
        ))
    }

    fn on_request(&self, req: &Request) -> Decision {
        let user_agent = req.header("User-Agent");
        if let Some(pattern) = self.scanner(user_agent.as_deref()) {
            metrics::counter("scanner_dropped", &[("pattern", pattern)], 1);
            return Decision::drop();
        }
        match &self.next_hop {
            Some(hop) => Decision::forward([hop]),
            None => Decision::relay(),
        }
    }
}

export_policy!(ScannerBlock);

impl ScannerBlock {
    fn new(patterns: Vec<String>, next_hop: Option<String>) -> Self {
        let patterns = patterns
            .into_iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        ScannerBlock { patterns, next_hop }
    }

    /// The pattern a User-Agent matches, if any.
    fn scanner(&self, user_agent: Option<&str>) -> Option<&str> {
        let ua = user_agent?.to_ascii_lowercase();
        self.patterns
            .iter()
            .find(|p| ua.contains(p.as_str()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> ScannerBlock {
        ScannerBlock::new(
            DEFAULT_USER_AGENTS.iter().map(|s| s.to_string()).collect(),
            None,
        )
    }

    #[test]
    fn known_scanners_match_in_any_case() {
        let p = default();
        assert_eq!(
            p.scanner(Some("friendly-scanner")),
            Some("friendly-scanner")
        );
        assert_eq!(p.scanner(Some("SIPVicious 0.3.4")), Some("sipvicious"));
        assert_eq!(p.scanner(Some("sipcli/v1.8")), Some("sipcli"));
        assert_eq!(
            p.scanner(Some("  Friendly-Scanner ")),
            Some("friendly-scanner")
        );
    }

    #[test]
    fn real_phones_and_trunks_pass() {
        let p = default();
        for ua in [
            "Linphone/5.2.0 (belle-sip/5.2.0)",
            "Asterisk PBX 20.5.0",
            "FreeSWITCH-mod_sofia/1.10.11",
            "LiveKit",
            "Twilio Gateway",
            "sipp",
            "sipsak 0.9.8",
            "",
        ] {
            assert_eq!(p.scanner(Some(ua)), None, "{ua}");
        }
        assert_eq!(p.scanner(None), None);
    }

    #[test]
    fn the_list_can_be_replaced() {
        let p = ScannerBlock::new(vec!["EvilDialer".into(), " ".into()], None);
        assert_eq!(p.scanner(Some("evildialer 2")), Some("evildialer"));
        assert_eq!(p.scanner(Some("friendly-scanner")), None);
    }
}
