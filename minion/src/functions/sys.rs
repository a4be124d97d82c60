//! `sys.*`: what this minion can do.

use serde_json::Value;

use super::{Call, Outcome, arity, known_kwargs, names, scalar_string};

/// `sys.list_functions [module...]` → the sorted names of every function (or of the named
/// modules' functions: `sys.list_functions test cmd`).
pub fn list_functions(call: &Call) -> Outcome {
    let usage = "sys.list_functions [module...]";
    if let Err(o) = arity(call, 0..=usize::MAX, usage).and_then(|()| known_kwargs(call, &[], usage)) {
        return o;
    }
    let mut modules = Vec::new();
    for arg in &call.args {
        match scalar_string(arg) {
            Some(m) => modules.push(m.trim_end_matches('.').to_string()),
            None => return Outcome::fail(format!("sys.list_functions expects module names, got {arg}")),
        }
    }
    let listed = names()
        .into_iter()
        .filter(|name| {
            modules.is_empty()
                || modules
                    .iter()
                    .any(|m| name.split_once('.').is_some_and(|(module, _)| module == m) || name == m)
        })
        .map(|name| Value::String(name.into()))
        .collect();
    Outcome::ok(Value::Array(listed))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use serde_json::json;

    #[tokio::test]
    async fn lists_sorted_names() {
        let all = run("sys.list_functions", vec![], &[]).await.ret;
        let all: Vec<&str> = all.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(
            all.contains(&"test.ping") && all.contains(&"cmd.run") && all.contains(&"sys.list_functions")
        );
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let test = run("sys.list_functions", vec![json!("test")], &[]).await.ret;
        assert_eq!(test, json!(["test.echo", "test.ping", "test.sleep"]));
    }
}
