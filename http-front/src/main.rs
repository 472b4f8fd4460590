use std::process::ExitCode;

use clap::Parser as _;
use sigil_engine::config::Config;
use sigil_http::cli::{AppOwnerCommand, Cli, Command, ConfigArgs, ConfigCommand, SessionsCommand};
use sigil_http::{FrontError, Sigil, admin_cli, logging};

fn load(args: &ConfigArgs) -> Result<Config, FrontError> {
    Ok(Config::load(args.config.as_deref(), std::env::vars())?)
}

async fn serve(args: &ConfigArgs) -> Result<(), FrontError> {
    let config = load(args)?;
    logging::init(&config.log);
    let sigil = Sigil::bind(config)?;
    sigil.run().await
}

fn show(args: &ConfigArgs) -> Result<(), FrontError> {
    let config = load(args)?;
    let text = toml::to_string_pretty(&config).map_err(|e| FrontError::Startup(e.to_string()))?;
    print!("{text}");
    Ok(())
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config { command: ConfigCommand::Show(args) } => show(args),
        Command::Sessions { command } => {
            let args = match command {
                SessionsCommand::List { config, .. }
                | SessionsCommand::Revoke { config, .. }
                | SessionsCommand::Seed { config, .. } => config,
            };
            load(args).and_then(|c| admin_cli::sessions(&c, command))
        }
        Command::Wallet { command } => admin_cli::wallet(command),
        Command::User { command } => load(command.config()).and_then(|c| admin_cli::user(&c, command)),
        Command::Group { command } => load(command.config()).and_then(|c| admin_cli::group(&c, command)),
        Command::AppOwner { command } => {
            let args = match command {
                AppOwnerCommand::Set { config, .. } | AppOwnerCommand::List { config } => config,
            };
            load(args).and_then(|c| admin_cli::app_owner(&c, command))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigil: {e}");
            ExitCode::FAILURE
        }
    }
}
