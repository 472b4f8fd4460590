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
