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
