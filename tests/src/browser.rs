//! Headless Chromium (Debian's `chromium`, which `scripts/deps.sh` installs), driven over
//! the Chrome DevTools Protocol, for the dashboard's tests: open a page, evaluate script in
//! it, wait for a condition, type, press Enter, take a screenshot.
//!
//! Why a small client of our own rather than `chromiumoxide` or `headless_chrome`: those
//! compile bindings generated for the whole protocol (minutes on two cores) and speak it over
//! a WebSocket on a TCP port; these tests use six methods. Chromium's `--remote-debugging-pipe`
//! speaks the same JSON messages, each ended by a NUL byte, on its file descriptors 3 (in)
//! and 4 (out): no port to pick or race for, nothing on the network, and the browser cannot
//! outlive the pipe. `sh` puts our pipes on those descriptors (`3<&0 4>&1`), so no unsafe
//! `pre_exec` is needed.
//!
//! [`Browser::start`] fails the test when Chromium is missing under
//! `DROVER_REQUIRE_DOCKER=1` (CI), and says it skipped otherwise.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The window the pages are laid out in (the screenshots' width).
pub const WIDTH: u32 = 1440;
const HEIGHT: u32 = 900;

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next_id: u64,
    /// The page's session: every call but the browser's own goes to it.
    session: String,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

/// `chromium` on the PATH (or `$DROVER_CHROMIUM`).
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DROVER_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|p| p.is_file())
}

impl Browser {
    /// Starts Chromium with a blank page; None (the test skips) when it is not installed
    /// and `DROVER_REQUIRE_DOCKER` is not `1`.
    pub fn start() -> Option<Browser> {
        let Some(chromium) = find() else {
            assert!(
                std::env::var("DROVER_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "DROVER_REQUIRE_DOCKER=1 but chromium is not installed: run scripts/deps.sh"
            );
            eprintln!("skipped: chromium is not installed (scripts/deps.sh installs it)");
            return None;
        };
        Some(Self::launch(&chromium))
    }

    fn launch(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("temp dir");
        let log = profile.path().join("chromium.log");
        let stderr = std::fs::File::create(&log).expect("chromium's log");
        let mut child = Command::new("sh")
            .arg("-c")
            // our stdin becomes its fd 3 and our stdout its fd 4; its own output goes to the log
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--remote-debugging-pipe",
                // as root (CI), Chromium has no sandbox of its own to set up
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                &format!("--window-size={WIDTH},{HEIGHT}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let to = child.stdin.take().expect("piped stdin");
        let from = child.stdout.take().expect("piped stdout");
        // one thread reads the messages, so that a call can wait with a timeout
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&message)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut browser =
            Browser { child, to, from: rx, next_id: 0, session: String::new(), log, _profile: profile };
        let target = browser.send(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_string();
        let attached =
            browser.send(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("a session id").to_string();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// What Chromium printed, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one message and waits for its answer (events in between are dropped).
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes).and_then(|()| self.to.flush()) {
            panic!("chromium went away ({e}) before {method}; its log:\n{}", self.log());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(answer) if answer["id"] == json!(id) => {
                    if let Some(error) = answer.get("error") {
                        panic!("{method}: {error}");
                    }
                    return answer["result"].clone();
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in {CALL_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium went away during {method}; its log:\n{}", self.log())
                }
            }
        }
    }

    /// A protocol call on the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Opens `url` in the page.
    pub fn open(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url}));
        assert!(answer.get("errorText").is_none(), "open {url}: {answer}");
    }

    /// The value of `expression` in the page (a promise is awaited); panics with the page's
    /// exception if it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = answer.get("exceptionDetails") {
            panic!("{expression}: {}", e["exception"]["description"].as_str().unwrap_or(&e.to_string()));
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it is truthy; returns its value. Panics
    /// after `limit`, saying `what` and the last value.
    pub fn wait_for(&mut self, limit: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(expression);
            let truthy = !matches!(&v, Value::Null | Value::Bool(false))
                && v != json!(0)
                && v != json!("")
                && v != json!([]);
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what} (last: {v})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` into the element `selector` selects, replacing what it holds, as a
    /// user's keyboard would (an `input` event, not a script setting its value).
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); e.select(); return true; }})()",
            json!(selector)
        ));
        assert_eq!(found, json!(true), "no element {selector} to type into");
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Presses Enter in the focused element.
    pub fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
            );
        }
    }

    /// A PNG of the whole page (as tall as its content) at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let height = metrics["cssContentSize"]["height"].as_f64().unwrap_or(f64::from(HEIGHT)).ceil();
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("the screenshots' folder");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.to.write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/test-artifacts/<what>/`: where tests keep what a person should look at.
pub fn artifacts(what: &str) -> PathBuf {
    let target = crate::bin_dir().parent().expect("the target folder").to_path_buf();
    target.join("test-artifacts").join(what)
}
