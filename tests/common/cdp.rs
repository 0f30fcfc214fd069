//! Headless Chromium driven over the DevTools protocol (a WebSocket): enough to open a page, fill a field and
//! press a button as a user would, and read what the page then shows.

use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// One page in a headless Chromium of its own, killed on drop.
pub struct Page {
    _browser: Child,
    _profile: tempfile::TempDir,
    ws: WebSocketStream<TcpStream>,
    session: String,
    next_id: u64,
}

impl Page {
    /// Starts `chromium` and opens `url` in a new page.
    pub async fn open(chromium: &Path, url: &str) -> Page {
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs");
        let endpoint = devtools_endpoint(&mut browser).await;
        let addr = endpoint.trim_start_matches("ws://").split('/').next().unwrap().to_string();
        let tcp = TcpStream::connect(addr).await.expect("the DevTools port");
        let builder = ClientBuilder::new().uri(&endpoint).expect("a ws:// address");
        let (ws, _) = builder.connect_on(tcp).await.expect("the DevTools WebSocket");
        let mut page = Page { _browser: browser, _profile: profile, ws, session: String::new(), next_id: 0 };
        let target = page.call("Target.createTarget", json!({"url": url})).await;
        let attach = json!({"targetId": target["targetId"], "flatten": true});
        page.session = page.call("Target.attachToTarget", attach).await["sessionId"].as_str().unwrap().to_string();
        page
    }

    /// Sends a DevTools command (to the page once attached) and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(message.to_string())).await.expect("DevTools takes the command");
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 60 s"))
                .expect("the DevTools socket is open")
                .expect("a DevTools frame");
            let Some(text) = frame.as_text() else { continue };
            let reply: Value = serde_json::from_str(text).expect("DevTools speaks JSON");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page and returns its value (`null` while the page is between documents).
    pub async fn eval(&mut self, script: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({"expression": script, "returnByValue": true})).await;
        result["result"]["value"].clone()
    }

    /// Waits until `script` is true in the page (the page loads, navigates and polls on its own time).
    pub async fn until(&mut self, script: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if self.eval(script).await == json!(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// The browser's `ws://` address, which it prints on stderr once it listens.
async fn devtools_endpoint(browser: &mut Child) -> String {
    let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("chromium's stderr") {
            if let Some(at) = line.find("ws://") {
                return line[at..].trim().to_string();
            }
        }
        panic!("chromium exited before it listened for DevTools");
    });
    let endpoint = found.await.expect("chromium listens for DevTools within 60 s");
    // Keep draining stderr, so a chatty browser never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    endpoint
}
