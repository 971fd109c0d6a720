//! Test mode's scripted mock: rules of every outcome (first match wins), seeded chaos through a
//! whole batch, replayed results byte for byte, their refusals, and that all of it belongs to
//! one workspace and goes with its reset.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

async fn test_server() -> TestApp {
    spawn_with(|o| o.test_mode = true).await
}

async fn put_rules(app: &TestApp, body: &Value) -> reqwest::Response {
    app.request(reqwest::Method::PUT, "/v1/batchd/test/mock/rules")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn rules_of(app: &TestApp) -> Value {
    let resp = app.get("/v1/batchd/test/mock/rules").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn post_fixtures(app: &TestApp, jsonl: &str) -> reqwest::Response {
    app.request(reqwest::Method::POST, "/v1/batchd/test/mock/fixtures")
        .header("content-type", "application/x-ndjson")
        .body(jsonl.to_owned())
        .send()
        .await
        .unwrap()
}

fn ask(custom_id: &str, model: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": text}]
        }
    })
}

/// Polls the batch's progress (its counts show every request `processing` until it ends)
/// until `n` of its requests have an answer.
async fn wait_answered(app: &TestApp, id: &str, n: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let resp = app
            .get(&format!("/v1/messages/batches/{id}/progress"))
            .await;
        assert_eq!(resp.status(), 200);
        let batch: Value = resp.json().await.unwrap();
        let c = &batch["request_counts"];
        let answered = c["succeeded"].as_u64().unwrap() + c["errored"].as_u64().unwrap();
        if answered >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{batch}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn results_text(app: &TestApp, id: &str) -> String {
    let resp = app.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

const RULES: &str = r#"{"rules": [
  {"match": {"custom_id": "boom-*"}, "outcome": {"type": "errored", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
  {"match": {"model": "claude-opus-*", "text": "refund"}, "outcome": {"type": "succeeded", "text": "REFUND APPROVED"}},
  {"match": {"custom_id": "slow-*"}, "outcome": {"type": "unanswered"}},
  {"match": {"custom_id": "tool-?"}, "outcome": {"type": "succeeded", "delay_ms": 50, "message": {"id": "msg_tool", "type": "message", "role": "assistant", "model": "claude-opus-4-1", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}], "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 5, "output_tokens": 7}}}},
  {"match": {"custom_id": "boom-*"}, "outcome": {"type": "succeeded", "text": "never: the first match wins"}}
]}"#;

#[tokio::test]
async fn rules_script_every_outcome_and_the_first_match_wins() {
    let app = test_server().await;
    let rules: Value = serde_json::from_str(RULES).unwrap();
    let resp = put_rules(&app, &rules).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_key_order(
        &text,
        &[
            "\"type\":\"test_mock_rules\"",
            "\"rules\":[",
            "\"chaos\":null",
        ],
    );
    let got = rules_of(&app).await;
    assert_eq!(got["rules"], rules["rules"], "GET answers the rules as put");

    let batch = app
        .create(vec![
            ask("boom-1", "claude-opus-4-1", "refund please"),
            ask("refund-1", "claude-opus-4-1", "I want a refund"),
            ask("refund-2", "claude-sonnet-4-5", "I want a refund"),
            ask("tool-1", "claude-sonnet-4-5", "look it up"),
            ask("slow-1", "claude-sonnet-4-5", "are you there"),
            ask("plain", "claude-sonnet-4-5", "hello"),
        ])
        .await;
    let id = batch["id"].as_str().unwrap();
    wait_answered(&app, id, 5).await;
    // The unanswered request stays so: the batch runs until it is canceled (or expires).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = app.batch(id).await;
    assert_eq!(running["processing_status"], "in_progress", "{running}");
    let resp = app
        .post(&format!("/v1/messages/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    app.wait_ended(id, WAIT).await;
    let results = by_custom_id(app.results(id).await);

    assert_eq!(
        error_of(&results["boom-1"]),
        ("overloaded_error", "Overloaded")
    );
    assert_eq!(
        results["boom-1"]["error"]["type"], "error",
        "the usual envelope"
    );
    let refund = &results["refund-1"]["message"];
    assert_eq!(results["refund-1"]["type"], "succeeded");
    assert_eq!(
        refund["content"],
        json!([{"type": "text", "text": "REFUND APPROVED"}])
    );
    assert_eq!(refund["stop_reason"], "end_turn");
    assert_eq!(refund["usage"]["output_tokens"], 2);
    assert!(refund["id"].as_str().unwrap().starts_with("msg_"));
    let normal = |r: &Value| {
        r["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("You said:")
    };
    assert!(normal(&results["refund-2"]), "model must match too");
    assert!(normal(&results["plain"]), "no rule: the mock's own answer");
    assert_eq!(
        results["tool-1"],
        json!({"type": "succeeded", "message": rules["rules"][3]["outcome"]["message"]}),
        "a whole message is recorded as given"
    );
    assert_eq!(results["slow-1"], json!({"type": "canceled"}));
}

#[tokio::test]
async fn an_unanswered_request_expires_with_its_batch() {
    let app = test_server().await;
    let rules =
        json!({"rules": [{"match": {"custom_id": "slow-*"}, "outcome": {"type": "unanswered"}}]});
    assert_eq!(put_rules(&app, &rules).await.status(), 200);
    let batch = app.create(vec![request("slow-1"), request("fast-1")]).await;
    let id = batch["id"].as_str().unwrap();
    wait_answered(&app, id, 1).await;
    let resp = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({"seconds": 25 * 3600}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let ended = app.batch(id).await;
    assert_eq!(ended["processing_status"], "ended");
    assert_eq!(counts(&ended), [0, 1, 0, 0, 1]);
    let results = by_custom_id(app.results(id).await);
    assert_eq!(results["slow-1"], json!({"type": "expired"}));
    assert_eq!(results["fast-1"]["type"], "succeeded");
}

#[tokio::test]
async fn bad_rules_are_refused_naming_their_path_and_change_nothing() {
    let app = test_server().await;
    let good =
        json!({"rules": [{"match": {"custom_id": "a*"}, "outcome": {"type": "unanswered"}}]});
    assert_eq!(put_rules(&app, &good).await.status(), 200);
    for (body, message) in [
        (
            json!({"rules": [{"outcome": {"type": "unanswered"}}, {"outcome": {"type": "exploded"}}]}),
            "rules.1.outcome.type: Input should be 'succeeded', 'errored' or 'unanswered'",
        ),
        (
            json!({"rules": [{"match": {"custom_id": "a[0-9]"}, "outcome": {"type": "unanswered"}}]}),
            "rules.0.match.custom_id: Invalid glob: only `*` (any run of characters) and `?` (one character) are special",
        ),
        (
            json!({"rules": [{"outcome": {"type": "errored", "error": {"type": "oops", "message": "m"}}}]}),
            "rules.0.outcome.error.type: Input should be one of the API's error types (e.g. 'overloaded_error', 'api_error', 'invalid_request_error', 'rate_limit_error')",
        ),
        (
            json!({"rules": [], "chaos": {"seed": 1, "errored_rate": 2}}),
            "chaos.errored_rate: Input should be between 0 and 1 (a share of the requests)",
        ),
        (json!({}), "rules: Field required"),
    ] {
        assert_error(
            put_rules(&app, &body).await,
            400,
            "invalid_request_error",
            message,
        )
        .await;
    }
    assert_eq!(rules_of(&app).await["rules"], good["rules"]);
}

/// An errored line as the real API writes it, with a `request_id` and its own spacing of keys
/// that batchd would not produce itself.
const REPLAYED_ERROR: &str = r#"{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"messages.0.content: Input should be a valid list"},"request_id":"req_011CUxyz"}}"#;
const REPLAYED_SUCCESS: &str = r#"{"type":"succeeded","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_01Replay","type":"message","role":"assistant","content":[{"type":"text","text":"Replayed."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":2,"service_tier":"batch"}}}"#;

#[tokio::test]
async fn fixtures_replay_results_byte_for_byte_by_custom_id_or_params() {
    let app = test_server().await;
    // A rule that the fixture must beat.
    let rules = json!({"rules": [{"match": {"custom_id": "fx-*"}, "outcome": {"type": "succeeded", "text": "rule"}}]});
    assert_eq!(put_rules(&app, &rules).await.status(), 200);
    let by_params = ask("ignored", "claude-sonnet-4-5", "the params key")["params"].clone();
    // The same params with their keys in another order: equal as JSON values.
    let reordered = r#"{"messages":[{"content":"the params key","role":"user"}],"max_tokens":64,"model":"claude-sonnet-4-5"}"#;
    assert_eq!(serde_json::from_str::<Value>(reordered).unwrap(), by_params);
    let jsonl = format!(
        "{{\"custom_id\":\"fx-1\",\"result\":{REPLAYED_ERROR}}}\n\
         {{\"custom_id\":\"fx-2\",\"result\":{REPLAYED_SUCCESS}}}\n\
         {{\"params\":{reordered},\"result\":{{\"type\":\"expired\"}}}}\n"
    );
    let resp = post_fixtures(&app, &jsonl).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text, r#"{"type":"test_fixtures","loaded":3}"#);

    let batch = app
        .create(vec![
            ask("fx-1", "claude-sonnet-4-5", "anything"),
            ask("fx-2", "claude-sonnet-4-5", "anything"),
            json!({"custom_id": "generated-8f3a", "params": by_params}),
            ask("fx-3", "claude-sonnet-4-5", "no fixture"),
        ])
        .await;
    let id = batch["id"].as_str().unwrap();
    // The replayed `expired` row is a request left unanswered until its batch expires.
    wait_answered(&app, id, 3).await;
    let resp = app
        .post(
            "/v1/batchd/test/clock/advance",
            &json!({"seconds": 25 * 3600}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let ended = app.batch(id).await;
    assert_eq!(counts(&ended), [0, 2, 1, 0, 1]);
    let file = results_text(&app, id).await;
    let lines: Vec<&str> = file.lines().collect();
    assert!(
        lines.contains(&format!(r#"{{"custom_id":"fx-1","result":{REPLAYED_ERROR}}}"#).as_str()),
        "{file}"
    );
    assert!(
        lines.contains(&format!(r#"{{"custom_id":"fx-2","result":{REPLAYED_SUCCESS}}}"#).as_str()),
        "{file}"
    );
    assert!(
        lines.contains(&r#"{"custom_id":"generated-8f3a","result":{"type":"expired"}}"#),
        "{file}"
    );
    let results = by_custom_id(parse_jsonl(&file));
    assert_eq!(
        results["fx-3"]["message"]["content"][0]["text"], "rule",
        "no fixture: the rule"
    );
}

#[tokio::test]
async fn a_bad_fixture_line_is_named_and_nothing_is_loaded() {
    let app = test_server().await;
    let jsonl = format!(
        "{{\"custom_id\":\"fx-1\",\"result\":{REPLAYED_ERROR}}}\n\
         {{\"custom_id\":\"fx-2\",\"result\":{{\"type\":\"succeeded\"}}}}\n"
    );
    assert_error(
        post_fixtures(&app, &jsonl).await,
        400,
        "invalid_request_error",
        "line 2: result.message: Field required",
    )
    .await;
    let results = by_custom_id(
        app.run_with(&[("anthropic-version", VERSION)], &[request("fx-1")], WAIT)
            .await,
    );
    assert_eq!(
        results["fx-1"]["type"], "succeeded",
        "line 1 was not loaded"
    );
}

/// A whole batch's outcomes under chaos: custom id → result type and error type. (The
/// succeeded rows' message ids are derived from the batch id, so two batches' files differ
/// there and only there.)
async fn chaos_run(app: &TestApp, seed: u64) -> (BTreeMap<String, String>, String) {
    let rules = json!({"rules": [], "chaos": {"seed": seed, "errored_rate": 0.3}});
    let resp = put_rules(app, &rules).await;
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    assert_eq!(got["chaos"], rules["chaos"]);
    let batch = app
        .create((0..80).map(|i| request(&format!("req-{i}"))).collect())
        .await;
    let id = batch["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, WAIT).await;
    let file = results_text(app, &id).await;
    let outcomes = parse_jsonl(&file)
        .into_iter()
        .map(|line| {
            let result = &line["result"];
            let kind = match result["type"].as_str().unwrap() {
                "errored" => format!("errored:{}", error_of(result).0),
                other => other.to_owned(),
            };
            (line["custom_id"].as_str().unwrap().to_owned(), kind)
        })
        .collect();
    // The errored lines alone are identical byte for byte.
    let errored = file
        .lines()
        .filter(|l| l.contains(r#""type":"errored""#))
        .collect::<Vec<_>>()
        .join("\n");
    (outcomes, errored)
}

#[tokio::test]
async fn chaos_spreads_the_same_errors_for_the_same_seed() {
    let app = test_server().await;
    let (first, first_errors) = chaos_run(&app, 42).await;
    let (again, again_errors) = chaos_run(&app, 42).await;
    assert_eq!(first, again, "same seed, same results");
    assert_eq!(first_errors, again_errors);
    let errored = first.values().filter(|k| k.starts_with("errored")).count();
    assert!((8..=40).contains(&errored), "about 30% of 80: {errored}");
    assert!(first.values().any(|k| k == "errored:overloaded_error"));
    let (other, _) = chaos_run(&app, 43).await;
    assert_ne!(first, other, "another seed, other picks");
}

#[tokio::test]
async fn scripts_belong_to_one_workspace_and_go_with_its_reset() {
    let app = test_server().await;
    let b = app.as_key(KEY_B);
    let rules = json!({"rules": [{"match": {"custom_id": "r*"}, "outcome": {"type": "errored", "error": {"type": "api_error", "message": "scripted"}}}], "chaos": {"seed": 1, "errored_rate": 1.0}});
    assert_eq!(put_rules(&app, &rules).await.status(), 200);
    let fixture = format!("{{\"custom_id\":\"fx\",\"result\":{REPLAYED_SUCCESS}}}\n");
    assert_eq!(post_fixtures(&app, &fixture).await.status(), 200);

    let theirs = rules_of(&b).await;
    assert_eq!(
        theirs,
        json!({"type": "test_mock_rules", "rules": [], "chaos": null})
    );
    let results = by_custom_id(
        b.run_with(
            &[("anthropic-version", VERSION)],
            &[request("r0"), request("fx")],
            WAIT,
        )
        .await,
    );
    assert_eq!(results["r0"]["type"], "succeeded", "B has no rules");
    assert!(
        results["fx"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("You said:"),
        "B has no fixtures"
    );

    let mine = by_custom_id(
        app.run_with(
            &[("anthropic-version", VERSION)],
            &[request("r0"), request("fx")],
            WAIT,
        )
        .await,
    );
    assert_eq!(error_of(&mine["r0"]), ("api_error", "scripted"));
    assert_eq!(
        mine["fx"],
        serde_json::from_str::<Value>(REPLAYED_SUCCESS).unwrap()
    );

    let resp = app.post("/v1/batchd/test/reset", &json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        rules_of(&app).await,
        json!({"type": "test_mock_rules", "rules": [], "chaos": null})
    );
    let after = by_custom_id(
        app.run_with(
            &[("anthropic-version", VERSION)],
            &[request("r0"), request("fx")],
            WAIT,
        )
        .await,
    );
    assert_eq!(after["r0"]["type"], "succeeded", "rules and chaos cleared");
    assert!(
        after["fx"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("You said:"),
        "fixtures cleared"
    );
}

#[tokio::test]
async fn mock_script_routes_are_unknown_without_the_flag() {
    let app = spawn().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/batchd/test/mock/rules"),
        (reqwest::Method::PUT, "/v1/batchd/test/mock/rules"),
        (reqwest::Method::POST, "/v1/batchd/test/mock/fixtures"),
    ] {
        let resp = app
            .request(method, path)
            .json(&json!({"rules": []}))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "not_found_error", "Not found").await;
    }
}

#[tokio::test]
async fn a_scripted_answer_waits_its_delay_and_not_the_mock_latency() {
    // A mock that would take an hour per request.
    let app = spawn_with(|o| {
        o.test_mode = true;
        o.mock_latency = Duration::from_secs(3_600);
    })
    .await;
    let rules = json!({"rules": [
        {"match": {"custom_id": "late-*"}, "outcome": {"type": "succeeded", "text": "late", "delay_ms": 400}},
        {"match": {"custom_id": "now-*"}, "outcome": {"type": "succeeded", "text": "now"}}
    ]});
    assert_eq!(put_rules(&app, &rules).await.status(), 200);
    let started = std::time::Instant::now();
    let batch = app.create(vec![request("late-1"), request("now-1")]).await;
    let id = batch["id"].as_str().unwrap();
    app.wait_ended(id, WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered after {:?}, before its delay",
        started.elapsed()
    );
    let results = by_custom_id(app.results(id).await);
    assert_eq!(results["late-1"]["message"]["content"][0]["text"], "late");
    assert_eq!(results["now-1"]["message"]["content"][0]["text"], "now");
}
