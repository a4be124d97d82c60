//! The top-level parser: the options every command shares, the run form
//! (`drover TARGET FUNCTION ARGS...`) and the subcommands.

use std::path::PathBuf;

use clap::Parser;

use crate::commands::Command;
use crate::commands::run::RunArgs;
use crate::output::{Out, StateOutput};

const USAGE: &str = "\
drover [OPTIONS] <TARGET> <FUNCTION> [ARGS]... [KEY=VALUE]...
       drover [OPTIONS] -E|-L|-G|-P|-S|-R|-I|-N|-C <TARGET> <FUNCTION> [ARGS]... [KEY=VALUE]...
       drover [OPTIONS] <COMMAND>";

const EXAMPLES: &str = "\
Options go before the target; as with Salt, the long ones (--out, --state-output,
--log-level, --timeout, --batch, --async...) may also follow the function: `drover '*' test.ping --out json`. Every other word
after the target is the function or its arguments, passed on as typed (`cmd.run ls -la`
keeps its `-la`); after a `--` word, every word is. `key=value` words are keyword
arguments, their values read as YAML. Words that are commands (key, jobs, roles, image,
import, up, ps, nodes, scale, upgrade, rollout, down, chaos, demo, events, dashboard, completions,
help) are reserved: target a minion named like one with -L.

cmd.run runs a command line given as one word with /bin/sh -c, as Salt does (pipes,
redirections, $VARS); given as several words, or with shell=false, it runs the program
without a shell. It returns the output (stderr merged in); cmd.run_all returns pid, retcode,
stdout and stderr; cmd.retcode the exit status. A command line whose first word holds an
`=` goes in cmd='...'.

state.apply and state.highstate print as highstate (each state, then a summary per minion)
unless --out says otherwise.

Examples:
  drover '*' test.ping
  drover 'web-*' cmd.run ls -la
  drover '*' cmd.run 'ps aux | grep nginx | wc -l'
  drover -G os:debian cmd.run uptime
  drover -E 'web-[0-9]+' grains.get os
  drover -L web-1,db-1 state.apply test=true   # what would change, as highstate
  drover --out json '*' state.apply            # each minion's state results as json
  drover '*' state.apply --state-output=changes  # a line for each state that changed nothing
  drover -l debug '*' test.ping                # each request to the master on stderr
  drover -L key test.ping                      # a minion named `key`
  drover -R worker daemon.status
  drover -N webs test.ping                     # a nodegroup of roles/nodegroups.yaml
  drover -I 'app:env:prod' test.ping           # the pillar of the minions' roles
  drover -C 'G@os:debian and web-* or L@a,b' test.ping
  drover --out json -t 30 -b 25% '*' cmd.run_all 'apt-get update'
  drover --async '*' test.sleep 60
  drover key list
  drover key accept web-1
  drover jobs show 20250101120000123456 --out json
  drover roles diff --commit HEAD~1
  drover roles apply
  drover roles status
  drover up                                    # the fleet of fleet.yaml, in containers
  drover ps
  drover scale worker=4
  drover upgrade worker --to 1.1
  drover rollout status
  drover chaos kill --role worker --every 5s --for 30s
  drover down
  drover events --out json | jq .tag
  drover image build images/coins --tag coins:1.0
  drover image list
  drover import compose                        # docker-compose.yml → fleet.yaml, roles, states, images
  drover completions bash > /etc/bash_completion.d/drover

Exit status: 0 every targeted minion returned success; 1 some returned a failure;
2 usage or configuration error (or no minion matched the target, or a roles commit with
errors); 3 some minions did not return (timed out, or not connected). `roles status` exits 1
when some minion's last apply failed.";

/// Salt-like configuration management for fleets of immutable containers.
///
/// Runs a function on the minions a target selects; manages minion keys, jobs, roles, and the
/// fleet of containers (up, ps, scale, upgrade, rollout, down, chaos).
/// drover finds the master through DIR/api.json, which drover-master writes once it serves.
#[derive(Debug, Parser)]
#[command(name = "drover", version, override_usage = USAGE, after_long_help = EXAMPLES)]
#[command(arg_required_else_help = true, max_term_width = 100)]
pub struct Cli {
    /// The master's directory, where it writes api.json [default: /var/lib/drover/master]
    #[arg(long, global = true, value_name = "DIR", env = "DROVER_DIR")]
    pub dir: Option<PathBuf>,

    /// Output format: text (Salt-like), json or yaml (a job: minion id → return), highstate
    /// (state results) [default: text; highstate for state.apply and state.highstate]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub out: Option<Out>,

    /// How much of each state the highstate output prints, as Salt's: full (every state in
    /// full), terse (one line each), mixed (one line each, failed states in full), changes
    /// (one line for states that succeeded unchanged, the others in full)
    #[arg(long, global = true, value_enum, value_name = "MODE", default_value_t, alias = "state_output")]
    pub state_output: StateOutput,

    /// What drover logs on stderr, by Salt's level names: quiet, error, warning, info, debug
    /// (each request to the master, its status and time), trace (their bodies too); the
    /// error a failed command ends with is printed at every level
    #[arg(short = 'l', long, global = true, value_enum, value_name = "LEVEL", default_value_t)]
    pub log_level: LogLevel,

    /// Write what would go to standard output into FILE instead (created, or truncated)
    #[arg(long, global = true, value_name = "FILE")]
    pub out_file: Option<PathBuf>,

    /// No colors, even on a terminal (as NO_COLOR=1 does)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Accepted for Salt's command lines: drover already prints a job's returns as one
    /// document with --out json or yaml
    #[arg(long = "static", global = true)]
    pub static_output: bool,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `-l`/`--log-level`: Salt's level names; its `critical`, `profile`, `garbage` and `all` are
/// taken as the nearest level drover has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    /// Nothing
    Quiet,
    /// Errors (also `critical`)
    #[value(alias = "critical")]
    Error,
    /// Warnings and errors
    #[default]
    #[value(alias = "warn")]
    Warning,
    /// Where the master is found
    Info,
    /// Each request to the master, its answer's status and time (also `profile`)
    #[value(alias = "profile")]
    Debug,
    /// Requests' and answers' bodies too, 4 KiB of each at most (also `garbage`, `all`)
    #[value(alias = "garbage", alias = "all")]
    Trace,
}

impl LogLevel {
    /// The most verbose tracing level shown, or `None` for nothing.
    pub fn max(self) -> Option<tracing::Level> {
        match self {
            LogLevel::Quiet => None,
            LogLevel::Error => Some(tracing::Level::ERROR),
            LogLevel::Warning => Some(tracing::Level::WARN),
            LogLevel::Info => Some(tracing::Level::INFO),
            LogLevel::Debug => Some(tracing::Level::DEBUG),
            LogLevel::Trace => Some(tracing::Level::TRACE),
        }
    }
}

/// The master's directory when neither `--dir` nor `$DROVER_DIR` names one.
pub const DEFAULT_DIR: &str = "/var/lib/drover/master";

impl Cli {
    /// Parses the command line, then lifts drover's own long options that follow the
    /// function (`drover '*' test.ping --out json`, as Salt allows) out of the words; see
    /// [`Cli::lift_trailing_options`].
    pub fn parse_args() -> Result<Self, clap::Error> {
        let mut cli = <Self as clap::Parser>::try_parse()?;
        cli.lift_trailing_options()?;
        Ok(cli)
    }

    /// In the run form, words after the target that are drover's long options (`--out X`,
    /// `--out-file X`, `--state-output X`, `--log-level X`, `--timeout X`, `--batch X`, their
    /// `--opt=X` forms,
    /// `--async`, `--no-color` and `--static`) set those options,
    /// as Salt reads `salt '*' test.ping --out json`. A `--` word ends this: everything
    /// after it goes to the function as typed. Short options are never taken from there, so
    /// `cmd.run ls -t` keeps its `-t`.
    pub fn lift_trailing_options(&mut self) -> Result<(), clap::Error> {
        if self.command.is_some() {
            return Ok(());
        }
        let words = std::mem::take(&mut self.run.words);
        let mut kept = Vec::with_capacity(words.len());
        let mut it = words.into_iter();
        let bad = |msg: String| clap::Error::raw(clap::error::ErrorKind::InvalidValue, msg + "\n");
        while let Some(w) = it.next() {
            if w == "--" {
                kept.extend(it.by_ref());
                break;
            }
            let (name, inline) = match w.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (w.clone(), None),
            };
            if inline.is_none() {
                match name.as_str() {
                    "--async" => self.run.no_wait = true,
                    "--no-color" => self.no_color = true,
                    "--static" => self.static_output = true,
                    _ => {}
                }
                if matches!(name.as_str(), "--async" | "--no-color" | "--static") {
                    continue;
                }
            }
            if !matches!(
                name.as_str(),
                "--out"
                    | "--out-file"
                    | "--state-output"
                    | "--state_output"
                    | "--log-level"
                    | "--timeout"
                    | "--batch"
                    | "--batch-size"
            ) {
                kept.push(w);
                continue;
            }
            let Some(value) = inline.or_else(|| it.next()) else {
                return Err(bad(format!("{name} needs a value")));
            };
            match name.as_str() {
                "--out" => {
                    self.out = Some(<Out as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                        bad(format!("invalid --out {value:?}: expected text, json, yaml or highstate"))
                    })?)
                }
                "--out-file" => self.out_file = Some(PathBuf::from(value)),
                "--log-level" => {
                    self.log_level = <LogLevel as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                        bad(format!(
                            "invalid --log-level {value:?}: expected quiet, error, warning, info, debug or trace"
                        ))
                    })?
                }
                "--state-output" | "--state_output" => {
                    self.state_output =
                        <StateOutput as clap::ValueEnum>::from_str(&value, true).map_err(|_| {
                            bad(format!(
                                "invalid --state-output {value:?}: expected full, terse, mixed or changes"
                            ))
                        })?
                }
                "--timeout" => {
                    self.run.timeout = Some(
                        crate::commands::run::parse_timeout(&value)
                            .map_err(|e| bad(format!("--timeout: {e}")))?,
                    )
                }
                _ => self.run.batch = Some(value.parse().map_err(|e: String| bad(format!("--batch: {e}")))?),
            }
        }
        self.run.words = kept;
        Ok(())
    }

    /// `--dir`, else `$DROVER_DIR`, else [`DEFAULT_DIR`].
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::{Cli, EXAMPLES};

    #[test]
    fn the_help_names_every_reserved_word() {
        let reserved =
            EXAMPLES.split("Words that are commands (").nth(1).and_then(|s| s.split(')').next()).unwrap();
        let listed: Vec<String> = reserved.split(',').map(|w| w.trim().to_owned()).collect();
        let mut missing: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .chain(["help".to_owned()])
            .filter(|name| !listed.contains(name))
            .collect();
        missing.sort();
        assert!(missing.is_empty(), "subcommands the help does not call reserved: {missing:?}");
    }
}
