//! `drover dashboard [--open]`: the link to the master's web dashboard (the fleet, rollouts,
//! heals, a command box, minions, events: docs/dashboard.md), with the API token from
//! `DIR/api.json` in its fragment (`http://127.0.0.1:PORT/#token=...`). A browser never
//! sends the fragment to a server: the page reads the token from it and calls the API with
//! it. The master is not asked anything.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use api::ApiInfo;
use api::client::read_api_info;
use clap::Args;

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;

const EXAMPLES: &str = "\
The link carries the master's API token, which can run any command on every minion: treat
it like a password, and do not paste it into chats or tickets. The page takes the token out
of the address bar once it has read it and keeps it in that browser tab only.

--open hands the link to xdg-open, on its command line: other users of this host can read
it in the process list while the browser starts. On a shared host, copy the printed link
instead. If no browser can be opened, the link is still printed and the exit status is 0.

The token changes each time the master starts: run this again after a restart.

Examples:
  drover dashboard
  drover dashboard --open
  drover --dir /srv/drover dashboard";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct DashboardArgs {
    /// Also open the link in a browser (xdg-open; a failure is only noted)
    #[arg(long)]
    pub open: bool,
}

pub fn run(args: DashboardArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let info = read_api_info(&ctx.dir).map_err(api_error)?;
    let link = link(&info);
    ctx.print(&format!("{link}\n"))?;
    if args.open
        && let Err(why) = open(&link)
    {
        ctx.note(&format!("could not open a browser ({why}); open the link above"))?;
    }
    Ok(Exit::Success)
}

/// `URL/#token=TOKEN`, the token percent-encoded (it is hex, so it never changes).
pub fn link(info: &ApiInfo) -> String {
    let mut token = String::with_capacity(info.token.len());
    for b in info.token.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            token.push(char::from(b));
        } else {
            token.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/#token={token}", info.url.trim_end_matches('/'))
}

/// Starts `xdg-open LINK` and waits a little for it: a launcher that fails says so at once,
/// one that still runs after that is taken to be the browser itself, and left running.
fn open(link: &str) -> Result<(), String> {
    let mut child = Command::new("xdg-open")
        .arg(link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("xdg-open: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("xdg-open: {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("xdg-open: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_parses() {
        use clap::Parser;

        use crate::cli::Cli;
        use crate::commands::Command;
        let parse =
            |argv: &[&str]| Cli::try_parse_from(std::iter::once("drover").chain(argv.iter().copied()));
        assert!(matches!(parse(&["dashboard"]).unwrap().command, Some(Command::Dashboard(a)) if !a.open));
        assert!(
            matches!(parse(&["dashboard", "--open"]).unwrap().command, Some(Command::Dashboard(a)) if a.open)
        );
        assert!(parse(&["dashboard", "extra"]).is_err());
        // `-L dashboard` targets a minion so named
        let cli = parse(&["-L", "dashboard", "test.ping"]).unwrap();
        assert_eq!(cli.run.target.list.as_deref(), Some("dashboard"));
    }

    #[test]
    fn links_carry_the_token_in_the_fragment() {
        let info = |url: &str, token: &str| ApiInfo { url: url.into(), token: token.into() };
        let table = [
            (info("http://127.0.0.1:24611", "ab12"), "http://127.0.0.1:24611/#token=ab12"),
            (info("http://127.0.0.1:24611/", "ab12"), "http://127.0.0.1:24611/#token=ab12"),
            (info("http://[::1]:9", "a b&c=d#e"), "http://[::1]:9/#token=a%20b%26c%3Dd%23e"),
        ];
        for (info, want) in table {
            assert_eq!(link(&info), want);
        }
    }
}
