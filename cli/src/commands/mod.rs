//! One file per command. Adding a command is one [`Command`] variant and one file here.

pub mod chaos;
pub mod completions;
pub mod dashboard;
pub mod demo;
pub mod down;
pub mod events;
pub mod fleet;
pub mod image;
pub mod import;
pub mod jobs;
pub mod key;
pub mod nodes;
pub mod ps;
pub mod roles;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod up;
pub mod upgrade;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use api::client::{Client, ClientError};
use clap::Subcommand;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::{self, Out, StateOutput};

/// The subcommands. Their names are reserved words: they cannot be targets in the run form
/// (`drover -L key test.ping` targets a minion named `key`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, accept, reject and delete minion keys
    Key(key::KeyArgs),
    /// List jobs (with filters), show one job's returns, see which run, kill one
    Jobs(jobs::JobsArgs),
    /// Apply the roles of a git commit, see what it would change, see each minion's state
    Roles(roles::RolesArgs),
    /// Bring the fleet of fleet.yaml up: network, volumes, containers; wait until ready
    Up(up::UpArgs),
    /// List the fleet's slots: container, version, minion, health, drift
    Ps(ps::PsArgs),
    /// List the nodes: the fleet's containers, reserved and free CPU and memory, headroom
    Nodes(nodes::NodesArgs),
    /// Set a role's number of slots: drover scale worker=4
    Scale(scale::ScaleArgs),
    /// Roll roles to another image version, batch by batch, with rollback
    Upgrade(upgrade::UpgradeArgs),
    /// Show the fleet's rollouts, or undo the last one
    Rollout(rollout::RolloutArgs),
    /// Remove the fleet's containers and network (volumes with --volumes)
    Down(down::DownArgs),
    /// Kill fleet containers at random, to see the fleet heal
    Chaos(chaos::ChaosArgs),
    /// Bring the dockercoins demo cloud up in containers (or `demo down`): run from a clone
    Demo(demo::DemoArgs),
    /// Print the master's events as they happen (Ctrl-C ends it)
    Events(events::EventsArgs),
    /// Build images without a registry (on the base made from Debian packages), list them
    Image(image::ImageArgs),
    /// Translate an app's docker-compose.yml into fleet.yaml, roles, states and images
    Import(import::ImportArgs),
    /// Print the link to the master's web dashboard (it carries the API token: treat it like a password)
    Dashboard(dashboard::DashboardArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
}

/// What every command gets: the shared options and where to print.
pub struct Ctx<'a> {
    /// The master's directory (`--dir`, `$DROVER_DIR`, or the default).
    pub dir: PathBuf,
    /// `--out`, if given; see [`Ctx::out`] and [`Ctx::out_for`].
    pub out: Option<Out>,
    /// Whether to color text output.
    pub color: bool,
    /// `--state-output`: how much of each state the highstate output prints.
    pub state_output: StateOutput,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

impl Ctx<'_> {
    /// A client for the master named by `DIR/api.json`.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::from_dir(&self.dir).map_err(api_error)
    }

    /// The output format: `--out`, else text.
    pub fn out(&self) -> Out {
        self.out.unwrap_or_default()
    }

    /// The output format for the returns of `fun`: `--out`, else highstate for the
    /// functions that return state results (as Salt does), else text.
    pub fn out_for(&self, fun: &str) -> Out {
        self.out.unwrap_or(if output::highstate::is_state_function(fun) { Out::Highstate } else { Out::Text })
    }

    pub fn print(&mut self, text: &str) -> anyhow::Result<()> {
        self.stdout.write_all(text.as_bytes()).context("cannot write to stdout")
    }

    /// A line on stderr, for what is not the command's result (minions that did not return).
    pub fn note(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stderr, "{line}").context("cannot write to stderr")
    }
}

/// A client error as one message. Its text already names its cause, so the cause is not
/// chained again (`{:#}` would print it twice).
pub fn api_error(err: ClientError) -> anyhow::Error {
    anyhow::Error::msg(err.to_string())
}

/// Runs what the command line asks for.
pub fn dispatch(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let exit = match cli.command {
        None => run::run(cli.run, ctx)?,
        Some(command) => {
            if let Some(flag) = cli.run.flag_given() {
                anyhow::bail!("{flag} applies only to running a function, not to a subcommand");
            }
            match command {
                Command::Key(args) => key::run(args, ctx)?,
                Command::Jobs(args) => jobs::run(args, ctx)?,
                Command::Roles(args) => roles::run(args, ctx)?,
                Command::Up(args) => up::run(args, ctx)?,
                Command::Ps(args) => ps::run(args, ctx)?,
                Command::Nodes(args) => nodes::run(args, ctx)?,
                Command::Scale(args) => scale::run(args, ctx)?,
                Command::Upgrade(args) => upgrade::run(args, ctx)?,
                Command::Rollout(args) => rollout::run(args, ctx)?,
                Command::Down(args) => down::run(args, ctx)?,
                Command::Chaos(args) => chaos::run(args, ctx)?,
                Command::Demo(args) => demo::run(args, ctx)?,
                Command::Events(args) => events::run(args, ctx)?,
                Command::Image(args) => image::run(args, ctx)?,
                Command::Import(args) => import::run(args, ctx)?,
                Command::Dashboard(args) => dashboard::run(args, ctx)?,
                Command::Completions(args) => completions::run(args, ctx)?,
            }
        }
    };
    ctx.stdout.flush().context("cannot write to stdout")?;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::commands::jobs::JobsCommand;
    use crate::commands::key::KeyCommand;
    use crate::commands::roles::RolesCommand;

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("drover").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    #[test]
    fn reserved_words_are_subcommands() {
        let cli = parse(&["key", "list"]);
        assert!(matches!(cli.command, Some(Command::Key(key::KeyArgs { action: KeyCommand::List }))));
        assert_eq!(cli.out, None);

        let cli = parse(&["--out", "json", "key", "accept", "--all"]);
        assert!(
            matches!(&cli.command, Some(Command::Key(key::KeyArgs { action: KeyCommand::Accept(s) })) if s.all && s.id.is_none())
        );
        assert_eq!(cli.out, Some(Out::Json));

        let cli = parse(&["key", "reject", "web-1", "--out", "yaml", "--dir", "/srv/m"]);
        assert!(
            matches!(&cli.command, Some(Command::Key(key::KeyArgs { action: KeyCommand::Reject(s) })) if s.id.as_deref() == Some("web-1"))
        );
        assert_eq!(cli.out, Some(Out::Yaml));
        assert_eq!(cli.dir(), Path::new("/srv/m"));

        let cli = parse(&["jobs", "show", "20250101", "--out", "json"]);
        assert!(
            matches!(&cli.command, Some(Command::Jobs(jobs::JobsArgs { action: JobsCommand::Show { jid } })) if jid == "20250101")
        );
        assert_eq!(cli.out, Some(Out::Json));

        assert!(matches!(parse(&["jobs", "list"]).command, Some(Command::Jobs(_))));
        assert!(matches!(parse(&["completions", "zsh"]).command, Some(Command::Completions(_))));

        let cli = parse(&["roles", "apply", "--commit", "HEAD~1"]);
        assert!(
            matches!(&cli.command, Some(Command::Roles(roles::RolesArgs { action: RolesCommand::Apply(c) })) if c.commit.commit.as_deref() == Some("HEAD~1"))
        );
        let cli = parse(&["--out", "json", "roles", "diff"]);
        assert!(
            matches!(&cli.command, Some(Command::Roles(roles::RolesArgs { action: RolesCommand::Diff(c) })) if c.commit.is_none())
        );
        assert_eq!(cli.out, Some(Out::Json));
        assert!(matches!(
            parse(&["roles", "status", "--out", "yaml"]).command,
            Some(Command::Roles(roles::RolesArgs { action: RolesCommand::Status }))
        ));
        let cli = parse(&["events", "--since", "42", "--no-follow", "--out", "json"]);
        assert!(matches!(&cli.command, Some(Command::Events(e)) if e.since == Some(42) && e.no_follow));
        assert!(
            matches!(parse(&["events"]).command, Some(Command::Events(e)) if e.since.is_none() && !e.no_follow)
        );
        let cli = parse(&[
            "--dir",
            "/srv/m",
            "image",
            "build",
            "images/coins",
            "--tag",
            "coins:1.0",
            "--out",
            "json",
        ]);
        assert!(
            matches!(&cli.command, Some(Command::Image(image::ImageArgs { action: image::ImageCommand::Build(b) })) if b.folder == Path::new("images/coins") && b.tag == "coins:1.0")
        );
        assert_eq!(cli.out, Some(Out::Json));
        assert_eq!(cli.dir(), Path::new("/srv/m"), "the image's folder is not the master's");
        assert!(matches!(
            parse(&["image", "list", "coins"]).command,
            Some(Command::Image(image::ImageArgs { action: image::ImageCommand::List(l) })) if l.name.as_deref() == Some("coins")
        ));
        // `-L roles` and `-L events` target minions so named
        assert_eq!(parse(&["-L", "roles", "test.ping"]).run.target.list.as_deref(), Some("roles"));
        assert_eq!(parse(&["-L", "events", "test.ping"]).run.target.list.as_deref(), Some("events"));

        // a target flag's value is never a subcommand
        let cli = parse(&["-L", "key", "test.ping"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.target.list.as_deref(), Some("key"));

        // run-only flags before a subcommand are refused at dispatch
        let cli = parse(&["-t", "5", "key", "list"]);
        assert_eq!(cli.run.flag_given(), Some("-t/--timeout"));
        assert_eq!(parse(&["-R", "x", "jobs", "list"]).run.flag_given(), Some("-R/--role"));
        assert_eq!(parse(&["--dir", "/x", "--out", "json", "jobs", "list"]).run.flag_given(), None);
    }

    #[test]
    fn bad_subcommand_lines_are_refused() {
        let table: &[&[&str]] = &[
            &["key"],
            &["key", "accept"],
            &["key", "accept", "a", "--all"],
            &["key", "list", "-t", "5"],
            &["jobs", "show"],
            &["jobs", "list", "extra"],
            &["completions", "tcsh"],
            &["roles"],
            &["roles", "apply", "HEAD"],
            &["roles", "apply", "--commit"],
            &["roles", "status", "--commit", "x"],
            &["roles", "undo"],
            &["events", "--since", "-1"],
            &["events", "--since", "x"],
            &["events", "extra"],
            &["image"],
            &["image", "build", "images/coins"],
            &["image", "build", "--tag", "coins:1"],
            &["image", "list", "a", "b"],
            &["image", "rm", "coins:1"],
        ];
        for argv in table {
            let argv: Vec<&str> = std::iter::once("drover").chain(argv.iter().copied()).collect();
            assert!(Cli::try_parse_from(&argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn subcommands_refuse_run_flags() {
        let cli = parse(&["--async", "jobs", "list"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut ctx = Ctx {
            dir: cli.dir(),
            out: cli.out,
            color: false,
            state_output: StateOutput::Full,
            stdout: &mut out,
            stderr: &mut err,
        };
        let e = dispatch(cli, &mut ctx).unwrap_err();
        assert_eq!(format!("{e:#}"), "--async applies only to running a function, not to a subcommand");
    }

    #[test]
    fn out_defaults_to_highstate_for_state_functions() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut ctx = Ctx {
            dir: PathBuf::new(),
            out: None,
            color: false,
            state_output: StateOutput::Full,
            stdout: &mut out,
            stderr: &mut err,
        };
        assert_eq!(ctx.out(), Out::Text);
        assert_eq!(ctx.out_for("state.apply"), Out::Highstate);
        assert_eq!(ctx.out_for("state.highstate"), Out::Highstate);
        assert_eq!(ctx.out_for("test.ping"), Out::Text);
        ctx.out = Some(Out::Json);
        assert_eq!(ctx.out_for("state.apply"), Out::Json);
        ctx.out = Some(Out::Text);
        assert_eq!(ctx.out_for("state.apply"), Out::Text);
        ctx.out = Some(Out::Highstate);
        assert_eq!((ctx.out(), ctx.out_for("cmd.run")), (Out::Highstate, Out::Highstate));
    }

    #[test]
    fn parser_is_consistent() {
        Cli::command().debug_assert();
    }
}
