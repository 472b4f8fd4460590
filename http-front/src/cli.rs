//! The `sigil` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sigil", version, about = "sigil: wallet-signature, account and token sessions in one binary")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the APIs, websockets, /metrics and health checks.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List or end wallet sessions (works on the data directory; stop `sigil serve` first).
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// A throw-away wallet for tours and scripts: make a key, sign a login phrase.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Record who owns a Flux app (`checkprivilege` with `appname` answers `appowner`).
    AppOwner {
        #[command(subcommand)]
        command: AppOwnerCommand,
    },
    /// Manage accounts (works on the data directory; stop `sigil serve` first, or use
    /// `/api/admin/users` on a running server).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage authentication groups (data directory; or `/api/admin/groups`).
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from standard input (never from an argument,
    /// which other users could see in the process list or shell history).
    Add {
        username: String,
        /// Read the password from standard input (one line). Required.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        firstname: Option<String>,
        #[arg(long)]
        lastname: Option<String>,
        /// E.164 phone number for SMS codes, e.g. +14155550123.
        #[arg(long)]
        phone: Option<String>,
        /// Comma-separated scopes [default: user]; `admin,user` makes an administrator.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Authentication group (must exist).
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print every account, one per line: guid, username, email, scopes, group, state.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set a new password (read from standard input) and end the account's sessions.
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Disable an account (it cannot log in; its sessions end), or enable it again.
    Disable {
        username: String,
        /// Enable the account instead.
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create an authentication group.
    Add {
        name: String,
        /// Comma-separated CIDRs (IPv4 or IPv6) allowed to log in; none = any address.
        #[arg(long, value_delimiter = ',')]
        ip_allowlist: Vec<String>,
        /// Members must pass a second factor.
        #[arg(long)]
        require_2fa: bool,
        /// Members may not log in at all.
        #[arg(long)]
        no_login: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print every group: name, login allowed, 2FA required, allow-list.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

impl UserCommand {
    pub fn config(&self) -> &ConfigArgs {
        match self {
            Self::Add { config, .. } | Self::List { config } | Self::Passwd { config, .. } | Self::Disable { config, .. } => config,
        }
    }
}

impl GroupCommand {
    pub fn config(&self) -> &ConfigArgs {
        match self {
            Self::Add { config, .. } | Self::List { config } => config,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Print live sessions, one per line: zelid, login phrase, created, expires.
    List {
        /// Only this ZelID's sessions.
        #[arg(long)]
        zelid: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write COUNT synthetic sessions (random ids, never valid credentials) for restart and
    /// storage benchmarks.
    Seed {
        #[arg(long)]
        count: u64,
        /// Exit without flushing, leaving the sessions only in the write-ahead log, as after a
        /// `kill -9`: the next start replays them (the crash-restart benchmark).
        #[arg(long)]
        unflushed: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// End sessions: the one opened with a phrase, all of a ZelID, or all of them.
    Revoke {
        #[arg(long, conflicts_with_all = ["zelid", "all"])]
        phrase: Option<String>,
        #[arg(long, conflicts_with = "all")]
        zelid: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WalletKind {
    /// P2PKH `1…`, compressed key (ZelCore, SSP).
    Btc,
    /// P2PKH `1…`, uncompressed key.
    BtcUncompressed,
    /// P2SH-P2WPKH `3…`.
    P2shP2wpkh,
    /// Native segwit `bc1q…`.
    P2wpkh,
    /// Ethereum `0x…` (MetaMask `personal_sign`).
    Eth,
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Print a new random key (hex) and its address, tab-separated.
    New {
        #[arg(long, value_enum, default_value = "btc")]
        kind: WalletKind,
    },
    /// Print the signature of MESSAGE the way that kind of wallet makes it.
    Sign {
        #[arg(long, value_enum, default_value = "btc")]
        kind: WalletKind,
        /// The key printed by `sigil wallet new`.
        #[arg(long)]
        key: String,
        message: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppOwnerCommand {
    /// Set APP's owner to ZELID.
    Set {
        app: String,
        zelid: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print every app and its owner.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and check the configuration, then print it in full (defaults included) as TOML.
    Show(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; `SIGIL_<SECTION>__<KEY>` variables override it.
    #[arg(long, short, env = "SIGIL_CONFIG")]
    pub config: Option<PathBuf>,
}
