//! The `drover` command line: Salt-style targeted jobs, keys, jobs, roles and events, spoken
//! to the master only through [`api::client::Client`].
//!
//! - [`cli`]: the top-level clap parser and the options every command shares.
//! - [`commands`]: one file per command, and the dispatch from parsed arguments to them.
//! - [`output`]: the output formats (`--out text|json|yaml|highstate`); `output::highstate`
//!   lays out state results.
//! - [`exit`]: the exit statuses and what each one means.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod output;

pub use cli::Cli;
pub use exit::Exit;
