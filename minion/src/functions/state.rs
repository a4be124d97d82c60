//! `state.apply [ids] [test=true]`, `state.highstate [test=true]` and `role.list`: they ask
//! the minion's one [`Converger`], which every [`Call`] carries (`Call::services`).

use super::{BoxFuture, Call, Outcome, arity, boolean, known_kwargs, scalar_string};
use crate::converge::{ApplyRequest, Converger};

/// The converger `call` carries, or the failure saying there is none.
pub(super) fn converger(call: &Call) -> Result<Converger, Outcome> {
    call.services
        .converger
        .clone()
        .ok_or_else(|| Outcome::fail("the state engine is not running on this minion"))
}

const APPLY_USAGE: &str = "state.apply [STATE-FILE-OR-ID...] [test=true]";

pub fn apply(call: Call) -> BoxFuture {
    Box::pin(async move {
        let usage = if call.fun == "state.highstate" { "state.highstate [test=true]" } else { APPLY_USAGE };
        let known: &[&str] = if call.fun == "state.apply" { &["test", "assignment"] } else { &["test"] };
        if let Err(o) = known_kwargs(&call, known, usage) {
            return o;
        }
        if call.fun == "state.highstate"
            && let Err(o) = arity(&call, 0..=0, usage)
        {
            return o;
        }
        let test = match call.kwargs.get("test").map(boolean) {
            None => false,
            Some(Some(t)) => t,
            Some(None) => return Outcome::fail(format!("test= takes true or false; usage: {usage}")),
        };
        let mut only = Vec::new();
        for a in &call.args {
            match scalar_string(a) {
                // Salt also accepts a comma list: state.apply a.b,c.d
                Some(s) => {
                    only.extend(s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from))
                }
                None => return Outcome::fail(format!("state names are strings; usage: {usage}")),
            }
        }
        // `drover roles apply --test`: the master sends the assignment of a commit to dry-run
        let trial = match call.kwargs.get("assignment") {
            None => None,
            Some(v) => match serde_json::from_value::<wire::Assignment>(v.clone()) {
                Ok(a) if test => Some(Box::new(a)),
                Ok(_) => return Outcome::fail("assignment= is only ever dry-run: give test=true with it"),
                Err(_) => {
                    return Outcome::fail(
                        "assignment= takes the assignment 'drover roles apply --test' sends, not a value given by hand",
                    );
                }
            },
        };
        match converger(&call) {
            Ok(c) => c.apply(ApplyRequest { only, test, trial }).await,
            Err(o) => o,
        }
    })
}

pub fn roles(call: Call) -> BoxFuture {
    Box::pin(async move {
        if let Err(o) = arity(&call, 0..=0, "role.list").and_then(|()| known_kwargs(&call, &[], "role.list"))
        {
            return o;
        }
        match converger(&call) {
            Ok(c) => Outcome::ok(c.roles().await),
            Err(o) => o,
        }
    })
}
