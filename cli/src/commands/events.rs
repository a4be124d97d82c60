//! `drover events [--since SEQ] [--no-follow] [--tag GLOB]`: the master's event stream, one
//! line per event as it happens (`--out json`: one JSON object per line, for scripts).

use anyhow::Context as _;
use api::Event;
use chrono::DateTime;
use clap::Args;
use nix::sys::signal::{SigSet, Signal};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out, Paint};

const EXAMPLES: &str = "\
Each event prints as one line: its time (UTC), tag, minion (- when it comes from the
master) and data (compact JSON). --out json prints each event as one JSON object per line
(seq, time_ms, tag, minion, data); --out yaml as one YAML document per event.

Ctrl-C ends the stream (exit status 0). Without --no-follow the stream also ends when the
master closes it (it stops), which is said on stderr.

--tag keeps the events whose tag matches a glob (`*` matches `/` too), filtered by the
master. Every job has its events: drover/job/<jid>/new when it is published,
drover/job/<jid>/ret/<minion> for each return, drover/job/<jid>/kill when it is killed.

Examples:
  drover events
  drover events --tag 'drover/job/*'             # jobs as they are published and return
  drover events --since 0 --no-follow          # every stored event, then exit
  drover events --out json | jq -c 'select(.tag | endswith(\"/crashed\"))'";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct EventsArgs {
    /// Start after the event with this sequence number (0: from the first stored event)
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,

    /// Print the events stored so far and exit, instead of waiting for new ones
    #[arg(long)]
    pub no_follow: bool,

    /// Only events whose tag matches this glob (`drover/job/*/ret/*`)
    #[arg(long, value_name = "GLOB")]
    pub tag: Option<String>,
}

pub fn run(args: EventsArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let follow = !args.no_follow;
    exit_on_interrupt()?;
    let events = ctx.client()?.events_tagged(args.since, follow, args.tag.as_deref()).map_err(api_error)?;
    for event in events {
        let event = event.map_err(api_error)?;
        let text = match ctx.out() {
            Out::Json => format!("{}\n", serde_json::to_string(&event).context("cannot print as json")?),
            Out::Yaml => format!("---\n{}", output::yaml(&event)?),
            Out::Text | Out::Highstate => line(&event, ctx.color),
        };
        ctx.print(&text)?;
        // Lines go out as they come, whatever stdout is (a pipe to jq, a file).
        ctx.stdout.flush().context("cannot write to stdout")?;
    }
    if follow {
        ctx.note("the master closed the event stream")?;
    }
    Ok(Exit::Success)
}

/// Ctrl-C (SIGINT) and SIGTERM end the stream with exit status 0. They are blocked in this
/// thread, so in every thread started after it, and one thread waits for them: no signal
/// handler, no unsafe code. Lines already printed are complete (each is flushed whole).
fn exit_on_interrupt() -> anyhow::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("cannot block SIGINT and SIGTERM")?;
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            if signals.wait().is_ok() {
                std::process::exit(Exit::Success.code().into());
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// `time  tag  minion  data`: time in UTC with milliseconds, `-` for an event of the master,
/// data as compact JSON.
pub fn line(event: &Event, color: bool) -> String {
    let minion = event.minion.as_deref().unwrap_or("-");
    format!("{}  {}  {minion}  {}\n", time(event.time_ms), Paint::Blue.apply(&event.tag, color), event.data)
}

/// `2025-01-01T12:00:00.123Z`
pub fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(seq: u64, time_ms: u64, tag: &str, minion: Option<&str>, data: serde_json::Value) -> Event {
        Event { seq, time_ms, tag: tag.to_string(), minion: minion.map(String::from), data }
    }

    #[test]
    fn events_print_one_line_each() {
        let table = [
            (
                event(
                    7,
                    1_735_732_800_123,
                    "drover/minion/web-1/daemon/worker/crashed",
                    Some("web-1"),
                    json!({"exit": 1, "signal": null}),
                ),
                "2025-01-01T12:00:00.123Z  drover/minion/web-1/daemon/worker/crashed  web-1  {\"exit\":1,\"signal\":null}\n",
            ),
            (
                event(8, 0, "drover/key/accept", None, json!({"id": "web-2"})),
                "1970-01-01T00:00:00.000Z  drover/key/accept  -  {\"id\":\"web-2\"}\n",
            ),
            (
                event(9, 1_735_732_801_000, "drover/minion/connected", Some("db-1"), json!(null)),
                "2025-01-01T12:00:01.000Z  drover/minion/connected  db-1  null\n",
            ),
            (
                event(10, 1_735_732_801_000, "x", Some("m"), json!("two\nlines")),
                "2025-01-01T12:00:01.000Z  x  m  \"two\\nlines\"\n",
            ),
        ];
        for (event, want) in table {
            assert_eq!(line(&event, false), want, "{event:?}");
        }
        let colored = line(&event(1, 0, "drover/key/accept", None, json!({})), true);
        assert_eq!(colored, "1970-01-01T00:00:00.000Z  \x1b[34mdrover/key/accept\x1b[0m  -  {}\n");
    }

    #[test]
    fn times_out_of_range_print_as_numbers() {
        assert_eq!(time(u64::MAX), u64::MAX.to_string());
    }
}
