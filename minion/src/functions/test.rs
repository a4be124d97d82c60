//! `test.*`: functions that check a minion answers, without touching the system.

use serde_json::Value;

use super::{BoxFuture, Call, Outcome, arity, known_kwargs, seconds};

/// `test.ping` → true.
pub fn ping(call: &Call) -> Outcome {
    let usage = "test.ping";
    if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    Outcome::ok(true)
}

/// `test.version` → the version of this drover-minion (what its hello reports).
pub fn version(call: &Call) -> Outcome {
    let usage = "test.version";
    if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    Outcome::ok(env!("CARGO_PKG_VERSION"))
}

/// `test.echo <text>` → the text, as given.
pub fn echo(call: &Call) -> Outcome {
    let usage = "test.echo <text> (quote text that has spaces)";
    if let Err(o) = arity(call, 1..=1, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    Outcome::ok(call.args[0].clone())
}

/// `test.sleep <secs>` → sleeps (fractions allowed), then true.
pub fn sleep(call: Call) -> BoxFuture {
    Box::pin(async move {
        let usage = "test.sleep <seconds>";
        if let Err(o) = arity(&call, 1..=1, usage).and_then(|()| known_kwargs(&call, &[], usage)) {
            return o;
        }
        let Some(duration) = seconds(&call.args[0]) else {
            return Outcome::fail(format!(
                "test.sleep expects a number of seconds (0 or more), got {}; usage: {usage}",
                call.args[0]
            ));
        };
        tokio::time::sleep(duration).await;
        Outcome::ok(Value::Bool(true))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use serde_json::json;

    #[tokio::test]
    async fn ping_echo_sleep() {
        assert_eq!(run("test.ping", vec![], &[]).await.ret, json!(true));
        let o = run("test.echo", vec![json!("hello world")], &[]).await;
        assert!(o.success);
        assert_eq!(o.ret, json!("hello world"));
        assert_eq!(run("test.echo", vec![json!(3)], &[]).await.ret, json!(3));
        let o = run("test.sleep", vec![json!(0.01)], &[]).await;
        assert_eq!((o.success, o.retcode, o.ret), (true, 0, json!(true)));
        assert!(run("test.sleep", vec![json!("0")], &[]).await.success);
        let o = run("test.version", vec![], &[]).await;
        assert_eq!((o.success, o.ret), (true, json!(env!("CARGO_PKG_VERSION"))));
        assert!(!run("test.version", vec![json!(1)], &[]).await.success);
    }
}
