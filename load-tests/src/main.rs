//! `sigil-load`, the bundled load generator. Its scenarios (phrase, wallet-login,
//! session-check, ws-push, ws-idle, mixed) are tracked in the load-test issue; until they land
//! this binary says so instead of pretending to measure anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("sigil-load: no scenarios are implemented yet (see the project's load-test issue)");
    ExitCode::FAILURE
}
