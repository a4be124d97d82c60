//! The run form: `drover [TARGET-FLAG] TARGET FUNCTION [ARGS...] [key=value...]` runs one
//! job and prints the returns; the exit status says whether every minion returned success.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use api::{Batch, RunRequest, RunResponse, TargetType, words};
use clap::{Args, CommandFactory};
use serde_json::json;

use crate::cli::Cli;
use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out};

/// Seconds to wait for each minion's return unless `-t` says otherwise.
pub const DEFAULT_TIMEOUT_SECS: f64 = 10.0;

#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Seconds to wait for each minion's return [default: 10]
    #[arg(short, long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,

    /// Do not wait for returns: print the job id and exit
    #[arg(long = "async")]
    pub no_wait: bool,

    /// At most N minions (or N% of those targeted) busy with the job at once
    #[arg(short, long, visible_alias = "batch-size", value_name = "N|N%")]
    pub batch: Option<Batch>,

    /// TARGET (unless a targeting flag gives it), FUNCTION, then its ARGS and KEY=VALUE words
    #[arg(value_name = "WORDS", trailing_var_arg = true)]
    pub words: Vec<String>,

    // Last: the flattened struct's help heading holds for every argument after it.
    #[command(flatten)]
    pub target: TargetFlags,
}

/// The targeting flags; each takes the target as its value. Without one, the first word is
/// a glob on minion ids.
#[derive(Debug, Default, Args)]
#[group(id = "target_flag", multiple = false)]
#[command(next_help_heading = "Targeting (default: a glob on minion ids)")]
pub struct TargetFlags {
    /// Minions whose id matches a regular expression (anchored at the start)
    #[arg(short = 'E', long, value_name = "REGEX")]
    pub pcre: Option<String>,

    /// Minions listed by id, comma-separated
    #[arg(short = 'L', long, value_name = "ID,...")]
    pub list: Option<String>,

    /// Minions whose grain matches a glob, like os:debian
    #[arg(short = 'G', long, value_name = "GRAIN:GLOB")]
    pub grain: Option<String>,

    /// Minions whose grain matches a regular expression, like 'os:(debian|ubuntu)'
    #[arg(short = 'P', long, value_name = "GRAIN:REGEX")]
    pub grain_pcre: Option<String>,

    /// Minions with an address in an IPv4 network (their ipv4 grain), like 10.1.0.0/16
    #[arg(short = 'S', long, value_name = "CIDR")]
    pub ipcidr: Option<String>,

    /// Minions that have a role
    #[arg(short = 'R', long, value_name = "ROLE")]
    pub role: Option<String>,

    /// Minions whose pillar (of their assigned roles) matches a glob, like app:env:prod
    #[arg(short = 'I', long, value_name = "KEY:GLOB")]
    pub pillar: Option<String>,

    /// The minions of a nodegroup of roles/nodegroups.yaml
    #[arg(short = 'N', long, value_name = "NAME")]
    pub nodegroup: Option<String>,

    /// A compound target: 'G@os:debian and R@worker and web-* or L@a,b'
    #[arg(short = 'C', long, value_name = "EXPR")]
    pub compound: Option<String>,
}

impl TargetFlags {
    /// The target a flag gave, and how the master should read it. A role, a pillar and a
    /// nodegroup go as the compound terms `R@role`, `I@key:glob` and `N@name`.
    pub fn chosen(&self) -> Option<(String, TargetType)> {
        let TargetFlags { pcre, list, grain, grain_pcre, ipcidr, role, pillar, nodegroup, compound } = self;
        let with = |t: &Option<String>, ty| t.clone().map(|t| (t, ty));
        with(pcre, TargetType::Pcre)
            .or_else(|| with(list, TargetType::List))
            .or_else(|| with(grain, TargetType::Grain))
            .or_else(|| with(grain_pcre, TargetType::GrainPcre))
            .or_else(|| with(ipcidr, TargetType::Ipcidr))
            .or_else(|| role.as_ref().map(|r| (format!("R@{r}"), TargetType::Compound)))
            .or_else(|| pillar.as_ref().map(|p| (format!("I@{p}"), TargetType::Compound)))
            .or_else(|| nodegroup.as_ref().map(|n| (format!("N@{n}"), TargetType::Compound)))
            .or_else(|| with(compound, TargetType::Compound))
    }
}

impl RunArgs {
    /// The first run-only flag given, if any: they make no sense with a subcommand.
    pub fn flag_given(&self) -> Option<&'static str> {
        let t = &self.target;
        [
            (t.pcre.is_some(), "-E/--pcre"),
            (t.list.is_some(), "-L/--list"),
            (t.grain.is_some(), "-G/--grain"),
            (t.grain_pcre.is_some(), "-P/--grain-pcre"),
            (t.ipcidr.is_some(), "-S/--ipcidr"),
            (t.role.is_some(), "-R/--role"),
            (t.pillar.is_some(), "-I/--pillar"),
            (t.nodegroup.is_some(), "-N/--nodegroup"),
            (t.compound.is_some(), "-C/--compound"),
            (self.timeout.is_some(), "-t/--timeout"),
            (self.no_wait, "--async"),
            (self.batch.is_some(), "-b/--batch"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

pub(crate) fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(secs),
        _ => Err("expected a number of seconds greater than 0, like 10 or 0.5".to_string()),
    }
}

/// The job the command line asks for.
pub fn request(run: &RunArgs) -> anyhow::Result<RunRequest> {
    let (target, tgt_type, words) = match run.target.chosen() {
        Some((target, tgt_type)) => (target, tgt_type, &run.words[..]),
        None => match run.words.split_first() {
            Some((target, words)) => (target.clone(), TargetType::Glob, words),
            None => bail!("expected a target and a function, like: drover '*' test.ping"),
        },
    };
    let Some((fun, words)) = words.split_first() else {
        bail!("expected a function after the target '{target}', like test.ping");
    };
    if !is_function(fun) {
        bail!("expected a function like test.ping after the target '{target}', got '{fun}'");
    }
    let (args, kwargs) = words::split(words);
    Ok(RunRequest {
        target,
        tgt_type,
        fun: fun.clone(),
        args,
        kwargs,
        timeout_secs: run.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS),
        batch: run.batch,
        wait: !run.no_wait,
        words: Vec::new(),
    })
}

/// `module.function`: identifiers joined by dots.
fn is_function(word: &str) -> bool {
    let mut parts = word.split('.');
    parts.clone().count() >= 2 && parts.all(words::is_identifier)
}

pub fn run(run: RunArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    if run.words.is_empty() && run.target.chosen().is_none() {
        // Nothing to run (`drover`, or `drover --dir D` with $DROVER_DIR set): the help.
        let help = Cli::command().render_help().to_string();
        ctx.stderr.write_all(help.as_bytes()).context("cannot write to stderr")?;
        return Ok(Exit::Usage);
    }
    let req = request(&run)?;
    let resp = ctx.client()?.run(&req).map_err(api_error)?;
    if resp.targeted.is_empty() {
        bail!("no minions matched the target '{}'", req.target);
    }
    if !req.wait {
        let jid = json!({"jid": resp.jid});
        let text = match ctx.out() {
            Out::Json => output::json(&jid)?,
            Out::Yaml => output::yaml(&jid)?,
            Out::Text | Out::Highstate => format!("jid: {}\n", resp.jid),
        };
        ctx.print(&text)?;
        return Ok(Exit::Success);
    }
    ctx.print(&output::returns(ctx.out_for(&req.fun), &resp.returns, ctx.color, ctx.state_output)?)?;
    let missing = Missing::of(&resp);
    if !missing.timed_out.is_empty() {
        ctx.note(&format!("timed out: {}", missing.timed_out.join(", ")))?;
    }
    if !missing.not_connected.is_empty() {
        ctx.note(&format!("not connected: {}", missing.not_connected.join(", ")))?;
    }
    if !resp.not_run.is_empty() {
        ctx.note(&format!("not run (the job was killed first): {}", resp.not_run.join(", ")))?;
    }
    Ok(status(&resp))
}

/// Targeted minions without a return, sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Connected minions that did not return in time.
    pub timed_out: Vec<String>,
    /// Minions that never got the job.
    pub not_connected: Vec<String>,
}

impl Missing {
    /// The master's two lists, less any minion that did return; a targeted minion with no
    /// return that neither list names counts as timed out.
    pub fn of(resp: &RunResponse) -> Self {
        let no_return = |id: &&String| !resp.returns.contains_key(*id);
        let not_connected: BTreeSet<&String> = resp.not_connected.iter().filter(no_return).collect();
        let timed_out: BTreeSet<&String> = resp
            .timed_out
            .iter()
            .chain(&resp.targeted)
            .filter(no_return)
            .filter(|id| !not_connected.contains(*id) && !resp.not_run.contains(*id))
            .collect();
        Missing {
            timed_out: timed_out.into_iter().cloned().collect(),
            not_connected: not_connected.into_iter().cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.timed_out.is_empty() && self.not_connected.is_empty()
    }
}

/// The exit status of a job run with `wait`.
pub fn status(resp: &RunResponse) -> Exit {
    if resp.targeted.is_empty() {
        Exit::Usage
    } else if !Missing::of(resp).is_empty() {
        Exit::NoReturn
    } else if resp.returns.values().any(|r| !r.success) {
        Exit::Failed
    } else {
        Exit::Success
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use api::MinionReturn;
    use clap::Parser;
    use serde_json::{Value, json};

    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let mut cli = Cli::try_parse_from(std::iter::once("drover").chain(argv.iter().copied()))?;
        cli.lift_trailing_options()?;
        Ok(cli)
    }

    fn request_of(argv: &[&str]) -> anyhow::Result<RunRequest> {
        let cli = parse(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(cli.command.is_none(), "{argv:?} parsed as a subcommand");
        request(&cli.run)
    }

    #[test]
    fn command_lines_build_requests() {
        use TargetType::*;
        // argv → target, tgt_type, fun, args, kwargs
        type Case<'a> = (&'a [&'a str], &'a str, TargetType, &'a str, Value, Value);
        let table: &[Case] = &[
            (&["web-*", "test.ping"], "web-*", Glob, "test.ping", json!([]), json!({})),
            (&["*", "cmd.run", "ls", "-la"], "*", Glob, "cmd.run", json!(["ls", "-la"]), json!({})),
            (
                &["-G", "os:debian", "cmd.run", "uptime"],
                "os:debian",
                Grain,
                "cmd.run",
                json!(["uptime"]),
                json!({}),
            ),
            (&["-L", "key", "test.ping"], "key", List, "test.ping", json!([]), json!({})),
            (&["-L", "jobs", "test.ping"], "jobs", List, "test.ping", json!([]), json!({})),
            (&["-Lweb-1,db-1", "test.ping"], "web-1,db-1", List, "test.ping", json!([]), json!({})),
            (&["--list=a,b", "test.ping"], "a,b", List, "test.ping", json!([]), json!({})),
            (
                &["-E", "web-[0-9]+", "grains.get", "os"],
                "web-[0-9]+",
                Pcre,
                "grains.get",
                json!(["os"]),
                json!({}),
            ),
            (&["-R", "worker", "daemon.status"], "R@worker", Compound, "daemon.status", json!([]), json!({})),
            (&["-N", "webs", "test.ping"], "N@webs", Compound, "test.ping", json!([]), json!({})),
            (&["--nodegroup=webs", "test.ping"], "N@webs", Compound, "test.ping", json!([]), json!({})),
            (
                &["-I", "app:env:prod", "test.ping"],
                "I@app:env:prod",
                Compound,
                "test.ping",
                json!([]),
                json!({}),
            ),
            (
                &["-P", "os:(debian|ubuntu)", "test.ping"],
                "os:(debian|ubuntu)",
                GrainPcre,
                "test.ping",
                json!([]),
                json!({}),
            ),
            (&["-S", "10.1.0.0/16", "test.ping"], "10.1.0.0/16", Ipcidr, "test.ping", json!([]), json!({})),
            (
                &["-C", "G@os:debian and web-* or L@a,b", "test.ping"],
                "G@os:debian and web-* or L@a,b",
                Compound,
                "test.ping",
                json!([]),
                json!({}),
            ),
            (
                &["-L", "web-1,db-1", "state.apply", "test=true"],
                "web-1,db-1",
                List,
                "state.apply",
                json!([]),
                json!({"test": true}),
            ),
            (
                &["*", "cmd.run", "uptime", "shell=true", "timeout=5"],
                "*",
                Glob,
                "cmd.run",
                json!(["uptime"]),
                json!({"shell": true, "timeout": 5}),
            ),
            // after the target, drover's long options are taken out (as Salt does); short
            // options and other words are the function's
            (
                &["*", "cmd.run", "ls", "--color=auto", "-t", "5", "--out", "json", "key"],
                "*",
                Glob,
                "cmd.run",
                json!(["ls", "--color=auto", "-t", "5", "key"]),
                json!({}),
            ),
            // `--` ends that: everything after it goes to the function as typed
            (&["*", "test.echo", "--", "x"], "*", Glob, "test.echo", json!(["x"]), json!({})),
            (
                &["*", "test.echo", "--", "--out", "json"],
                "*",
                Glob,
                "test.echo",
                json!(["--out", "json"]),
                json!({}),
            ),
            (&["--", "-odd", "test.ping"], "-odd", Glob, "test.ping", json!([]), json!({})),
            (&["*", "test.echo", "5", "a b"], "*", Glob, "test.echo", json!(["5", "a b"]), json!({})),
            (&["*", "state.highstate"], "*", Glob, "state.highstate", json!([]), json!({})),
        ];
        for (argv, target, tgt_type, fun, args, kwargs) in table {
            let req = request_of(argv).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
            assert_eq!(req.target, *target, "{argv:?}");
            assert_eq!(req.tgt_type, *tgt_type, "{argv:?}");
            assert_eq!(req.fun, *fun, "{argv:?}");
            assert_eq!(Value::from(req.args), *args, "{argv:?}");
            assert_eq!(serde_json::to_value(&req.kwargs).unwrap(), *kwargs, "{argv:?}");
        }
    }

    #[test]
    fn trailing_options_are_checked_and_set_the_output() {
        let cli = parse(&["*", "test.ping", "--out", "json"]).unwrap();
        assert_eq!(cli.out, Some(Out::Json));
        // Salt's names for the formats, and its flags, before or after the function
        for (name, out) in [("nested", Out::Text), ("txt", Out::Text), ("raw", Out::Json)] {
            assert_eq!(parse(&["--out", name, "*", "test.ping"]).unwrap().out, Some(out), "{name}");
            assert_eq!(parse(&["*", "test.ping", "--out", name]).unwrap().out, Some(out), "{name}");
        }
        let cli = parse(&["*", "cmd.run", "ls", "--out-file", "/tmp/o", "--no-color", "--static"]).unwrap();
        assert_eq!(cli.out_file.as_deref(), Some(std::path::Path::new("/tmp/o")));
        assert!(cli.no_color && cli.static_output);
        assert_eq!(cli.run.words, ["*", "cmd.run", "ls"]);
        let cli = parse(&["--no-color", "--out-file=/tmp/o", "*", "test.ping"]).unwrap();
        assert!(cli.no_color && cli.out_file.is_some());
        // after `--`, they are the function's
        let cli = parse(&["*", "cmd.run", "--", "x", "--no-color"]).unwrap();
        assert!(!cli.no_color);
        for bad in [
            &["*", "test.ping", "--out"][..],
            &["*", "test.ping", "--out", "xml"],
            &["*", "test.ping", "--timeout", "-1"],
            &["*", "test.ping", "--batch=0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_set_timeout_batch_and_wait() {
        let table: &[(&[&str], f64, Option<Batch>, bool)] = &[
            (&["*", "test.ping"], 10.0, None, true),
            (&["-t", "30", "-b", "10%", "*", "test.ping"], 30.0, Some(Batch::Percent(10)), true),
            (&["--async", "--batch", "3", "*", "test.ping"], 10.0, Some(Batch::Count(3)), false),
            (&["--timeout=0.5", "-b5", "-L", "a", "test.ping"], 0.5, Some(Batch::Count(5)), true),
            (&["--out", "json", "--dir", "/tmp/x", "-t", "2", "*", "test.ping"], 2.0, None, true),
            (
                &["*", "test.ping", "--timeout", "3", "--async", "--batch=2"],
                3.0,
                Some(Batch::Count(2)),
                false,
            ),
            (&["*", "test.ping", "--out=yaml", "--timeout=1.5"], 1.5, None, true),
            (&["--batch-size", "4", "*", "test.ping"], 10.0, Some(Batch::Count(4)), true),
            (&["*", "test.ping", "--batch-size=25%"], 10.0, Some(Batch::Percent(25)), true),
        ];
        for (argv, timeout, batch, wait) in table {
            let req = request_of(argv).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
            assert_eq!((req.timeout_secs, req.batch, req.wait), (*timeout, *batch, *wait), "{argv:?}");
        }
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let table: &[(&[&str], &str)] = &[
            (&[], "Usage:"),
            (&["web"], "expected a function after the target 'web', like test.ping"),
            (&["-L", "a"], "expected a function after the target 'a', like test.ping"),
            (&["--async"], "expected a target and a function"),
            (&["*", "key"], "expected a function like test.ping after the target '*', got 'key'"),
            (&["web", "list"], "got 'list'"),
            (&["*", "test."], "got 'test.'"),
            (&["*", "-la"], "got '-la'"),
            (&["-L", "a", "-G", "b", "test.ping"], "cannot be used with"),
            (&["-b", "0", "*", "test.ping"], "invalid batch"),
            (&["-b", "101%", "*", "test.ping"], "invalid batch"),
            (&["-t", "0", "*", "test.ping"], "greater than 0"),
            (&["-t", "nan", "*", "test.ping"], "greater than 0"),
            (&["-t", "x", "*", "test.ping"], "greater than 0"),
            (&["--out", "xml", "*", "test.ping"], "invalid value 'xml'"),
            (&["-x", "*", "test.ping"], "unexpected argument '-x'"),
        ];
        for (argv, want) in table {
            let err = request_of(argv).expect_err(&format!("{argv:?} should fail"));
            assert!(format!("{err:#}").contains(want), "{argv:?}: {err:#}");
        }
    }

    fn ret(success: bool) -> MinionReturn {
        MinionReturn {
            success,
            retcode: i32::from(!success),
            ret: json!(success),
            started_ms: 0,
            finished_ms: 0,
        }
    }

    fn response(
        targeted: &[&str],
        ok: &[&str],
        failed: &[&str],
        timed_out: &[&str],
        absent: &[&str],
    ) -> RunResponse {
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut returns = BTreeMap::new();
        returns.extend(ok.iter().map(|id| (id.to_string(), ret(true))));
        returns.extend(failed.iter().map(|id| (id.to_string(), ret(false))));
        RunResponse {
            jid: "j".to_string(),
            targeted: ids(targeted),
            returns,
            timed_out: ids(timed_out),
            not_connected: ids(absent),
            not_run: Vec::new(),
        }
    }

    #[test]
    fn exit_statuses() {
        let table = [
            (response(&[], &[], &[], &[], &[]), Exit::Usage),
            (response(&["a", "b"], &["a", "b"], &[], &[], &[]), Exit::Success),
            (response(&["a", "b"], &["a"], &["b"], &[], &[]), Exit::Failed),
            (response(&["a", "b"], &["a"], &[], &["b"], &[]), Exit::NoReturn),
            (response(&["a", "b"], &["a"], &[], &[], &["b"]), Exit::NoReturn),
            // a missing return outranks a failure
            (response(&["a", "b", "c"], &[], &["a"], &["b"], &[]), Exit::NoReturn),
            // targeted, no return, named by neither list: still missing
            (response(&["a", "b"], &["a"], &[], &[], &[]), Exit::NoReturn),
        ];
        for (resp, want) in table {
            assert_eq!(status(&resp), want, "{resp:?}");
        }
    }

    #[test]
    fn missing_minions_are_split() {
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let table = [
            (response(&["a"], &["a"], &[], &[], &[]), Missing::default()),
            (
                response(&["a", "b", "c", "d"], &["a"], &[], &["c"], &["b"]),
                Missing { timed_out: ids(&["c", "d"]), not_connected: ids(&["b"]) },
            ),
            // a minion the master lists but that did return is not missing
            (response(&["a", "b"], &["a", "b"], &[], &["a"], &["b"]), Missing::default()),
        ];
        for (resp, want) in table {
            assert_eq!(Missing::of(&resp), want, "{resp:?}");
        }
    }
}
