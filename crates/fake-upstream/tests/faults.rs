//! Every answer and fault kind of the fake upstream, observed from a real reqwest client over
//! a real socket, the way batchd's backends will see them.

use std::time::Duration;

use batchd_fake_upstream::{Endpoint, FakeConfig, FakeUpstream};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn messages_body(text: &str) -> Value {
    json!({"model": "claude-test", "max_tokens": 16,
           "messages": [{"role": "user", "content": text}]})
}

async fn post(fake: &FakeUpstream, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", fake.url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn answers_both_dialects_and_refuses_bad_bodies() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let r = post(&fake, "/v1/messages", &messages_body("hello there fake")).await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-test");
    assert_eq!(
        m["content"][0],
        json!({"type": "text", "text": "hello there fake"})
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["stop_sequence"], Value::Null);
    assert_eq!(m["usage"]["output_tokens"], 3);
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));

    let chat = json!({"model": "gpt-test", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi from openai"}]}]});
    let r = post(&fake, "/v1/chat/completions", &chat).await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "gpt-test");
    assert_eq!(
        c["choices"][0]["message"],
        json!({"role": "assistant", "content": "hi from openai"})
    );
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    let u = &c["usage"];
    assert_eq!(u["total_tokens"], u["prompt_tokens"].as_u64().unwrap() + 3);

    for (path, envelope) in [
        ("/v1/messages", "/error/type"),
        ("/v1/chat/completions", "/error/type"),
    ] {
        let r = client()
            .post(format!("{}{path}", fake.url()))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e.pointer(envelope).unwrap(), "invalid_request_error", "{e}");
    }
    let r = client()
        .get(format!("{}/v1/models", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "not_found_error");
    assert_eq!(fake.stats().requests(Endpoint::Messages), 2);
    assert_eq!(fake.stats().requests(Endpoint::ChatCompletions), 2);
    assert_eq!(fake.stats().requests(Endpoint::Other), 1);
}

#[tokio::test]
async fn status_faults_last_for_their_budget_then_succeed() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let body = messages_body("please [[fake:fail=2,status=529]] overload");
    for attempt in 1..=2 {
        let r = post(&fake, "/v1/messages", &body).await;
        assert_eq!(r.status(), 529);
        assert_eq!(r.headers()["x-fake-attempt"], attempt.to_string().as_str());
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
    }
    let r = post(&fake, "/v1/messages", &body).await;
    assert_eq!(r.status(), 200);
    // Another body has its own budget, even with the same directive.
    let other = messages_body("other [[fake:fail=2,status=529]]");
    assert_eq!(post(&fake, "/v1/messages", &other).await.status(), 529);
    assert_eq!(fake.stats().faults(), 3);
}

#[tokio::test]
async fn rate_limits_carry_retry_after_headers() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let r = post(
        &fake,
        "/v1/messages",
        &messages_body("[[fake:fail=1,status=429,retry_after=1,retry_after_ms=1500]]"),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["retry-after-ms"], "1500");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    let r = post(
        &fake,
        "/v1/chat/completions",
        &messages_body("[[fake:fail=1,status=429,retry_after_ms=20]]"),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(r.headers()["retry-after-ms"], "20");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["code"], Value::Null);
}

#[tokio::test]
async fn every_status_gets_the_dialects_error_body() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let cases = [
        (500, "api_error", "server_error"),
        (502, "api_error", "server_error"),
        (503, "api_error", "server_error"),
        (504, "timeout_error", "server_error"),
        (404, "not_found_error", "not_found_error"),
    ];
    for (status, anthropic, openai) in cases {
        let body = messages_body(&format!("[[fake:always,status={status}]]"));
        let r = post(&fake, "/v1/messages", &body).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], anthropic);
        let r = post(&fake, "/v1/chat/completions", &body).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], openai);
    }
    // `always` keeps faulting; `message` may hold commas.
    let body =
        messages_body("[[fake:always,status=400,message=max_tokens: 999999 > 8192, the maximum]]");
    for _ in 0..3 {
        let r = post(&fake, "/v1/messages", &body).await;
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(
            e["error"]["message"],
            "max_tokens: 999999 > 8192, the maximum"
        );
    }
    // A typo in a directive is a loud 400, not a silent success.
    let r = post(&fake, "/v1/messages", &messages_body("[[fake:fial=1]]")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("fial"));
}

#[tokio::test]
async fn hang_never_answers_and_releases_when_the_client_gives_up() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let body = messages_body("[[fake:fail=1,kind=hang]]");
    let err = client
        .post(format!("{}/v1/messages", fake.url()))
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The second attempt is past the budget and answers.
    let r = client
        .post(format!("{}/v1/messages", fake.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(client);
    // hyper drops the hanging handler once it sees the client's connection close.
    for _ in 0..100 {
        if fake.stats().in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.stats().in_flight(), 0);
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let body = messages_body("[[fake:fail=2,kind=reset]]");
    for _ in 0..2 {
        let err = client()
            .post(format!("{}/v1/messages", fake.url()))
            .json(&body)
            .send()
            .await
            .unwrap_err();
        assert!(
            err.is_request() && !err.is_timeout() && err.status().is_none(),
            "{err:?}"
        );
    }
    let r = post(&fake, "/v1/messages", &body).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn reset_is_a_tcp_reset_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let body =
        r#"{"model":"m","messages":[{"role":"user","content":"[[fake:always,kind=reset]]"}]}"#;
    let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let err = stream.read_to_end(&mut buf).await.unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionReset,
        "read {buf:?}"
    );
    assert!(buf.is_empty());
}

#[tokio::test]
async fn malformed_is_a_200_that_is_not_json() {
    let fake = FakeUpstream::start(FakeConfig::default()).await.unwrap();
    let body = messages_body("[[fake:fail=1,kind=malformed]]");
    let r = post(&fake, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(
        post(&fake, "/v1/chat/completions", &body).await.status(),
        200
    );
}

#[tokio::test]
async fn stats_see_concurrency_arrivals_headers_and_bodies() {
    let fake = FakeUpstream::start(
        FakeConfig::default()
            .latency(Duration::from_millis(100))
            .record_requests(4),
    )
    .await
    .unwrap();
    let client = client();
    let mut calls = Vec::new();
    for i in 0..8 {
        let request = client
            .post(format!("{}/v1/messages", fake.url()))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "fake-beta-2025-01-01")
            .header("x-api-key", "sk-upstream")
            .json(&messages_body(&format!("call {i}")));
        calls.push(tokio::spawn(request.send()));
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    let stats = fake.stats();
    assert_eq!(stats.max_in_flight(), 8);
    assert_eq!(stats.in_flight(), 0);
    stats.reset_max_in_flight();
    assert_eq!(stats.max_in_flight(), 0);
    assert_eq!(stats.arrivals().len(), 8);
    let recent = stats.recent_requests();
    assert_eq!(recent.len(), 4, "the ring keeps the last 4");
    let last = stats.last_request().unwrap();
    assert_eq!(last.path, "/v1/messages");
    assert_eq!(last.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(last.header("anthropic-beta"), Some("fake-beta-2025-01-01"));
    assert_eq!(last.header("x-api-key"), Some("sk-upstream"));
    assert_eq!(last.json()["model"], "claude-test");
}

#[test]
fn the_binary_prints_its_address_and_serves() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
        .args(["--listen", "127.0.0.1:0", "--latency", "1ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("fake-upstream listening on ")
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        client()
            .post(format!("{url}/v1/messages"))
            .json(&messages_body("hi"))
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
}
