//! `sys.*`: what this minion can do.

use serde_json::{Map, Value};

use super::{Call, Outcome, arity, known_kwargs, names, scalar_string};

/// `sys.doc [function-or-module...]` → `{name: description}` for every function, or for
/// the functions named and those of the modules named (`sys.doc test file.read`). The text
/// is each function's own, from its registry entry. A name that is neither fails.
pub fn doc(call: &Call) -> Outcome {
    let usage = "sys.doc [FUNCTION-OR-MODULE...]";
    if let Err(o) = known_kwargs(call, &[], usage) {
        return o;
    }
    let mut wanted = Vec::new();
    for arg in &call.args {
        match scalar_string(arg) {
            Some(w) => wanted.push(w.trim_end_matches('.').to_string()),
            None => return Outcome::fail(format!("sys.doc expects function or module names, got {arg}")),
        }
    }
    let in_module = |name: &str, m: &str| name.split_once('.').is_some_and(|(module, _)| module == m);
    if let Some(unknown) =
        wanted.iter().find(|w| !names().iter().any(|n| *n == w.as_str() || in_module(n, w)))
    {
        return Outcome::fail(format!(
            "'{unknown}' is neither a function nor a module of this minion: run sys.list_functions to see them"
        ));
    }
    let docs: Map<String, Value> = names()
        .into_iter()
        .filter(|n| wanted.is_empty() || wanted.iter().any(|w| n == w || in_module(n, w)))
        .map(|n| (n.to_string(), Value::String(super::doc(n).unwrap_or_default().to_string())))
        .collect();
    Outcome::ok(Value::Object(docs))
}

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
        assert_eq!(test, json!(["test.echo", "test.ping", "test.sleep", "test.version"]));
    }

    #[tokio::test]
    async fn doc_reads_each_functions_own_description() {
        let all = run("sys.doc", vec![], &[]).await;
        assert!(all.success);
        let all = all.ret.as_object().unwrap().clone();
        // every function has a description, and no two share one
        let listed = run("sys.list_functions", vec![], &[]).await.ret;
        assert_eq!(all.keys().map(|k| json!(k)).collect::<Vec<_>>(), *listed.as_array().unwrap());
        let mut texts: Vec<&str> = all.values().map(|v| v.as_str().unwrap()).collect();
        assert!(texts.iter().all(|t| t.len() > 20), "{texts:?}");
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), all.len());

        let some = run("sys.doc", vec![json!("test"), json!("file.read")], &[]).await.ret;
        let keys: Vec<&String> = some.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["file.read", "test.echo", "test.ping", "test.sleep", "test.version"]);
        assert!(some["file.read"].as_str().unwrap().starts_with("file.read PATH"));

        let o = run("sys.doc", vec![json!("nope.x")], &[]).await;
        assert!(!o.success);
        assert!(o.ret.as_str().unwrap().contains("'nope.x' is neither a function nor a module"));
    }
}
