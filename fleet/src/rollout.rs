//! A rollout: the rules of a rolling version change, computed without I/O.
//!
//! A rollout swaps slots from one version to another, role by role, batch by batch, as each
//! role's update policy says. The controller asks [`Rollout::next_step`] what to do, does it
//! (a swap is: the slot's container replaced by one of the other version, in the same slot,
//! then a wait until its minion is connected, converged and healthy for `min_healthy`) and
//! reports the outcome per slot with [`Rollout::swapped`] / [`Rollout::reverted`]. The
//! rollout is kept (serialized) after every step, so a master that restarts resumes it
//! ([`Rollout::resume`]); a swap or revert is idempotent (a slot already at its version is
//! only waited for), which is what makes resuming safe.
//!
//! Failures: a batch's failed slots count against the role's `max_failure_ratio`; within it
//! they are reverted and the rollout goes on; beyond it `on_failure` decides: `rollback`
//! reverts every slot the rollout changed (newest first) and ends "rolled back"; `pause`
//! reverts the failed slots and ends "paused" (`drover up` or `upgrade` continue it,
//! `rollout undo` reverts it); `continue` reverts the failed slots and goes on.

use serde::{Deserialize, Serialize};

use render::fleet::{OnFailure, Order, UpdatePolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    Running,
    /// Every slot is at its new version (some may have failed within the allowed ratio).
    Done,
    /// Failures passed the ratio and every changed slot went back.
    RolledBack,
    /// Failures passed the ratio; the failed slots went back; the rest waits.
    Paused,
    /// The master stopped while it ran and found it so at start; it resumed it.
    Interrupted,
}

impl RolloutState {
    /// As the API and events spell it: `running`, `rolled-back`...
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }

    pub fn ended(self) -> bool {
        !matches!(self, RolloutState::Running | RolloutState::Interrupted)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotState {
    /// Not touched yet.
    Pending,
    /// Being swapped to `to` (or waited for).
    Swapping,
    /// At `to`, ready.
    Done,
    /// Its swap failed; to be reverted.
    Failed,
    /// Being put back to `from`.
    Reverting,
    /// Back at `from`.
    Reverted,
    /// Putting it back failed too: it needs a look (`drover ps` shows it).
    RevertFailed,
}

/// One slot's part in a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlotStep {
    pub slot: String,
    pub role: String,
    pub from: String,
    pub to: String,
    pub state: SlotState,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One role's slots and how to roll them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub role: String,
    pub policy: UpdatePolicy,
    /// Failed swaps so far.
    pub failures: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: u64,
    pub state: RolloutState,
    pub parts: Vec<Part>,
    /// In swap order.
    pub slots: Vec<SlotStep>,
    /// Batches swapped so far, over all roles.
    pub batches: u32,
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Why it rolled back or paused.
    #[serde(default)]
    pub reason: Option<String>,
    /// The rollout this one undoes.
    #[serde(default)]
    pub undoes: Option<u64>,
    /// Slots to revert before anything else, in order (decided on a failure, emptied by
    /// `reverted`).
    #[serde(default)]
    revert: Vec<String>,
    /// The state to end in once `revert` is done (rolled back or paused).
    #[serde(default)]
    end_after_revert: Option<RolloutState>,
}

/// What the controller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Swap these slots (one batch of one role) to their `to` version, in `order`, and wait
    /// for each to be ready; then call [`Rollout::swapped`].
    Swap { role: String, order: Order, slots: Vec<String> },
    /// Put these slots back to their `from` version and wait for them; then call
    /// [`Rollout::reverted`].
    Revert { slots: Vec<String> },
    /// The rollout ended in this state.
    Done(RolloutState),
}

/// A slot's outcome: `Err(reason)` when it failed.
pub type Outcome = (String, Result<(), String>);

impl Rollout {
    /// A rollout of `slots` (each with its role, from and to), with one policy per role, in
    /// the order the roles are given.
    pub fn new(id: u64, parts: Vec<(String, UpdatePolicy)>, slots: Vec<SlotStep>, now_ms: u64) -> Rollout {
        let mut ordered = Vec::with_capacity(slots.len());
        for (role, _) in &parts {
            ordered.extend(slots.iter().filter(|s| &s.role == role).cloned());
        }
        Rollout {
            id,
            state: RolloutState::Running,
            parts: parts.into_iter().map(|(role, policy)| Part { role, policy, failures: 0 }).collect(),
            slots: ordered,
            batches: 0,
            started_ms: now_ms,
            finished_ms: None,
            reason: None,
            undoes: None,
            revert: Vec::new(),
            end_after_revert: None,
        }
    }

    /// The rollout that puts back what this one changed: every slot it left at `to` goes to
    /// `from`, with the same policies.
    pub fn undo(&self, id: u64, now_ms: u64) -> Rollout {
        let slots = self
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Done)
            .map(|s| SlotStep {
                slot: s.slot.clone(),
                role: s.role.clone(),
                from: s.to.clone(),
                to: s.from.clone(),
                state: SlotState::Pending,
                reason: None,
            })
            .collect();
        let parts = self.parts.iter().map(|p| (p.role.clone(), p.policy)).collect();
        let mut undo = Rollout::new(id, parts, slots, now_ms);
        undo.undoes = Some(self.id);
        undo
    }

    pub fn slot(&self, name: &str) -> Option<&SlotStep> {
        self.slots.iter().find(|s| s.slot == name)
    }

    fn slot_mut(&mut self, name: &str) -> Option<&mut SlotStep> {
        self.slots.iter_mut().find(|s| s.slot == name)
    }

    /// What to do next. Marks the slots it hands out as swapping or reverting.
    pub fn next_step(&mut self) -> Step {
        if self.state.ended() {
            return Step::Done(self.state);
        }
        // a revert decided on a failure (or interrupted by a restart) comes first, in the
        // order decided: failed slots, then the others newest first
        if !self.revert.is_empty() {
            let slots = self.revert.clone();
            for name in &slots {
                if let Some(s) = self.slot_mut(name) {
                    s.state = SlotState::Reverting;
                }
            }
            return Step::Revert { slots };
        }
        if let Some(end) = self.end_after_revert.take() {
            return self.finish(end);
        }
        // a batch interrupted by a restart is handed out again (swaps are idempotent)
        let swapping: Vec<&SlotStep> = self.slots.iter().filter(|s| s.state == SlotState::Swapping).collect();
        if let Some(first) = swapping.first() {
            let role = first.role.clone();
            let slots = swapping.iter().filter(|s| s.role == role).map(|s| s.slot.clone()).collect();
            return Step::Swap { order: self.policy(&role).order, role, slots };
        }
        let Some(role) = self.slots.iter().find(|s| s.state == SlotState::Pending).map(|s| s.role.clone())
        else {
            return self.finish(RolloutState::Done);
        };
        let policy = *self.policy(&role);
        let total = self.slots.iter().filter(|s| s.role == role).count() as u32;
        let size = policy.batch.slots(total) as usize;
        let batch: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.role == role && s.state == SlotState::Pending)
            .take(size)
            .map(|s| s.slot.clone())
            .collect();
        for name in &batch {
            if let Some(s) = self.slot_mut(name) {
                s.state = SlotState::Swapping;
            }
        }
        self.batches += 1;
        Step::Swap { role, order: policy.order, slots: batch }
    }

    fn policy(&self, role: &str) -> &UpdatePolicy {
        &self.parts.iter().find(|p| p.role == role).expect("every slot's role has a part").policy
    }

    fn finish(&mut self, state: RolloutState) -> Step {
        self.state = state;
        self.finished_ms = Some(wire::msg::now_ms());
        Step::Done(state)
    }

    /// Records how a [`Step::Swap`] went, and decides what failures mean.
    pub fn swapped(&mut self, outcomes: Vec<Outcome>) {
        let mut failed_now = Vec::new();
        let mut role = None;
        for (name, outcome) in outcomes {
            let Some(s) = self.slot_mut(&name) else { continue };
            role = Some(s.role.clone());
            match outcome {
                Ok(()) => s.state = SlotState::Done,
                Err(reason) => {
                    s.state = SlotState::Failed;
                    s.reason = Some(reason);
                    failed_now.push(name);
                }
            }
        }
        let Some(role) = role else { return };
        if failed_now.is_empty() {
            return;
        }
        let total = self.slots.iter().filter(|s| s.role == role).count().max(1) as f64;
        let part = self.parts.iter_mut().find(|p| p.role == role).expect("a part per role");
        part.failures += failed_now.len() as u32;
        let over = f64::from(part.failures) / total > part.policy.max_failure_ratio;
        let first = self.slot(&failed_now[0]).expect("just set");
        let reason = format!(
            "{} failed to become ready at {}: {}",
            first.slot,
            first.to,
            first.reason.clone().unwrap_or_default()
        );
        let on_failure = self.policy(&role).on_failure;
        match (over, on_failure) {
            (true, OnFailure::Rollback) => {
                // failed slots first, then every slot done, newest first
                let mut back = failed_now;
                back.extend(
                    self.slots.iter().rev().filter(|s| s.state == SlotState::Done).map(|s| s.slot.clone()),
                );
                self.revert = back;
                self.end_after_revert = Some(RolloutState::RolledBack);
                self.reason = Some(reason);
            }
            (true, OnFailure::Pause) => {
                self.revert = failed_now;
                self.end_after_revert = Some(RolloutState::Paused);
                self.reason = Some(reason);
            }
            (_, _) => self.revert = failed_now,
        }
    }

    /// Records how a [`Step::Revert`] went.
    pub fn reverted(&mut self, outcomes: Vec<Outcome>) {
        for (name, outcome) in outcomes {
            self.revert.retain(|s| s != &name);
            let Some(s) = self.slot_mut(&name) else { continue };
            match outcome {
                Ok(()) => s.state = SlotState::Reverted,
                Err(reason) => {
                    s.state = SlotState::RevertFailed;
                    s.reason = Some(format!(
                        "{}; going back to {} failed too: {reason}",
                        s.reason.clone().unwrap_or_default(),
                        s.from
                    ));
                }
            }
        }
    }

    /// A rollout found running at the master's start: marked interrupted; `next_step` hands out
    /// the batch or revert it was in again, then goes on.
    pub fn resume(&mut self) {
        if !self.state.ended() {
            self.state = RolloutState::Interrupted;
        }
    }

    /// As the API shows it.
    pub fn summary(&self) -> api::fleet::RolloutSummary {
        let name = |s: SlotState| {
            serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        };
        api::fleet::RolloutSummary {
            id: self.id,
            state: self.state.name(),
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            batches: self.batches,
            reason: self.reason.clone(),
            undoes: self.undoes,
            slots: self
                .slots
                .iter()
                .map(|s| api::fleet::RolloutSlot {
                    slot: s.slot.clone(),
                    role: s.role.clone(),
                    from: s.from.clone(),
                    to: s.to.clone(),
                    state: name(s.state),
                    reason: s.reason.clone(),
                })
                .collect(),
        }
    }

    /// How many slots are at `to` (done), failed or reverted, and left.
    pub fn counts(&self) -> (usize, usize, usize) {
        let done = self.slots.iter().filter(|s| s.state == SlotState::Done).count();
        let failed = self
            .slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Failed | SlotState::Reverted | SlotState::RevertFailed))
            .count();
        (done, failed, self.slots.len() - done - failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use render::fleet::BatchSize;

    fn policy(batch: BatchSize, ratio: f64, on_failure: OnFailure) -> UpdatePolicy {
        UpdatePolicy { batch, max_failure_ratio: ratio, on_failure, ..UpdatePolicy::default() }
    }

    fn slots(role: &str, n: u32) -> Vec<SlotStep> {
        (1..=n)
            .map(|i| SlotStep {
                slot: format!("f-{role}-{i}"),
                role: role.into(),
                from: "1".into(),
                to: "2".into(),
                state: SlotState::Pending,
                reason: None,
            })
            .collect()
    }

    fn swap_slots(step: Step) -> Vec<String> {
        match step {
            Step::Swap { slots, .. } => slots,
            other => panic!("expected a swap, got {other:?}"),
        }
    }

    fn ok(slots: &[String]) -> Vec<Outcome> {
        slots.iter().map(|s| (s.clone(), Ok(()))).collect()
    }

    #[test]
    fn batches_follow_the_policy_role_by_role() {
        let mut r = Rollout::new(
            1,
            vec![
                ("web".into(), policy(BatchSize::Count(2), 0.0, OnFailure::Rollback)),
                ("db".into(), policy(BatchSize::Percent(50), 0.0, OnFailure::Rollback)),
            ],
            [slots("db", 2), slots("web", 5)].concat(),
            0,
        );
        let mut seen = Vec::new();
        loop {
            match r.next_step() {
                Step::Swap { slots, .. } => {
                    r.swapped(ok(&slots));
                    seen.push(slots.join(","));
                }
                Step::Done(state) => {
                    assert_eq!(state, RolloutState::Done);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, ["f-web-1,f-web-2", "f-web-3,f-web-4", "f-web-5", "f-db-1", "f-db-2"]);
        assert_eq!(r.batches, 5);
        assert_eq!(r.counts(), (7, 0, 0));
    }

    #[test]
    fn the_order_comes_from_the_policy() {
        let mut p = policy(BatchSize::Count(1), 0.0, OnFailure::Rollback);
        p.order = Order::StartFirst;
        let mut r = Rollout::new(1, vec![("web".into(), p)], slots("web", 1), 0);
        assert_eq!(
            r.next_step(),
            Step::Swap { role: "web".into(), order: Order::StartFirst, slots: vec!["f-web-1".into()] }
        );
    }

    #[test]
    fn a_failure_beyond_the_ratio_rolls_back_every_changed_slot_newest_first() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Rollback))],
            slots("web", 4),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(ok(&b1));
        let b2 = swap_slots(r.next_step());
        r.swapped(ok(&b2));
        let b3 = swap_slots(r.next_step());
        r.swapped(vec![(b3[0].clone(), Err("daemon web: exited with code 3".into()))]);
        assert_eq!(
            r.next_step(),
            Step::Revert { slots: vec!["f-web-3".into(), "f-web-2".into(), "f-web-1".into()] }
        );
        r.reverted(ok(&["f-web-3".into(), "f-web-2".into(), "f-web-1".into()]));
        assert_eq!(r.next_step(), Step::Done(RolloutState::RolledBack));
        assert!(
            r.reason.as_deref().unwrap().contains("f-web-3 failed to become ready at 2: daemon web: exited")
        );
        // the fourth slot was never touched
        assert_eq!(r.slot("f-web-4").unwrap().state, SlotState::Pending);
        assert_eq!(r.next_step(), Step::Done(RolloutState::RolledBack));
    }

    #[test]
    fn the_first_batch_failing_touches_no_other_slot() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Rollback))],
            slots("web", 3),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(vec![(b1[0].clone(), Err("boom".into()))]);
        assert_eq!(r.next_step(), Step::Revert { slots: vec!["f-web-1".into()] });
        r.reverted(ok(&b1));
        assert_eq!(r.next_step(), Step::Done(RolloutState::RolledBack));
        let states: Vec<_> = r.slots.iter().map(|s| s.state).collect();
        assert_eq!(states, [SlotState::Reverted, SlotState::Pending, SlotState::Pending]);
    }

    #[test]
    fn failures_within_the_ratio_are_reverted_and_the_rollout_goes_on() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(2), 0.25, OnFailure::Rollback))],
            slots("web", 4),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(vec![(b1[0].clone(), Ok(())), (b1[1].clone(), Err("slow".into()))]);
        assert_eq!(r.next_step(), Step::Revert { slots: vec![b1[1].clone()] });
        r.reverted(ok(&b1[1..]));
        let b2 = swap_slots(r.next_step());
        r.swapped(ok(&b2));
        assert_eq!(r.next_step(), Step::Done(RolloutState::Done));
        assert_eq!(r.counts(), (3, 1, 0));
        // a second failure would pass 25%: rolled back
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(2), 0.25, OnFailure::Rollback))],
            slots("web", 4),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(vec![(b1[0].clone(), Err("a".into())), (b1[1].clone(), Err("b".into()))]);
        assert!(matches!(r.next_step(), Step::Revert { .. }));
    }

    #[test]
    fn pause_reverts_the_failed_slots_and_stops() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Pause))],
            slots("web", 3),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(ok(&b1));
        let b2 = swap_slots(r.next_step());
        r.swapped(vec![(b2[0].clone(), Err("x".into()))]);
        assert_eq!(r.next_step(), Step::Revert { slots: b2.clone() });
        r.reverted(ok(&b2));
        assert_eq!(r.next_step(), Step::Done(RolloutState::Paused));
        let states: Vec<_> = r.slots.iter().map(|s| s.state).collect();
        assert_eq!(states, [SlotState::Done, SlotState::Reverted, SlotState::Pending]);
        // undo puts the done slot back
        let undo = r.undo(2, 0);
        assert_eq!(undo.slots.len(), 1);
        assert_eq!((undo.slots[0].from.as_str(), undo.slots[0].to.as_str()), ("2", "1"));
        assert_eq!(undo.undoes, Some(1));
    }

    #[test]
    fn continue_reverts_the_failed_slots_and_goes_on() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Continue))],
            slots("web", 3),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(vec![(b1[0].clone(), Err("x".into()))]);
        assert_eq!(r.next_step(), Step::Revert { slots: b1.clone() });
        r.reverted(ok(&b1));
        for _ in 0..2 {
            let b = swap_slots(r.next_step());
            r.swapped(ok(&b));
        }
        assert_eq!(r.next_step(), Step::Done(RolloutState::Done));
        assert_eq!(r.counts(), (2, 1, 0));
    }

    #[test]
    fn a_revert_that_fails_is_kept_with_both_reasons() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Rollback))],
            slots("web", 2),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(vec![(b1[0].clone(), Err("new is broken".into()))]);
        let _ = r.next_step();
        r.reverted(vec![(b1[0].clone(), Err("old is broken too".into()))]);
        assert_eq!(r.next_step(), Step::Done(RolloutState::RolledBack));
        let s = r.slot("f-web-1").unwrap();
        assert_eq!(s.state, SlotState::RevertFailed);
        assert_eq!(s.reason.as_deref(), Some("new is broken; going back to 1 failed too: old is broken too"));
    }

    #[test]
    fn a_rollout_resumed_after_a_restart_hands_out_its_batch_again() {
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(2), 0.0, OnFailure::Rollback))],
            slots("web", 4),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(ok(&b1));
        let b2 = swap_slots(r.next_step());
        // the master dies here; its record says the second batch was swapping
        let mut saved: Rollout = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        saved.resume();
        assert_eq!(saved.state, RolloutState::Interrupted);
        assert!(!saved.state.ended());
        assert_eq!(swap_slots(saved.next_step()), b2);
        saved.swapped(ok(&b2));
        assert_eq!(saved.next_step(), Step::Done(RolloutState::Done));

        // interrupted while reverting: the revert comes again
        let mut r = Rollout::new(
            1,
            vec![("web".into(), policy(BatchSize::Count(1), 0.0, OnFailure::Rollback))],
            slots("web", 2),
            0,
        );
        let b1 = swap_slots(r.next_step());
        r.swapped(ok(&b1));
        let b2 = swap_slots(r.next_step());
        r.swapped(vec![(b2[0].clone(), Err("x".into()))]);
        let first = r.next_step();
        let mut saved: Rollout = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        saved.resume();
        assert_eq!(saved.next_step(), first);
        saved.reverted(ok(&["f-web-2".into(), "f-web-1".into()]));
        assert_eq!(saved.next_step(), Step::Done(RolloutState::RolledBack));
    }
}
