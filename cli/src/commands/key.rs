//! `drover key list|accept|reject|delete`: minion keys, Salt-key style.

use api::{KeyAction, KeyActionRequest, KeyActionResponse, KeyList, KeyState};
use clap::{Args, Subcommand};

use crate::commands::{Ctx, api_error};
use crate::exit::Exit;
use crate::output::{self, Out, Paint};

const EXAMPLES: &str = "\
Examples:
  drover key list
  drover key accept web-1
  drover key accept --all
  drover key reject db-7
  drover key delete --all
  drover key list --out json";

#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the master's fingerprint and the accepted, unaccepted (pending) and rejected keys
    List,
    /// Accept a pending key, so its minion gets jobs
    Accept(Select),
    /// Reject a key: its minion gets no jobs
    Reject(Select),
    /// Delete a key: its minion must be accepted again
    Delete(Select),
}

/// One minion id, or `--all`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Select {
    /// The minion's id
    pub id: Option<String>,

    /// Every key the action applies to
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: KeyArgs, ctx: &mut Ctx) -> anyhow::Result<Exit> {
    let client = ctx.client()?;
    let (action, select) = match args.action {
        KeyCommand::List => {
            let keys = client.keys().map_err(api_error)?;
            let text = match ctx.out() {
                Out::Json => output::json(&keys)?,
                Out::Yaml => output::yaml(&keys)?,
                Out::Text | Out::Highstate => list_text(&keys, ctx.color),
            };
            ctx.print(&text)?;
            return Ok(Exit::Success);
        }
        KeyCommand::Accept(select) => (KeyAction::Accept, select),
        KeyCommand::Reject(select) => (KeyAction::Reject, select),
        KeyCommand::Delete(select) => (KeyAction::Delete, select),
    };
    let req = KeyActionRequest { action, id: select.id, all: select.all };
    let resp = client.key_action(&req).map_err(api_error)?;
    let text = match ctx.out() {
        Out::Json => output::json(&resp)?,
        Out::Yaml => output::yaml(&resp)?,
        Out::Text | Out::Highstate => action_text(&req, &resp),
    };
    ctx.print(&text)?;
    Ok(Exit::Success)
}

/// `salt-key -L`'s layout: the master's fingerprint, then one section per state.
pub fn list_text(keys: &KeyList, color: bool) -> String {
    let width = keys.keys.iter().map(|k| k.id.chars().count()).max().unwrap_or(0);
    let mut out = format!("Master fingerprint: {}\n", keys.master_fingerprint);
    let sections = [
        (KeyState::Accepted, "Accepted Keys:", Paint::Green),
        (KeyState::Pending, "Unaccepted Keys:", Paint::Red),
        (KeyState::Rejected, "Rejected Keys:", Paint::Blue),
    ];
    for (state, title, paint) in sections {
        out.push_str(title);
        out.push('\n');
        let mut entries: Vec<_> = keys.keys.iter().filter(|k| k.state == state).collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        for key in entries {
            let id = paint.apply(&format!("{:<width$}", key.id), color);
            out.push_str(&format!("{id}  {}\n", key.fingerprint));
        }
    }
    out
}

/// One `accepted: id` line per changed key, then, for `--all`, how many; or a line saying
/// nothing changed.
pub fn action_text(req: &KeyActionRequest, resp: &KeyActionResponse) -> String {
    let (verb, done) = match req.action {
        KeyAction::Accept => ("accept", "accepted"),
        KeyAction::Reject => ("reject", "rejected"),
        KeyAction::Delete => ("delete", "deleted"),
    };
    if resp.changed.is_empty() {
        return match &req.id {
            Some(id) if !req.all => format!("{id}: nothing to {verb}\n"),
            _ => format!("no keys to {verb}\n"),
        };
    }
    let mut text: String = resp.changed.iter().map(|id| format!("{done}: {id}\n")).collect();
    if req.all {
        let n = resp.changed.len();
        text.push_str(&format!("{done} {n} key{}\n", if n == 1 { "" } else { "s" }));
    }
    text
}

#[cfg(test)]
mod tests {
    use api::KeyEntry;

    use super::*;

    #[test]
    fn key_list_text() {
        let key = |id: &str, state| KeyEntry { id: id.to_string(), fingerprint: format!("fp-{id}"), state };
        let keys = KeyList {
            master_fingerprint: "ab:cd".to_string(),
            keys: vec![
                key("web-2", KeyState::Accepted),
                key("db-10", KeyState::Pending),
                key("web-1", KeyState::Accepted),
            ],
        };
        let want = "\
Master fingerprint: ab:cd
Accepted Keys:
web-1  fp-web-1
web-2  fp-web-2
Unaccepted Keys:
db-10  fp-db-10
Rejected Keys:
";
        assert_eq!(list_text(&keys, false), want);
        let empty = KeyList { master_fingerprint: "ab:cd".to_string(), keys: vec![] };
        assert_eq!(
            list_text(&empty, false),
            "Master fingerprint: ab:cd\nAccepted Keys:\nUnaccepted Keys:\nRejected Keys:\n"
        );
    }

    #[test]
    fn key_action_text() {
        let req = |action, id: Option<&str>| KeyActionRequest {
            action,
            id: id.map(String::from),
            all: id.is_none(),
        };
        let changed =
            |ids: &[&str]| KeyActionResponse { changed: ids.iter().map(|s| s.to_string()).collect() };
        let table = [
            (req(KeyAction::Accept, Some("m1")), changed(&["m1"]), "accepted: m1\n"),
            (
                req(KeyAction::Accept, None),
                changed(&["m1", "m2"]),
                "accepted: m1\naccepted: m2\naccepted 2 keys\n",
            ),
            (req(KeyAction::Delete, None), changed(&["m1"]), "deleted: m1\ndeleted 1 key\n"),
            (req(KeyAction::Reject, None), changed(&[]), "no keys to reject\n"),
            (req(KeyAction::Delete, Some("m1")), changed(&[]), "m1: nothing to delete\n"),
            (req(KeyAction::Delete, Some("m1")), changed(&["m1"]), "deleted: m1\n"),
        ];
        for (req, resp, want) in table {
            assert_eq!(action_text(&req, &resp), want, "{req:?}");
        }
    }
}
