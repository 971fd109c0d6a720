//! The test harness: a running batchd per test, and helpers that speak its API.
//!
//! The suite runs on SQLite by default, and on PostgreSQL with `BATCHD_TEST_STORE=postgres`
//! and `BATCHD_TEST_DATABASE_URL` (see `scripts/test.sh`): each data dir then stands for a fresh
//! database of its own, the same one for every server a test starts on that data dir.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchd::ServeOptions;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const KEY_A: &str = "sk-test-alpha-workspace-a";
pub const KEY_B: &str = "sk-test-bravo-workspace-b";
/// The `anthropic-version` a request carries unless its test says otherwise.
pub const VERSION: &str = "2023-06-01";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub key: &'static str,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A server with two workspaces (`ws-a` for [`KEY_A`], `ws-b` for [`KEY_B`]) and the instant mock.
pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut ServeOptions)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = start_in(dir.path().to_path_buf(), tweak).await;
    app._dir = Some(dir);
    app
}

use batchd_store_postgres::testkit::{database_for, database_of as database_url};

/// Whether this run of the suite is on PostgreSQL (`BATCHD_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    batchd_store_postgres::testkit::selected()
}

/// For tests that only make sense on one engine: true (after saying so) when they must skip.
pub fn skip_on_postgres(test: &str, why: &str) -> bool {
    if on_postgres() {
        println!("skipped {test} under PostgreSQL: {why}");
    }
    on_postgres()
}

/// The storage flags of the `batchd` command for a data dir: `--data-dir`, plus
/// `--database-url` on PostgreSQL.
pub fn storage_args(data_dir: &Path) -> Vec<OsString> {
    let mut args = vec!["--data-dir".into(), data_dir.into()];
    if let Some(url) = database_url(data_dir) {
        args.extend(["--database-url".into(), url.into()]);
    }
    args
}

/// Opens the storage a stopped server used, as an operator would (either engine).
pub async fn open_storage(data_dir: &Path) -> batchd::storage::Storage {
    let url = database_url(data_dir);
    batchd::storage::Storage::open(batchd::storage::Location {
        data_dir,
        database_url: url.as_deref(),
    })
    .await
    .expect("storage must be free once stop() returned")
}

/// Starts a server on an existing data dir (for restart tests).
pub async fn start_in(data_dir: PathBuf, tweak: impl FnOnce(&mut ServeOptions)) -> TestApp {
    let mut options = ServeOptions::new(data_dir.clone());
    options.database_url = database_for(&data_dir).await;
    options.api_keys = vec![format!("{KEY_A}@ws-a"), format!("{KEY_B}@ws-b")];
    options.shutdown_grace = Duration::from_secs(5);
    tweak(&mut options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    // With a certificate (the test fixtures), the server is reached over https trusting their CA.
    let (scheme, client) = match options.tls_cert {
        Some(_) => ("https", crate::tls::client(false)),
        None => (
            "http",
            reqwest::Client::builder().no_proxy().build().unwrap(),
        ),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(batchd::serve(options, listener, async move {
        let _ = stopped.await;
    }));
    let app = TestApp {
        base: format!("{scheme}://{addr}"),
        client,
        key: KEY_A,
        data_dir,
        stop: Some(stop),
        handle: Some(handle),
        _dir: None,
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    /// The listener answers at once, but the store opens in the server task: wait until it is
    /// ready, so a test never races the server's start-up (migrations) with its own actions.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && resp.status() == 200
            {
                return;
            }
            let finished = self.handle.as_ref().is_some_and(|h| h.is_finished());
            assert!(
                !finished && Instant::now() < deadline,
                "server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Graceful stop; returns the data dir's owner so a restart can reuse it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
        self._dir.take()
    }

    pub fn as_key(&self, key: &'static str) -> TestApp {
        TestApp {
            base: self.base.clone(),
            client: self.client.clone(),
            key,
            data_dir: self.data_dir.clone(),
            stop: None,
            handle: None,
            _dir: None,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.base, path))
            .header("x-api-key", self.key)
            .header("anthropic-version", VERSION)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates a batch and returns its JSON; panics unless the answer is 200.
    pub async fn create(&self, requests: Vec<Value>) -> Value {
        let resp = self
            .post("/v1/messages/batches", &json!({ "requests": requests }))
            .await;
        assert_eq!(
            resp.status(),
            200,
            "create failed: {}",
            resp.text().await.unwrap_or_default()
        );
        resp.json().await.unwrap()
    }

    /// Creates a batch of `n` valid requests `r0..r{n-1}`.
    pub async fn create_n(&self, n: usize) -> Value {
        self.create((0..n).map(|i| request(&format!("r{i}"))).collect())
            .await
    }

    pub async fn batch(&self, id: &str) -> Value {
        let resp = self.get(&format!("/v1/messages/batches/{id}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Polls until the batch ends; panics after `timeout`.
    pub async fn wait_ended(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let batch = self.batch(id).await;
            if batch["processing_status"] == "ended" {
                return batch;
            }
            assert!(
                Instant::now() < deadline,
                "batch {id} did not end in {timeout:?}: {batch}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates a batch of `requests` sent with these headers besides the key (`anthropic-version`
    /// among them), waits up to `timeout` for it to end, and returns its result lines.
    pub async fn run_with(
        &self,
        headers: &[(&str, &str)],
        requests: &[Value],
        timeout: Duration,
    ) -> Vec<Value> {
        let mut create = self
            .client
            .post(format!("{}/v1/messages/batches", self.base))
            .header("x-api-key", self.key);
        for (name, value) in headers {
            create = create.header(*name, *value);
        }
        let resp = create
            .json(&json!({ "requests": requests }))
            .send()
            .await
            .expect("POST");
        assert_eq!(
            resp.status(),
            200,
            "create failed: {}",
            resp.text().await.unwrap_or_default()
        );
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.wait_ended(&id, timeout).await;
        self.results(&id).await
    }

    /// Downloads and parses the results of an ended batch.
    pub async fn results(&self, id: &str) -> Vec<Value> {
        let resp = self
            .get(&format!("/v1/messages/batches/{id}/results"))
            .await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        parse_jsonl(&text)
    }
}

/// Parses JSONL strictly: every line `\n`-terminated, no blank lines, compact objects.
pub fn parse_jsonl(text: &str) -> Vec<Value> {
    if text.is_empty() {
        return Vec::new();
    }
    assert!(text.ends_with('\n'), "last line must end with \\n");
    text[..text.len() - 1]
        .split('\n')
        .map(|line| {
            assert!(!line.trim().is_empty(), "blank line in results");
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line}: {e}"));
            assert_eq!(
                serde_json::to_string(&v).unwrap().len(),
                line.len(),
                "line is not compact: {line}"
            );
            v
        })
        .collect()
}

/// Result lines by `custom_id`: each line's `result`.
pub fn by_custom_id(lines: Vec<Value>) -> HashMap<String, Value> {
    lines
        .into_iter()
        .map(|line| {
            (
                line["custom_id"].as_str().unwrap().to_owned(),
                line["result"].clone(),
            )
        })
        .collect()
}

/// An errored result's error type and message.
pub fn error_of(result: &Value) -> (&str, &str) {
    assert_eq!(result["type"], "errored", "{result}");
    (
        result["error"]["error"]["type"].as_str().unwrap(),
        result["error"]["error"]["message"].as_str().unwrap(),
    )
}

/// A valid request for the mock.
pub fn request(custom_id: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("Hello from {custom_id}")}]
        }
    })
}

/// Asserts the error envelope, its type and message, and that `request_id` equals the header.
pub async fn assert_error(resp: Response, status: u16, kind: &str, message: &str) {
    assert_eq!(resp.status(), status);
    let header = resp
        .headers()
        .get("request-id")
        .expect("request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert_eq!(body["request_id"], header.as_str());
    assert_key_order(
        &text,
        &["\"type\":\"error\"", "\"error\":", "\"request_id\":"],
    );
}

/// Asserts that `needles` occur in `text` in this order.
pub fn assert_key_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        let at = text[from..]
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing or out of order in {text}"));
        from += at + needle.len();
    }
}

/// Microseconds since the epoch of an RFC 3339 timestamp.
pub fn micros(ts: &Value) -> i128 {
    let s = ts.as_str().expect("timestamp string");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    t.unix_timestamp_nanos() / 1000
}

pub fn counts(batch: &Value) -> [u64; 5] {
    let c = &batch["request_counts"];
    ["processing", "succeeded", "errored", "canceled", "expired"].map(|k| c[k].as_u64().unwrap())
}
