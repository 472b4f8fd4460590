//! Who a ZelID is on this node: FluxOS's privilege labels and levels.

use crate::config::FluxConfig;

/// The label FluxOS reports at login and in the websocket push (`privilage`, sic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    FluxTeam,
    Admin,
    User,
}

impl Privilege {
    /// FluxOS's order: team first, then the node owner, then everyone else. Comparisons are
    /// exact and case-sensitive, as in FluxOS.
    pub fn of(zelid: &str, config: &FluxConfig) -> Self {
        if config.team_zelids.iter().any(|t| t == zelid) {
            Self::FluxTeam
        } else if config.owner_zelid.as_deref() == Some(zelid) {
            Self::Admin
        } else {
            Self::User
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::FluxTeam => "fluxteam",
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

/// The access levels routes ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The node owner, with a session on this node.
    Admin,
    /// A team id, with a session on this node.
    FluxTeam,
    /// The owner or a team id, with a session.
    AdminAndFluxTeam,
    /// Anyone with a session (or, when enabled, a recent self-signed phrase).
    User,
}

impl Level {
    /// Whether `zelid` has the identity this level needs (the session is checked elsewhere).
    pub fn admits(self, zelid: &str, config: &FluxConfig) -> bool {
        let owner = config.owner_zelid.as_deref() == Some(zelid);
        let team = config.team_zelids.iter().any(|t| t == zelid);
        match self {
            Self::Admin => owner,
            Self::FluxTeam => team,
            Self::AdminAndFluxTeam => owner || team,
            Self::User => true,
        }
    }

    /// Levels that FluxOS lets pass on a recent self-signed phrase without a session.
    pub fn allows_stateless(self) -> bool {
        self == Self::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_fluxos_order() {
        let c = FluxConfig {
            owner_zelid: Some("1owner".into()),
            team_zelids: vec!["1team".into(), "1owner".into()],
            ..FluxConfig::default()
        };
        assert_eq!(Privilege::of("1team", &c), Privilege::FluxTeam);
        assert_eq!(Privilege::of("1owner", &c).label(), "fluxteam", "team wins over owner");
        assert_eq!(Privilege::of("1OWNER", &c), Privilege::User, "case-sensitive");
        assert!(Level::Admin.admits("1owner", &c));
        assert!(!Level::Admin.admits("1team", &c));
        assert!(Level::AdminAndFluxTeam.admits("1team", &c));
        assert!(Level::User.admits("anyone", &c));
    }
}
