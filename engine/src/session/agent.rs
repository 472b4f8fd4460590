//! What a session's User-Agent says, for session and token listings.
//!
//! Parsed with Woothee (a maintained, data-driven parser shared by several languages), not with
//! regexes of our own. The header is kept as sent and parsed when listed, so a better parser
//! improves old sessions' listings too.

use serde::Serialize;

/// The `agent` object of `/api/auth/tokens` and `/v1/auth/sessions` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    /// Browser or client name ("Chrome", "Firefox", "curl"…), "UNKNOWN" if unrecognised.
    pub name: String,
    pub version: String,
    /// Operating system ("Windows 10", "Mac OSX", "Android"…).
    pub os: String,
    /// The operating system's version, as far as the header tells.
    pub platform: String,
    /// Device class: "pc", "smartphone", "mobilephone", "crawler", "appliance", "misc".
    pub device: String,
}

/// Longest User-Agent kept with a session.
pub const MAX_USER_AGENT: usize = 512;

/// The header cut to [`MAX_USER_AGENT`] bytes at a character boundary.
pub fn clip(user_agent: &str) -> String {
    let mut end = user_agent.len().min(MAX_USER_AGENT);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    user_agent.get(..end).unwrap_or_default().to_string()
}

impl Agent {
    pub fn parse(user_agent: &str) -> Self {
        let unknown = || "UNKNOWN".to_string();
        match woothee::parser::Parser::new().parse(user_agent) {
            Some(r) => Self {
                name: r.name.to_string(),
                version: r.version.to_string(),
                os: r.os.to_string(),
                platform: r.os_version.to_string(),
                device: r.category.to_string(),
            },
            None => Self { name: unknown(), version: unknown(), os: unknown(), platform: unknown(), device: unknown() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_and_tools_are_named() {
        let chrome = Agent::parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(chrome.name, "Chrome");
        assert_eq!(chrome.os, "Windows 10");
        assert_eq!(chrome.device, "pc");
        let iphone = Agent::parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(iphone.os, "iPhone");
        assert_eq!(iphone.device, "smartphone");
        let nonsense = Agent::parse("\u{1}\u{2}garbage");
        assert_eq!(nonsense.name, "UNKNOWN");
    }

    #[test]
    fn clipping_keeps_characters_whole() {
        let long = "é".repeat(400);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_USER_AGENT);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
