//! The real `batchd batches …` binary against a real server: create from JSONL (native and
//! OpenAI format), get, list, watch, results with `--only` and `-o`, delete, `--json` output,
//! and how errors are reported; `batchd test …` against a server in test mode; `batchd webhooks
//! …` managing endpoints.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Runs `batchd batches <args>` against `app` with its key.
async fn batches(app: &TestApp, args: &[&str]) -> Output {
    batches_with_key(app, Some(app.key), args).await
}

async fn batches_with_key(app: &TestApp, key: Option<&str>, args: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("batches")
        .chain(args.iter().copied())
        .collect();
    cli_with_key(app, key, &args).await
}

/// Runs `batchd <args>` against `app` with `key`.
async fn cli_with_key(app: &TestApp, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchd"));
    cmd.args(args)
        .env("ANTHROPIC_BASE_URL", &app.base)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    if let Some(key) = key {
        cmd.env("ANTHROPIC_API_KEY", key);
    }
    cmd.output().await.expect("run batchd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

fn write(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

fn openai_line(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

#[tokio::test]
async fn full_lifecycle_through_the_cli() {
    let app = spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "requests.jsonl",
        &[
            request("native-1").to_string(),
            String::new(),
            request("native-2").to_string(),
            json!({"custom_id": "bad-params", "params": {"model": "m", "max_tokens": 5}})
                .to_string(),
            openai_line(
                "oa-1",
                json!({"model": "claude-sonnet-4-5", "max_completion_tokens": 32,
                       "messages": [{"role": "system", "content": "Be terse."},
                                    {"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
                       "stop": "\n\n", "temperature": 0.2}),
            ),
            openai_line(
                "oa-2",
                json!({"model": "claude-sonnet-4-5",
                       "messages": [{"role": "user", "content": "Hello"}]}),
            ),
            String::new(),
        ],
    );

    // create --json prints the created batch as JSON.
    let out = batches(&app, &["create", "--file", &file, "--json"]).await;
    assert_ok(&out);
    let created: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["processing_status"], "in_progress");
    assert_eq!(created["request_counts"]["processing"], 5);

    // Human-readable get.
    let out = batches(&app, &["get", &id]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("id                   {id}")),
        "{text}"
    );
    assert!(text.contains("requests             5 ("), "{text}");

    // watch (stdout is a pipe: plain lines, then the final counts).
    let out = batches(&app, &["watch", &id, "--interval", "50ms"]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.trim_end().ends_with(&format!(
            "{id} ended: 5 requests: succeeded 4, errored 1, canceled 0, expired 0"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{id} ended: 5/5 done")), "{text}");
    let out = batches(&app, &["watch", &id, "--json"]).await;
    assert_ok(&out);
    let ended: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(ended["processing_status"], "ended");

    // The converted requests arrived as the Messages params we expect: the mock echoes the
    // last user message, and succeeded.
    let out = batches(&app, &["results", &id]).await;
    assert_ok(&out);
    let lines = parse_jsonl(&stdout(&out));
    assert_eq!(lines.len(), 5);
    let by_id = |cid: &str| {
        lines
            .iter()
            .find(|l| l["custom_id"] == cid)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("oa-1")["result"]["type"], "succeeded");
    assert_eq!(by_id("oa-2")["result"]["type"], "succeeded");
    assert_eq!(by_id("bad-params")["result"]["type"], "errored");
    // The raw lines are passed through byte for byte.
    let direct = app.results(&id).await;
    let mut a: Vec<String> = lines.iter().map(Value::to_string).collect();
    let mut b: Vec<String> = direct.iter().map(Value::to_string).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // --only filters by result.type; -o writes a file.
    let out = batches(&app, &["results", &id, "--only", "errored"]).await;
    assert_ok(&out);
    let errored = parse_jsonl(&stdout(&out));
    assert_eq!(errored.len(), 1);
    assert_eq!(errored[0]["custom_id"], "bad-params");

    let target = dir.path().join("ok.jsonl");
    let out = batches(
        &app,
        &[
            "results",
            &id,
            "--only",
            "succeeded",
            "-o",
            target.to_str().unwrap(),
        ],
    )
    .await;
    assert_ok(&out);
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("wrote 4 succeeded of 5 results"),
        "{}",
        stderr(&out)
    );
    let saved = parse_jsonl(&std::fs::read_to_string(&target).unwrap());
    assert_eq!(saved.len(), 4);
    assert!(saved.iter().all(|l| l["result"]["type"] == "succeeded"));

    // list: a table by default, the raw page with --json, one batch per line with --all --json.
    let out = batches(&app, &["list"]).await;
    assert_ok(&out);
    let text = stdout(&out);
    let mut rows = text.lines();
    assert!(rows.next().unwrap().starts_with("ID"));
    assert!(
        rows.next().unwrap().starts_with(&format!("{id}  ended")),
        "{text}"
    );
    let out = batches(&app, &["list", "--json", "--limit", "5"]).await;
    assert_ok(&out);
    let page: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(page["data"][0]["id"], id.as_str());
    assert_eq!(page["has_more"], false);

    let second = batches(&app, &["create", "-f", &file, "--json"]).await;
    assert_ok(&second);
    let out = batches(&app, &["list", "--all", "--limit", "1", "--json"]).await;
    assert_ok(&out);
    let all: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["id"], id.as_str());

    // delete, then the batch is gone and the API error is reported.
    let out = batches(&app, &["delete", &id]).await;
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), format!("deleted {id}"));
    let out = batches(&app, &["get", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: not_found_error: Message Batch {id} not found. (request-id req_"
        )),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn cancel_and_delete_errors_through_the_cli() {
    let app = spawn_with(|o| {
        o.mock_latency = std::time::Duration::from_secs(3);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let id = app.create_n(3).await["id"].as_str().unwrap().to_owned();

    let out = batches(&app, &["delete", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "error: invalid_request_error: In progress batches cannot be deleted. \
             Consider canceling the batch instead. (request-id req_"
        ),
        "{}",
        stderr(&out)
    );

    let out = batches(&app, &["results", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no results_url yet"),
        "{}",
        stderr(&out)
    );

    let out = batches(&app, &["cancel", &id, "--json"]).await;
    assert_ok(&out);
    let b: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(b["processing_status"], "canceling");
}

#[tokio::test]
async fn openai_lines_it_cannot_express_are_refused_by_line() {
    let app = spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "openai.jsonl",
        &[
            openai_line(
                "ok",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            ),
            String::new(),
            openai_line(
                "with-tools",
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
            ),
        ],
    );
    let out = batches(&app, &["create", "--file", &file]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("`tools`"), "{err}");
    // Nothing was created.
    let page = app
        .get("/v1/messages/batches")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(page["data"], json!([]));

    let bad = write(
        dir.path(),
        "bad.jsonl",
        &[request("a").to_string(), "{oops".into()],
    );
    let out = batches(&app, &["create", "--file", &bad]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2: not a JSON object"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn auth_and_usage_errors() {
    let app = spawn().await;
    let out = batches_with_key(&app, Some("sk-wrong"), &["list"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: authentication_error: "), "{err}");
    assert!(err.contains("(request-id req_"), "{err}");

    // No key at all, an unknown flag, a bad --only: usage errors, exit 2.
    let out = batches_with_key(&app, None, &["list"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("API key"), "{}", stderr(&out));
    let out = batches(&app, &["list", "--bogus"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = batches(&app, &["results", "x", "--only", "weird"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = batches(&app, &["list", "--limit", "0"]).await;
    assert_eq!(out.status.code(), Some(2));

    // --api-key on the command line works as well as the environment variable.
    let out = batches_with_key(&app, None, &["list", "--json", "--api-key", KEY_B]).await;
    assert_ok(&out);
    let page: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(page["data"], json!([]));
}

/// The last line of a command's stdout as JSON.
fn last_json(o: &Output) -> Value {
    let text = stdout(o);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn openai_batches_through_the_cli() {
    let app = spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let chat = |id: &str, extra: Value| {
        let mut body =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": id}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        openai_line(id, body)
    };
    // A line the mock refuses (`n: 0`) ends in the error file.
    let file = write(
        dir.path(),
        "work.jsonl",
        &[
            chat("good-1", json!({})),
            chat("refused", json!({"n": 0})),
            chat("good-2", json!({})),
        ],
    );

    let created = batches(
        &app,
        &["create", "--file", &file, "--surface", "openai", "--json"],
    )
    .await;
    assert_ok(&created);
    let batch = last_json(&created);
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("batch_"), "{batch}");
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["endpoint"], "/v1/chat/completions");
    let input_url = format!("/v1/files/{}", batch["input_file_id"].as_str().unwrap());
    let input: Value = app.get(&input_url).await.json().await.unwrap();
    assert_eq!(input["filename"], "work.jsonl");

    let watched = batches(&app, &["watch", &id, "--interval", "50ms", "--json"]).await;
    assert_ok(&watched);
    let done = last_json(&watched);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 2, "failed": 1})
    );

    let got = batches(&app, &["get", &id]).await;
    assert_ok(&got);
    let text = stdout(&got);
    assert!(
        text.contains("status") && text.contains("completed"),
        "{text}"
    );
    assert!(text.contains("completed 2, failed 1"), "{text}");

    // Results: the output file's lines, then the error file's.
    let results = batches(&app, &["results", &id]).await;
    assert_ok(&results);
    let lines = parse_jsonl(&stdout(&results));
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["good-1", "good-2", "refused"]);
    assert_eq!(lines[0]["response"]["status_code"], 200);
    assert_eq!(lines[2]["response"]["status_code"], 400);
    let errored = batches(&app, &["results", &id, "--only", "errored"]).await;
    assert_ok(&errored);
    assert_eq!(parse_jsonl(&stdout(&errored)).len(), 1);
    let out = dir.path().join("out.jsonl");
    let saved = batches(
        &app,
        &[
            "results",
            &id,
            "--only",
            "succeeded",
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_ok(&saved);
    assert_eq!(
        parse_jsonl(&std::fs::read_to_string(&out).unwrap()).len(),
        2
    );
    assert!(
        stderr(&saved).contains("wrote 2 succeeded of 3 results"),
        "{}",
        stderr(&saved)
    );

    // Lists show one surface each.
    let listed = batches(&app, &["list", "--surface", "openai", "--json"]).await;
    assert_ok(&listed);
    let page = last_json(&listed);
    assert_eq!(page["data"][0]["id"], id.as_str(), "{page}");
    let table = batches(&app, &["list", "--surface", "openai"]).await;
    assert_ok(&table);
    assert!(
        stdout(&table).starts_with("ID") && stdout(&table).contains(&id),
        "{}",
        stdout(&table)
    );
    let anthropic = batches(&app, &["list", "--json"]).await;
    assert_ok(&anthropic);
    assert!(!stdout(&anthropic).contains(&id), "{}", stdout(&anthropic));

    // A second batch, then every batch through auto-pagination, one page of one at a time.
    let again = batches(
        &app,
        &["create", "--file", &file, "--surface", "openai", "--json"],
    )
    .await;
    assert_ok(&again);
    let second = last_json(&again)["id"].as_str().unwrap().to_owned();
    let all = batches(
        &app,
        &[
            "list",
            "--surface",
            "openai",
            "--all",
            "--limit",
            "1",
            "--json",
        ],
    )
    .await;
    assert_ok(&all);
    let all: Vec<String> = parse_jsonl(&stdout(&all))
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all, [second, id.clone()]);

    // API errors come back in the OpenAI envelope and are reported like the Anthropic ones.
    let conflict = batches(&app, &["cancel", &id]).await;
    assert_eq!(conflict.status.code(), Some(1));
    assert!(
        stderr(&conflict).contains("Cannot cancel a batch with status 'completed'."),
        "{}",
        stderr(&conflict)
    );
    let missing = batches(&app, &["get", "batch_00000000000081900000000000000000"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("No batch found with id"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn an_openai_batch_is_cancelled_through_the_cli() {
    let app = spawn_with(|o| {
        // Long enough that the cancel lands while requests are unsent.
        o.mock_latency = Duration::from_secs(3);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let body = |i: usize| json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("q{i}")}]});
    let lines: Vec<String> = (0..3)
        .map(|i| openai_line(&format!("c{i}"), body(i)))
        .collect();
    let file = write(dir.path(), "slow.jsonl", &lines);
    let created = batches(
        &app,
        &["create", "--file", &file, "--surface", "openai", "--json"],
    )
    .await;
    assert_ok(&created);
    let id = last_json(&created)["id"].as_str().unwrap().to_owned();

    let cancelled = batches(&app, &["cancel", &id, "--json"]).await;
    assert_ok(&cancelled);
    assert_eq!(last_json(&cancelled)["status"], "cancelling");
    let watched = batches(&app, &["watch", &id, "--interval", "50ms", "--json"]).await;
    assert_ok(&watched);
    let done = last_json(&watched);
    assert_eq!(done["status"], "cancelled", "{done}");

    let unsent = batches(&app, &["results", &id, "--only", "canceled"]).await;
    assert_ok(&unsent);
    let unsent = parse_jsonl(&stdout(&unsent));
    assert_eq!(
        unsent.len() as u64,
        3 - done["request_counts"]["completed"].as_u64().unwrap()
    );
    assert!(
        unsent
            .iter()
            .all(|l| l["error"]["code"] == "batch_cancelled"),
        "{unsent:?}"
    );
    // No delete on the OpenAI surface: refused before any call.
    let delete = batches(&app, &["delete", &id]).await;
    assert_eq!(delete.status.code(), Some(1));
    assert!(
        stderr(&delete).contains("has no delete"),
        "{}",
        stderr(&delete)
    );
}

#[tokio::test]
async fn test_commands_drive_a_test_mode_server() {
    let app = spawn_with(|o| o.test_mode = true).await;
    let dir = tempfile::tempdir().unwrap();
    let test = |args: &'static [&'static str]| {
        let args: Vec<&str> = std::iter::once("test")
            .chain(args.iter().copied())
            .collect();
        let app = &app;
        async move { cli_with_key(app, Some(app.key), &args).await }
    };

    let out = test(&["clock"]).await;
    assert_ok(&out);
    assert!(stdout(&out).contains("(offset 0s)"), "{}", stdout(&out));
    let out = test(&["advance", "25h"]).await;
    assert_ok(&out);
    assert!(stdout(&out).contains("(offset 90000s)"), "{}", stdout(&out));
    let out = test(&["--json", "clock"]).await;
    assert_ok(&out);
    let clock: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (clock["type"].as_str(), clock["offset_seconds"].as_i64()),
        (Some("test_clock"), Some(90_000))
    );

    let rules = write(
        dir.path(),
        "rules.json",
        &[json!({"rules": [{"match": {"custom_id": "boom-*"}, "outcome": {"type": "errored", "error": {"type": "api_error", "message": "boom"}}}]}).to_string()],
    );
    let out = cli_with_key(&app, Some(app.key), &["test", "rules", &rules]).await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "1 rule(s)\n");
    let fixtures = write(
        dir.path(),
        "results.jsonl",
        &[r#"{"custom_id":"fx","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}}}"#.to_owned()],
    );
    let out = cli_with_key(&app, Some(app.key), &["test", "fixtures", &fixtures]).await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "loaded 1 fixture line(s)\n");
    let results = by_custom_id(
        app.run_with(
            &[("anthropic-version", VERSION)],
            &[request("boom-1"), request("fx")],
            std::time::Duration::from_secs(30),
        )
        .await,
    );
    assert_eq!(error_of(&results["boom-1"]), ("api_error", "boom"));
    assert_eq!(error_of(&results["fx"]), ("overloaded_error", "Overloaded"));

    let bad = write(
        dir.path(),
        "bad.jsonl",
        &[r#"{"custom_id":"x","result":{"type":"nope"}}"#.to_owned()],
    );
    let out = cli_with_key(&app, Some(app.key), &["test", "fixtures", &bad]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 1: result.type"),
        "{}",
        stderr(&out)
    );

    let out = test(&["reset"]).await;
    assert_ok(&out);
    assert!(stdout(&out).starts_with("reset; now "), "{}", stdout(&out));
    let out = test(&["clock"]).await;
    assert!(stdout(&out).contains("(offset 0s)"), "{}", stdout(&out));
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));

    let plain = spawn().await;
    let out = cli_with_key(&plain, Some(plain.key), &["test", "clock"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a server not in test mode answers 404"
    );
    assert!(stderr(&out).contains("not_found_error"), "{}", stderr(&out));
}

#[tokio::test]
async fn rerun_through_the_cli() {
    let app = spawn().await;
    let created = app
        .create(vec![
            request("fine"),
            json!({"custom_id": "bad-params", "params": {"model": "m", "max_tokens": 5}}),
        ])
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;

    let out = batches(&app, &["rerun", &id, "--only", "errored,expired", "--json"]).await;
    assert_ok(&out);
    let rerun: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(rerun["request_counts"]["processing"], 1);
    let new_id = rerun["id"].as_str().unwrap().to_owned();
    app.wait_ended(&new_id, Duration::from_secs(20)).await;
    let lines = app.results(&new_id).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["custom_id"], "bad-params");

    // The server's refusal, as it words it.
    let out = batches(&app, &["rerun", &id, "--only", "canceled"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("Message Batch {id} has no requests to re-run.")),
        "{}",
        stderr(&out)
    );
}

/// Runs `batchd webhooks <args>` against `app` with its key.
async fn webhooks(app: &TestApp, args: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("webhooks")
        .chain(args.iter().copied())
        .collect();
    cli_with_key(app, Some(app.key), &args).await
}

#[tokio::test]
async fn webhook_endpoints_through_the_cli() {
    let app = spawn_with(|o| {
        o.webhook_allow_http = true;
        o.webhook_allow_private = true;
        o.webhook_first_retry = Duration::from_millis(50);
    })
    .await;
    // A loopback port nobody listens on: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);

    // create prints the secret, the only time it is shown.
    let out = webhooks(
        &app,
        &["create", "--url", &url, "--description", "ops", "--json"],
    )
    .await;
    assert_ok(&out);
    let created: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("whep_") && secret.starts_with("whsec_"),
        "{created}"
    );
    assert_eq!(created["events"], json!(["message_batch.ended"]));
    assert_eq!(created["description"], "ops");

    // list and get show the endpoint, never the secret.
    let out = webhooks(&app, &["list"]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&id) && text.contains(&url), "{text}");
    assert!(!text.contains("whsec_"), "{text}");
    let out = webhooks(&app, &["list", "--json"]).await;
    assert_ok(&out);
    let page: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(page["data"][0]["id"], id.as_str());
    assert!(page["data"][0].get("secret").is_none(), "{page}");
    let out = webhooks(&app, &["get", &id]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&url) && text.contains("message_batch.ended"),
        "{text}"
    );
    assert!(!text.contains("whsec_"), "{text}");

    // rotate prints a new secret.
    let out = webhooks(&app, &["rotate", &id]).await;
    assert_ok(&out);
    let text = stdout(&out);
    let rotated = text
        .lines()
        .find_map(|l| l.strip_prefix("secret"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no secret in {text}"));
    assert!(rotated.starts_with("whsec_") && rotated != secret, "{text}");

    // A batch ends; its delivery fails and shows the error and the next retry.
    let batch = app.create_n(1).await;
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    app.wait_ended(&batch_id, Duration::from_secs(20)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let out = webhooks(&app, &["deliveries", &id, "--json"]).await;
        assert_ok(&out);
        let list: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        if list["data"][0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            break list["data"][0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no attempt: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivery["batch_id"], batch_id.as_str());
    assert!(delivery["last_error"].is_string(), "{delivery}");
    let out = webhooks(&app, &["deliveries", &id]).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("EVENT"), "{text}");
    assert!(
        text.contains(delivery["event_id"].as_str().unwrap()),
        "{text}"
    );

    // delete, then the endpoint is gone.
    let out = webhooks(&app, &["delete", &id]).await;
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), format!("deleted {id}"));
    let out = webhooks(&app, &["get", &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: not_found_error: Webhook endpoint {id} not found."
        )),
        "{}",
        stderr(&out)
    );

    // A refused URL prints the API's message and exits 1.
    let out = webhooks(&app, &["create", "--url", "ftp://example.com/hook"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "error: invalid_request_error: url: ftp://example.com/hook is not a valid URL"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}
