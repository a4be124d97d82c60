//! `grains.*`: the facts this minion reported in its hello.

use serde_json::Value;

use super::{Call, Outcome, arity, known_kwargs};

/// `grains.items` → every grain.
pub fn items(call: &Call) -> Outcome {
    let usage = "grains.items";
    if let Err(o) = arity(call, 0..=0, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    Outcome::ok(Value::Object(call.grains.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
}

/// `grains.get <key> [default]` → the grain's value; `a:b` looks inside maps (and lists, by
/// index). An absent grain gives the default, or "" as in Salt.
pub fn get(call: &Call) -> Outcome {
    let usage = "grains.get <key>[:<subkey>...] [default]";
    if let Err(o) = arity(call, 1..=2, usage).and_then(|()| known_kwargs(call, &["default"], usage)) {
        return o;
    }
    let Some(key) = super::scalar_string(&call.args[0]) else {
        return Outcome::fail(format!(
            "grains.get expects a grain name, got {}; usage: {usage}",
            call.args[0]
        ));
    };
    let default =
        call.args.get(1).or(call.kwargs.get("default")).cloned().unwrap_or(Value::String(String::new()));
    let mut parts = key.split(':');
    let first = parts.next().unwrap_or_default();
    let mut value = call.grains.get(first);
    for part in parts {
        value = value.and_then(|v| match v {
            Value::Object(map) => map.get(part),
            Value::Array(list) => part.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        });
    }
    Outcome::ok(value.cloned().unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use serde_json::json;

    #[tokio::test]
    async fn items_and_get() {
        let all = run("grains.items", vec![], &[]).await.ret;
        assert_eq!(all["os"], json!("Debian"));
        let cases = [
            (vec![json!("os")], json!("Debian")),
            (vec![json!("deep:a:b")], json!([10, 20])),
            (vec![json!("deep:a:b:1")], json!(20)),
            (vec![json!("deep:a:b:9")], json!("")),
            (vec![json!("os:x")], json!("")),
            (vec![json!("missing")], json!("")),
            (vec![json!("missing"), json!("dflt")], json!("dflt")),
        ];
        for (args, want) in cases {
            let o = run("grains.get", args.clone(), &[]).await;
            assert!(o.success);
            assert_eq!(o.ret, want, "{args:?}");
        }
        assert_eq!(run("grains.get", vec![json!("missing")], &[("default", json!(0))]).await.ret, json!(0));
    }
}
