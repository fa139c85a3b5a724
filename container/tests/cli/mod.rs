//! Running the `exchange` binary as a user does, for the CLI tests.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output, Stdio};

/// `exchange`, with no log filter from the environment and no stdin.
pub fn exchange() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exchange"));
    command.env_remove("EXCHANGE_LOG").stdin(Stdio::null());
    command
}

/// Runs `exchange args…` to the end.
pub fn run(args: &[&str]) -> Output {
    exchange().args(args).output().expect("exchange runs")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
