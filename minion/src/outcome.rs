//! What a function returned ([`Outcome`]): a leaf module, so that the converger and the
//! job table, which hand outcomes back, need nothing of `functions`.

use serde_json::Value;

/// What a function returned: the `success`, `retcode` and `ret` of a job return.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub retcode: i32,
    pub ret: Value,
}

impl Outcome {
    pub fn ok(ret: impl Into<Value>) -> Self {
        Self { success: true, retcode: 0, ret: ret.into() }
    }

    /// A failure with retcode 1 and a message as its return.
    pub fn fail(message: impl Into<String>) -> Self {
        Self { success: false, retcode: 1, ret: Value::String(message.into()) }
    }
}
