//! A fleet operation's progress, as it streams from the master: on a terminal, a bar of the
//! slots ready (or of a rollout's slots) with each step printed above it; elsewhere (a
//! pipe, a log, a test), one plain line per step on stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use api::client::{ClientError, Lines};
use api::fleet::{FleetEvent, FleetFailure, FleetLine, FleetOutcome};
use indicatif::{ProgressBar, ProgressStyle};

/// How an operation ended.
pub enum Ended {
    Done(FleetOutcome),
    Failed(FleetFailure),
}

/// Reads the operation's lines to its end, showing progress on `stderr`.
pub fn follow(lines: Lines<FleetLine>, stderr: &mut dyn Write) -> Result<Ended, ClientError> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut say = |line: String| match &bar {
        Some(bar) => bar.println(line),
        None => {
            let _ = writeln!(stderr, "{line}");
        }
    };
    let mut ended = None;
    for line in lines {
        match line? {
            FleetLine::Event(event) => {
                if let (Some(bar), FleetEvent::Ready { ready, total }) = (&bar, &event) {
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ready")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_length(*total as u64);
                    bar.set_position(*ready as u64);
                    bar.set_message("slots");
                    continue;
                }
                if let Some(text) = describe(&event) {
                    say(text);
                }
                if let (Some(bar), FleetEvent::Slot { slot, step, .. }) = (&bar, &event) {
                    bar.set_message(format!("{slot}: {step}"));
                }
            }
            FleetLine::Done(outcome) => ended = Some(Ended::Done(outcome)),
            FleetLine::Error(failure) => ended = Some(Ended::Failed(failure)),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    ended.ok_or_else(|| ClientError::BadAnswer("the answer ended without an outcome".into()))
}

/// One line for an event, or none for those the bar shows.
pub fn describe(event: &FleetEvent) -> Option<String> {
    Some(match event {
        FleetEvent::Plan { create, replace, remove, change, keep } => {
            if create.is_empty() && replace.is_empty() && remove.is_empty() && change.is_empty() {
                format!("nothing to change ({} slots as wanted)", keep.len())
            } else {
                let mut parts = Vec::new();
                for (n, what) in
                    [(create.len(), "to create"), (replace.len(), "to replace"), (remove.len(), "to remove")]
                {
                    if n > 0 {
                        parts.push(format!("{n} {what}"));
                    }
                }
                if !change.is_empty() {
                    parts.push(format!("{} to roll to another version", change.len()));
                }
                if !keep.is_empty() {
                    parts.push(format!("{} as wanted", keep.len()));
                }
                format!("plan: {}", parts.join(", "))
            }
        }
        FleetEvent::Slot { slot, step, detail } => match detail {
            Some(d) => format!("  {slot}: {step} ({})", d.lines().next().unwrap_or("")),
            None => format!("  {slot}: {step}"),
        },
        FleetEvent::Batch { rollout, role, batch, slots, to } => {
            format!("rollout {rollout}: batch {batch} of {role} to {to}: {}", slots.join(", "))
        }
        FleetEvent::Revert { rollout, slots } => {
            format!("rollout {rollout}: putting back {}", slots.join(", "))
        }
        FleetEvent::Rollout { rollout, state, reason } => match reason {
            Some(r) => format!("rollout {rollout}: {state}: {r}"),
            None => format!("rollout {rollout}: {state}"),
        },
        FleetEvent::Ready { ready, total } => format!("{ready}/{total} slots ready"),
        FleetEvent::Note { message } => message.clone(),
    })
}

/// The outcome for people: the rollout's end, the slots not ready and why, the notes.
pub fn outcome_text(o: &FleetOutcome) -> String {
    let mut out = String::new();
    for note in &o.notes {
        out.push_str(note);
        out.push('\n');
    }
    if let Some(r) = &o.rollout {
        let done = r.slots.iter().filter(|s| s.state == "done").count();
        out.push_str(&format!(
            "rollout {}: {} ({done}/{} slots at their new version",
            r.id,
            r.state,
            r.slots.len()
        ));
        out.push_str(&format!(", {} batches)\n", r.batches));
        if let Some(reason) = &r.reason {
            out.push_str(&format!("  {}\n", reason.replace('\n', "\n  ")));
        }
    }
    if !o.killed.is_empty() {
        out.push_str(&format!("killed {} containers: {}\n", o.killed.len(), o.killed.join(", ")));
    }
    if !o.ready.is_empty() || !o.not_ready.is_empty() {
        let total = o.ready.len() + o.not_ready.len();
        out.push_str(&format!("{}/{total} slots ready\n", o.ready.len()));
    }
    for (slot, why) in &o.not_ready {
        out.push_str(&format!("  not ready: {slot}: {}\n", why.replace('\n', "\n    ")));
    }
    out
}
