//! TLS on the listener, with the test CA and certificates of `tests/fixtures/tls`: the API over
//! https, plain HTTP to the TLS port refused without harm, the handshake under the header
//! timeout and the connection cap, bad files refused at start-up, and the reload on SIGHUP that
//! leaves open connections alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::*;

/// Generous bounds: the machine may be loaded, and none of these should be near them.
const SLACK: Duration = Duration::from_secs(10);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A client that trusts only the test CA; `tls_info` attaches the server's certificate to
/// every response.
pub fn client(tls_info: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .tls_info(tls_info)
        .build()
        .unwrap()
}

/// The DER of the first (leaf) certificate of a PEM file.
fn leaf(pem: &Path) -> Vec<u8> {
    let first = CertificateDer::pem_file_iter(pem).unwrap().next().unwrap();
    first.unwrap().as_ref().to_vec()
}

/// The leaf certificate the server presented on the connection that carried `resp`.
fn presented(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info on the response")
        .to_vec()
}

fn with_tls(o: &mut batchd::ServeOptions, name: &str) {
    o.tls_cert = Some(fixture(&format!("{name}.pem")));
    o.tls_key = Some(fixture(&format!("{name}.key")));
}

fn host_port(app: &TestApp) -> String {
    app.base.trim_start_matches("https://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_with_https_urls() {
    let app = spawn_with(|o| with_tls(o, "server-a")).await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let created = app.create_n(3).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ended = app.wait_ended(&id, Duration::from_secs(30)).await;
    assert_eq!(counts(&ended), [0, 3, 0, 0, 0], "{ended}");
    // Derived from Host, the results URL names the scheme the client used, whatever a
    // forwarded header claims.
    let url = ended["results_url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{}/v1/messages/batches/{id}/results", app.base),
        "{ended}"
    );
    let resp = app
        .request(reqwest::Method::GET, &format!("/v1/messages/batches/{id}"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    let batch: Value = resp.json().await.unwrap();
    assert!(
        batch["results_url"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{batch}"
    );
    let lines = app.results(&id).await;
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["result"]["type"] == "succeeded"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_fails_and_the_server_keeps_serving() {
    // Two slots: failed handshakes must give theirs back, or the third attempt would hang.
    let app = spawn_with(|o| {
        with_tls(o, "server-a");
        o.max_connections = 2;
    })
    .await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(SLACK)
        .build()
        .unwrap();
    let url = format!("http://{}/healthz", host_port(&app));
    for _ in 0..6 {
        let err = plain
            .get(&url)
            .send()
            .await
            .expect_err("plain HTTP answered");
        assert!(
            !err.is_timeout(),
            "plain HTTP hung instead of failing: {err}"
        );
    }
    let resp = tokio::time::timeout(
        SLACK,
        app.client.get(format!("{}/healthz", app.base)).send(),
    )
    .await
    .expect("https after plain attempts hung")
    .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_never_finished_is_closed_by_the_header_timeout_and_holds_a_slot() {
    let app = spawn_with(|o| {
        with_tls(o, "server-a");
        o.max_connections = 1;
        o.header_timeout = Duration::from_secs(4);
    })
    .await;
    let addr = host_port(&app);
    // Opens TCP and never says a word: the one slot is held until the timeout closes it, 3.5 s
    // after the request below starts, well over the 1 s it must at least wait.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let client = client(false);
    let resp = tokio::time::timeout(SLACK, client.get(format!("{}/healthz", app.base)).send())
        .await
        .expect("https request hung behind a silent connection")
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert!(
        waited >= Duration::from_secs(1),
        "the silent connection did not hold the only slot: answered in {waited:?}"
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(SLACK, silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the silent connection is still open: {closed:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_or_a_missing_half_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let start = |tweak: &dyn Fn(&mut batchd::ServeOptions)| {
        let mut options = batchd::ServeOptions::new(dir.path().to_path_buf());
        options.api_keys = vec![format!("{KEY_A}@ws-a")];
        tweak(&mut options);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tokio::time::timeout(
                SLACK,
                batchd::serve(options, listener, std::future::pending()),
            )
            .await
            .expect("start-up error expected, the server ran")
            .expect_err("start-up error expected")
        }
    };
    let err = start(&|o| {
        o.tls_cert = Some(fixture("server-a.pem"));
        o.tls_key = Some(fixture("server-b.key"));
    })
    .await;
    let text = format!("{err:#}");
    assert!(
        text.contains("server-b.key does not belong to the first certificate")
            && text.contains("server-a.pem"),
        "{text}"
    );
    let err = start(&|o| o.tls_cert = Some(fixture("server-a.pem"))).await;
    assert!(err.to_string().contains("needs both"), "{err}");
}

/// A `batchd serve` process with TLS from `cert` and `key`, its log kept for the test to read.
#[cfg(unix)]
struct Process {
    child: tokio::process::Child,
    base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[cfg(unix)]
impl Process {
    async fn start(data_dir: &Path, cert: &Path, key: &Path) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchd"))
            .args(storage_args(data_dir))
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--api-key")
            .arg(format!("{KEY_A}@ws-a"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            // Long enough that the keep-alive connection below is never closed as idle.
            .args(["--header-timeout", "2m"])
            .env_remove("RUST_LOG")
            .env_remove("BATCHD_API_KEYS")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn batchd");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<Value>();
        let kept = log.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("batchd listening")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(serde_json::from_str(&line).unwrap_or_default());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let listening = tokio::time::timeout(Duration::from_secs(60), addr_rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("batchd did not start; log: {:?}", log.lock().unwrap()));
        let url = listening["url"]
            .as_str()
            .expect("url in the listening line");
        assert!(url.starts_with("https://127.0.0.1:"), "{listening}");
        Self {
            child,
            base: url.to_owned(),
            log,
        }
    }

    fn hang_up(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the `n`th log line containing `needle`; returns it.
    async fn wait_log(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + SLACK;
        loop {
            let found: Vec<String> = {
                let log = self.log.lock().unwrap();
                log.iter().filter(|l| l.contains(needle)).cloned().collect()
            };
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {n}th {needle:?} in the log: {:?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(fixture("server-a.pem"), &cert).unwrap();
    std::fs::copy(fixture("server-a.key"), &key).unwrap();
    let data_dir = dir.path().join("data");
    let server = Process::start(&data_dir, &cert, &key).await;
    let (a, b) = (
        leaf(&fixture("server-a.pem")),
        leaf(&fixture("server-b.pem")),
    );
    assert_ne!(a, b);
    let healthz = format!("{}/healthz", server.base);

    // One connection, kept alive across the reload.
    let kept = client(true);
    let resp = kept.get(&healthz).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(presented(&resp) == a, "started with certificate A");

    std::fs::copy(fixture("server-b.pem"), &cert).unwrap();
    std::fs::copy(fixture("server-b.key"), &key).unwrap();
    server.hang_up();
    let line = server.wait_log("TLS certificate reloaded", 1).await;
    assert!(line.contains("cert.pem"), "{line}");

    let resp = client(true).get(&healthz).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(presented(&resp) == b, "a new connection gets certificate B");
    // Still certificate A: the very connection opened before the reload, not a new one.
    let resp = kept.get(&healthz).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        presented(&resp) == a,
        "the connection open before the reload kept its certificate"
    );

    // A broken key: the reload fails, and B stays in use.
    let text = std::fs::read_to_string(fixture("server-b.key")).unwrap();
    std::fs::write(&key, &text[..text.len() / 2]).unwrap();
    server.hang_up();
    let line = server.wait_log("TLS reload failed", 1).await;
    assert!(line.contains("key.pem: not valid PEM"), "{line}");
    let resp = client(true).get(&healthz).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        presented(&resp) == b,
        "a failed reload keeps the certificate in use"
    );
    let resp = kept.get(&healthz).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
