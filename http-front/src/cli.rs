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
