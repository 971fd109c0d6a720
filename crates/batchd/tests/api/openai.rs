//! The OpenAI Batch and Files surface: `/v1/files` and `/v1/batches`, driven as the `openai`
//! SDKs drive them (Bearer key, multipart uploads), on the same server as the Anthropic routes.

use std::time::{Duration, Instant};

use batchd_backends::{BackendSpec, Kind};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::helpers::*;

/// The test server seen through the OpenAI surface.
pub(crate) struct Oa<'a> {
    app: &'a TestApp,
    key: &'a str,
}

pub(crate) fn oa(app: &TestApp) -> Oa<'_> {
    Oa { app, key: app.key }
}

/// One part of a multipart form: its name, its filename if it is a file, its bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart form of `parts`, in order.
fn form(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "----batchd-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Oa<'_> {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .client
            .request(method, format!("{}{}", self.app.base, path))
            .header("authorization", format!("Bearer {}", self.key))
    }

    async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    async fn upload_form(&self, parts: &[Part<'_>]) -> Response {
        let (content_type, body) = form(parts);
        self.request(Method::POST, "/v1/files")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload")
    }

    /// Uploads `content` as a batch input file; panics unless the answer is 200.
    pub(crate) async fn upload(&self, filename: &str, content: &str) -> Value {
        let resp = self
            .upload_form(&[
                ("purpose", None, b"batch"),
                ("file", Some(filename), content.as_bytes()),
            ])
            .await;
        ok_json(resp).await
    }

    /// Uploads `lines` and creates a batch on them; returns the create's answer.
    pub(crate) async fn create(&self, endpoint: &str, lines: &[Value]) -> Value {
        let file = self.upload("input.jsonl", &jsonl(lines)).await;
        self.create_on(&file, endpoint).await
    }

    /// Creates a batch on the uploaded `file`; returns the create's answer.
    pub(crate) async fn create_on(&self, file: &Value, endpoint: &str) -> Value {
        let resp = self
            .post(
                "/v1/batches",
                &json!({"input_file_id": file["id"], "endpoint": endpoint, "completion_window": "24h"}),
            )
            .await;
        ok_json(resp).await
    }

    /// Uploads `lines` and creates a chat completions batch on them; returns the batch's id.
    async fn create_chat(&self, lines: &[Value]) -> String {
        let created = self.create("/v1/chat/completions", lines).await;
        created["id"].as_str().unwrap().to_owned()
    }

    /// The lines of the file a finished batch names in `field` (`output_file_id` or
    /// `error_file_id`).
    async fn file_lines(&self, batch: &Value, field: &str) -> Vec<Value> {
        let id = batch[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {batch}"));
        parse_jsonl(&self.content(id).await)
    }

    async fn batch(&self, id: &str) -> Value {
        ok_json(self.get(&format!("/v1/batches/{id}")).await).await
    }

    /// Polls until the batch reaches a final status.
    pub(crate) async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let batch = self.batch(id).await;
            let status = batch["status"].as_str().unwrap();
            if ["completed", "failed", "expired", "cancelled"].contains(&status) {
                return batch;
            }
            assert!(Instant::now() < deadline, "batch did not finish: {batch}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn content(&self, file_id: &str) -> String {
        let resp = self.get(&format!("/v1/files/{file_id}/content")).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }
}

pub(crate) async fn ok_json(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `n` chat lines `r0`, `r1`, … for `gpt-4o-mini`, line `i` saying `text(i)`.
fn chat_lines(n: usize, text: impl Fn(usize) -> String) -> Vec<Value> {
    (0..n)
        .map(|i| chat_line(&format!("r{i}"), "gpt-4o-mini", &text(i)))
        .collect()
}

pub(crate) fn chat_line(custom_id: &str, model: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]}
    })
}

/// Asserts the OpenAI error envelope: all four keys, in order, with these values.
async fn assert_oa_error(
    resp: Response,
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["message"], message, "{text}");
    assert_eq!(body["error"]["param"], json!(param), "{text}");
    assert_eq!(body["error"]["code"], json!(code), "{text}");
    assert_key_order(
        &text,
        &["\"message\":", "\"type\":", "\"param\":", "\"code\":"],
    );
}

const BATCH_KEYS: [&str; 22] = [
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
];

#[tokio::test]
async fn files_upload_list_retrieve_download_and_delete() {
    let app = spawn().await;
    let oa = oa(&app);
    let content = "{\"a\":1}\n{\"b\":2}\n";
    let resp = oa
        .upload_form(&[
            ("purpose", None, b"batch"),
            ("file", Some("in.jsonl"), content.as_bytes()),
        ])
        .await;
    assert_eq!(resp.status(), 200);
    for header in [
        "x-request-id",
        "openai-version",
        "openai-processing-ms",
        "openai-organization",
    ] {
        assert!(resp.headers().contains_key(header), "{header}");
    }
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(request_id.starts_with("req_") && request_id.len() == 36);
    assert_eq!(resp.headers()["openai-version"], "2020-10-01");
    let text = resp.text().await.unwrap();
    assert_key_order(
        &text,
        &[
            "\"object\":\"file\"",
            "\"id\":",
            "\"purpose\":\"batch\"",
            "\"filename\":\"in.jsonl\"",
            "\"bytes\":16",
            "\"created_at\":",
            "\"expires_at\":",
            "\"status\":\"processed\"",
            "\"status_details\":null",
        ],
    );
    let file: Value = serde_json::from_str(&text).unwrap();
    let id = file["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-") && id.len() == 27, "{id}");
    // Batch inputs expire after 30 days unless told otherwise.
    assert_eq!(
        file["expires_at"].as_u64().unwrap() - file["created_at"].as_u64().unwrap(),
        2_592_000
    );
    assert_eq!(oa.get(&format!("/v1/files/{id}")).await.status(), 200);
    assert_eq!(
        ok_json(oa.get(&format!("/v1/files/{id}")).await).await,
        file
    );

    let resp = oa.get(&format!("/v1/files/{id}/content")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"in.jsonl\""
    );
    assert_eq!(resp.text().await.unwrap(), content);

    // A second file, with its own expiry; lists are newest first by default.
    let resp = oa
        .upload_form(&[
            ("purpose", None, b"batch"),
            ("expires_after[anchor]", None, b"created_at"),
            ("expires_after[seconds]", None, b"3600"),
            ("file", Some("second.jsonl"), b"{}"),
        ])
        .await;
    let second = ok_json(resp).await;
    assert_eq!(
        second["expires_at"].as_u64().unwrap() - second["created_at"].as_u64().unwrap(),
        3600
    );
    let second_id = second["id"].as_str().unwrap();
    let list = ok_json(oa.get("/v1/files").await).await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second_id, id.as_str()]);
    assert_eq!(list["first_id"], second_id);
    assert_eq!(list["last_id"], id.as_str());
    assert_eq!(list["has_more"], false);
    let page = ok_json(oa.get("/v1/files?limit=1&order=asc").await).await;
    assert_eq!(page["data"][0]["id"], id.as_str());
    assert_eq!(page["has_more"], true);
    let page = ok_json(
        oa.get(&format!("/v1/files?limit=1&order=asc&after={id}"))
            .await,
    )
    .await;
    assert_eq!(page["data"][0]["id"], second_id);
    assert_eq!(page["has_more"], false);
    assert_oa_error(
        oa.get("/v1/files?order=sideways").await,
        400,
        "Invalid value: 'sideways'. Supported values are: 'asc' and 'desc'.",
        Some("order"),
        Some("invalid_value"),
    )
    .await;
    assert_oa_error(
        oa.get("/v1/files?limit=10001").await,
        400,
        "Invalid 'limit': integer above maximum value. Expected a value <= 10000, but got 10001 instead.",
        Some("limit"),
        Some("integer_above_max_value"),
    )
    .await;
    // An `after` naming no file of ours ends the paging.
    let empty = ok_json(oa.get("/v1/files?after=file-nope").await).await;
    assert_eq!(
        (&empty["data"], &empty["has_more"]),
        (&json!([]), &json!(false))
    );
    let none = ok_json(oa.get("/v1/files?purpose=batch_output").await).await;
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["first_id"], Value::Null);
    // Another workspace sees none of them.
    let other = app.as_key(KEY_B);
    let b = oa_of(&other);
    assert_eq!(ok_json(b.get("/v1/files").await).await["data"], json!([]));
    assert_oa_error(
        b.get(&format!("/v1/files/{id}")).await,
        404,
        &format!("No such File object: {id}"),
        Some("id"),
        None,
    )
    .await;

    // Delete: the file is gone from every route. An empty JSON body is accepted.
    let resp = oa
        .request(Method::DELETE, &format!("/v1/files/{id}"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let deleted = ok_json(resp).await;
    assert_eq!(
        deleted,
        json!({"object": "file", "id": id, "deleted": true})
    );
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        assert_oa_error(
            oa.get(&path).await,
            404,
            &format!("No such File object: {id}"),
            Some("id"),
            None,
        )
        .await;
    }
    let resp = oa
        .request(Method::DELETE, &format!("/v1/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let list = ok_json(oa.get("/v1/files").await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

fn oa_of(app: &TestApp) -> Oa<'_> {
    oa(app)
}

#[tokio::test]
async fn control_characters_in_a_filename_are_replaced() {
    let app = spawn().await;
    let oa = oa(&app);
    let file = oa.upload("in\u{0}put\u{1}.jsonl", "{}\n").await;
    assert_eq!(file["filename"], "in_put_.jsonl");
    let got = ok_json(
        oa.get(&format!("/v1/files/{}", file["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(got["filename"], "in_put_.jsonl");
}

#[tokio::test]
async fn uploads_are_refused_with_the_api_texts() {
    let app = spawn_with(|o| {
        o.openai_max_file_bytes = 64;
        o.openai_max_file_lines = 2;
    })
    .await;
    let oa = oa(&app);
    let bad = |purpose: &'static [u8], name: &'static str, content: &'static [u8]| {
        [("purpose", None, purpose), ("file", Some(name), content)]
    };
    assert_oa_error(
        oa.upload_form(&bad(b"vector_store", "a.jsonl", b"{}")).await,
        400,
        "'vector_store' is not one of ['fine-tune', 'assistants', 'batch', 'user_data', 'vision', 'evals'] - 'purpose'",
        Some("purpose"),
        None,
    )
    .await;
    let format = "Invalid file format for Batch API. Must be .jsonl";
    for parts in [
        bad(b"batch", "a.json", b"{}"),
        bad(b"batch", "a.jsonl", b""),
        bad(b"batch", "a.jsonl", b"{oops\n{}\n"),
    ] {
        assert_oa_error(oa.upload_form(&parts).await, 400, format, None, None).await;
    }
    assert_oa_error(
        oa.upload_form(&bad(b"batch", "a.jsonl", &[b'x'; 65])).await,
        400,
        "File is too large.",
        None,
        None,
    )
    .await;
    // More lines than a batch may have pass the upload, as on the hosted API: the batch
    // created on the file fails with `too_many_tasks`.
    let long = ok_json(
        oa.upload_form(&bad(b"batch", "a.jsonl", b"{}\n{}\n{}\n"))
            .await,
    )
    .await;
    let created = oa.create_on(&long, "/v1/chat/completions").await;
    let failed = oa.batch(created["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["errors"]["data"][0],
        json!({"code": "too_many_tasks", "message": "The batch exceeds the maximum of 2 requests.", "param": null, "line": null})
    );
    assert_oa_error(
        oa.upload_form(&[("file", Some("a.jsonl"), b"{}")]).await,
        400,
        "Missing required parameter: 'purpose'.",
        Some("purpose"),
        Some("missing_required_parameter"),
    )
    .await;
    assert_oa_error(
        oa.upload_form(&[("purpose", None, b"batch")]).await,
        400,
        "Missing required parameter: 'file'.",
        Some("file"),
        Some("missing_required_parameter"),
    )
    .await;
    // Later lines are not checked at upload, and other purposes get no JSONL check.
    ok_json(
        oa.upload_form(&bad(b"batch", "a.jsonl", b"{}\nnot json\n"))
            .await,
    )
    .await;
    let data = ok_json(
        oa.upload_form(&bad(b"user_data", "notes.txt", b"hello"))
            .await,
    )
    .await;
    assert_eq!(data["expires_at"], Value::Null);
    // ...and that purpose's content is not handed back.
    assert_oa_error(
        oa.get(&format!(
            "/v1/files/{}/content",
            data["id"].as_str().unwrap()
        ))
        .await,
        400,
        "Not allowed to download files of purpose: user_data",
        None,
        None,
    )
    .await;
    // A form may send its fields after its file, as Node's SDK does for `{ file, purpose }`:
    // the file is stored with the purpose and expiry the whole form names...
    // Each form, the purpose stored and the seconds until the file expires.
    let late: [(&[Part], &str, Option<i64>); 4] = [
        (
            &[
                ("file", Some("late.jsonl"), b"{}"),
                ("purpose", None, b"batch"),
            ],
            "batch",
            Some(30 * 86_400),
        ),
        // (Content a batch file may not have: the check that runs while the purpose is
        // unknown does not refuse another purpose's file.)
        (
            &[
                ("file", Some("late.txt"), b"x\n"),
                ("purpose", None, b"user_data"),
            ],
            "user_data",
            None,
        ),
        (
            &[
                ("expires_after[anchor]", None, b"created_at"),
                ("file", Some("late.txt"), b"x"),
                ("expires_after[seconds]", None, b"7200"),
                ("purpose", None, b"user_data"),
            ],
            "user_data",
            Some(7_200),
        ),
        (
            &[
                ("file", Some("late.jsonl"), b"{}"),
                ("purpose", None, b"batch"),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"3600"),
            ],
            "batch",
            Some(3_600),
        ),
    ];
    for (parts, purpose, lifetime) in late {
        let file = ok_json(oa.upload_form(parts).await).await;
        let created_at = file["created_at"].as_i64().unwrap();
        assert_eq!(
            (file["purpose"].as_str(), file["expires_at"].as_i64()),
            (Some(purpose), lifetime.map(|s| created_at + s)),
            "{file}"
        );
    }
    // ...and checked as that purpose's uploads are.
    for parts in [
        [
            ("file", Some("late.txt"), &b"{}"[..]),
            ("purpose", None, b"batch"),
        ],
        [
            ("file", Some("late.jsonl"), b"{oops\n"),
            ("purpose", None, b"batch"),
        ],
    ] {
        assert_oa_error(oa.upload_form(&parts).await, 400, format, None, None).await;
    }
    assert_oa_error(
        oa.upload_form(&[
            ("file", Some("late.jsonl"), b"{}"),
            ("purpose", None, b"vector_store"),
        ])
        .await,
        400,
        "'vector_store' is not one of ['fine-tune', 'assistants', 'batch', 'user_data', 'vision', 'evals'] - 'purpose'",
        Some("purpose"),
        None,
    )
    .await;
    // A body without a length is bounded as one with a length is: an endless preamble before
    // the first part is cut, not read forever.
    let (content_type, _) = form(&bad(b"batch", "a.jsonl", b"{}"));
    let endless = futures_util::stream::iter(
        std::iter::repeat_with(|| Ok::<_, std::io::Error>(vec![b'p'; 16 * 1024])).take(64),
    );
    assert_oa_error(
        oa.request(Method::POST, "/v1/files")
            .header("content-type", content_type)
            .body(reqwest::Body::wrap_stream(endless))
            .send()
            .await
            .expect("upload"),
        400,
        "File is too large.",
        None,
        None,
    )
    .await;
    // Nothing refused was stored.
    let list = ok_json(oa.get("/v1/files").await).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 7, "{list}");
}

#[tokio::test]
async fn authentication_uses_the_same_keys_with_the_openai_texts() {
    let app = spawn().await;
    let resp = app
        .client
        .get(format!("{}/v1/batches", app.base))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    assert_oa_error(
        resp,
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        None,
        None,
    )
    .await;
    let wrong = Oa {
        app: &app,
        key: "sk-wrong-key-1234",
    };
    assert_oa_error(
        wrong.get("/v1/files").await,
        401,
        "Incorrect API key provided: sk-**********1234. You can find your API key at https://platform.openai.com/account/api-keys.",
        None,
        Some("invalid_api_key"),
    )
    .await;
    // The organization and project headers are accepted and ignored.
    let resp = oa(&app)
        .request(Method::GET, "/v1/batches")
        .header("openai-organization", "org-somewhere-else")
        .header("openai-project", "proj_abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // No anthropic-version is needed, and unknown methods get the OpenAI envelope.
    let resp = oa(&app)
        .request(Method::PUT, "/v1/batches")
        .send()
        .await
        .unwrap();
    assert_oa_error(resp, 405, "Method not allowed.", None, None).await;
}

/// `OpenAI-Organization` / `OpenAI-Project` are ignored unless they name another workspace of
/// this server (by name or organization id, including one only a stored key names): then the
/// call is the API's 401 `mismatched_organization`. The key's own workspace, and values this
/// server does not know (a client's hosted organization id), pass.
#[tokio::test]
async fn organization_headers_naming_another_workspace_are_refused() {
    use batchd_domain::ids::organization_id;
    let app = spawn().await;
    let stored = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(storage_args(&app.data_dir))
        .args(["keys", "create", "--workspace", "team-x"])
        .output()
        .await
        .unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let call = |header: &'static str, value: String| {
        oa(&app)
            .request(Method::GET, "/v1/batches")
            .header(header, value)
            .send()
    };
    for (header, value) in [
        ("openai-organization", organization_id("ws-a")),
        (
            "openai-organization",
            organization_id("ws-a").to_uppercase(),
        ),
        (
            "openai-organization",
            "org-hosted-0123456789abcdef".to_owned(),
        ),
        ("openai-project", "ws-a".to_owned()),
        ("openai-project", "proj_abc".to_owned()),
    ] {
        let resp = call(header, value.clone()).await.unwrap();
        assert_eq!(resp.status(), 200, "{header}: {value}");
    }
    for (header, value) in [
        ("openai-organization", organization_id("ws-b")),
        (
            "openai-organization",
            organization_id("ws-b").to_uppercase(),
        ),
        ("openai-organization", "ws-b".to_owned()),
        ("openai-organization", organization_id("team-x")),
        ("openai-project", "ws-b".to_owned()),
        ("openai-project", "team-x".to_owned()),
    ] {
        assert_oa_error(
            call(header, value).await.unwrap(),
            401,
            "OpenAI-Organization header should match organization for API key",
            None,
            Some("mismatched_organization"),
        )
        .await;
    }
    // Other workspaces' keys still see their own.
    let resp = Oa {
        app: &app,
        key: KEY_B,
    }
    .request(Method::GET, "/v1/batches")
    .header("openai-organization", organization_id("ws-b"))
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn create_answers_validating_and_the_batch_runs_with_live_counts() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_millis(200);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let oa = oa(&app);
    let lines = chat_lines(4, |_| "hello".into());
    let file = oa.upload("input.jsonl", &jsonl(&lines)).await;
    // Written by hand: `metadata` keeps the order it is sent in.
    let body = format!(
        r#"{{"input_file_id":{},"endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{{ "z": "last", "a": "first" }}}}"#,
        file["id"]
    );
    let resp = oa
        .request(Method::POST, "/v1/batches")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let needles: Vec<String> = BATCH_KEYS.iter().map(|k| format!("\"{k}\":")).collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    assert_key_order(&text, &needles);
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created.as_object().unwrap().len(), 22);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("batch_") && id.len() == 38, "{id}");
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(created["endpoint"], "/v1/chat/completions");
    assert_eq!(created["input_file_id"], file["id"]);
    assert_eq!(created["completion_window"], "24h");
    assert_eq!(
        created["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    let created_at = created["created_at"].as_u64().unwrap();
    assert_eq!(created["expires_at"].as_u64().unwrap(), created_at + 86_400);
    for key in [
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "errors",
        "output_file_id",
        "error_file_id",
    ] {
        assert_eq!(created[key], Value::Null, "{key}");
    }
    assert!(
        text.contains(r#""metadata":{"z":"last","a":"first"}"#),
        "{text}"
    );
    assert_eq!(
        created["usage"],
        json!({"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0})
    );

    let running = oa.batch(&id).await;
    assert_eq!(running["status"], "in_progress", "{running}");
    assert_eq!(running["in_progress_at"].as_u64(), Some(created_at));
    assert_eq!(running["model"], "gpt-4o-mini");
    assert_eq!(running["request_counts"]["total"], 4);
    // Counts move while the batch runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = oa.batch(&id).await;
        let done = b["request_counts"]["completed"].as_u64().unwrap();
        if b["status"] == "in_progress" && (1..4).contains(&done) {
            break;
        }
        assert!(
            Instant::now() < deadline && b["status"] == "in_progress",
            "{b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn create_refuses_a_bad_envelope_with_the_api_texts() {
    let app = spawn().await;
    let oa = oa(&app);
    let good = json!({"input_file_id": "file-abc", "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases = [
        (
            without("input_file_id"),
            "Missing required parameter: 'input_file_id'.",
            Some("input_file_id"),
            Some("missing_required_parameter"),
        ),
        (
            without("endpoint"),
            "Missing required parameter: 'endpoint'.",
            Some("endpoint"),
            Some("missing_required_parameter"),
        ),
        (
            without("completion_window"),
            "Missing required parameter: 'completion_window'.",
            Some("completion_window"),
            Some("missing_required_parameter"),
        ),
        (
            with("endpoint", json!("/v1/invalid/endpoint")),
            "Invalid value: '/v1/invalid/endpoint'. Supported values are: '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses', and '/v1/moderations'.",
            Some("endpoint"),
            Some("invalid_value"),
        ),
        (
            with("completion_window", json!("1h")),
            "Invalid value: '1h'. Supported values are: '24h'.",
            Some("completion_window"),
            Some("invalid_value"),
        ),
        (
            with("metadata", json!({"tags": ["a"]})),
            "Invalid type for 'metadata.tags': expected a string, but got an array instead.",
            Some("metadata.tags"),
            Some("invalid_type"),
        ),
        (
            with(
                "metadata",
                Value::Object((0..17).map(|i| (format!("k{i}"), json!("v"))).collect()),
            ),
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with 17 properties instead.",
            Some("metadata"),
            Some("object_above_max_properties"),
        ),
        (
            with(
                "output_expires_after",
                json!({"anchor": "created_at", "seconds": 3_000_000}),
            ),
            "Invalid 'output_expires_after.seconds': integer above maximum value. Expected a value <= 2592000, but got 3000000 instead.",
            Some("output_expires_after.seconds"),
            Some("integer_above_max_value"),
        ),
    ];
    for (body, message, param, code) in cases {
        assert_oa_error(
            oa.post("/v1/batches", &body).await,
            400,
            message,
            param,
            code,
        )
        .await;
    }
    let resp = oa
        .request(Method::POST, "/v1/batches")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // None of them made a batch.
    assert_eq!(
        ok_json(oa.get("/v1/batches").await).await["data"],
        json!([])
    );
}

#[tokio::test]
async fn a_file_with_bad_lines_makes_a_failed_batch_listing_every_one() {
    let app = spawn().await;
    let oa = oa(&app);
    let good = chat_line("a", "gpt-4o-mini", "hi");
    let mut streaming = chat_line("s", "gpt-4o-mini", "hi");
    streaming["body"]["stream"] = json!(true);
    let content = format!(
        "{good}\nnot json\n{}\n{}\n{streaming}\n{good}\n",
        json!({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        json!({"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}),
    );
    let file = oa.upload("in.jsonl", &content).await;
    let created = oa.create_on(&file, "/v1/chat/completions").await;
    assert_eq!(created["status"], "validating");
    let failed = oa.batch(created["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["failed_at"].is_u64());
    assert_eq!(failed["in_progress_at"], Value::Null);
    assert_eq!(
        failed["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    assert_eq!(failed["errors"]["object"], "list");
    assert_eq!(
        failed["errors"]["data"],
        json!([
            {"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "param": null, "line": 2},
            {"code": "missing_required_parameter", "message": "Missing required parameter: 'custom_id'.", "param": "custom_id", "line": 3},
            {"code": "invalid_url", "message": "The URL provided for this request does not match the batch endpoint.", "param": "url", "line": 4},
            {"code": "streaming_unsupported", "message": "Chat Completions: Streaming is not supported in the Batch API.", "param": "body.stream", "line": 5},
            {"code": "duplicate_custom_id", "message": "The custom_id for this request is a duplicate of another request.", "param": "custom_id", "line": 6},
        ])
    );
    // A failed batch cannot be cancelled.
    assert_oa_error(
        oa.post(
            &format!("/v1/batches/{}/cancel", created["id"].as_str().unwrap()),
            &json!({}),
        )
        .await,
        409,
        "Cannot cancel a batch with status 'failed'.",
        None,
        None,
    )
    .await;

    // An input file that is not there (or not ours) fails the batch the same way.
    let other = app.as_key(KEY_B);
    let created = ok_json(
        oa_of(&other)
            .post(
                "/v1/batches",
                &json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            )
            .await,
    )
    .await;
    let failed = oa_of(&other).batch(created["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    let error = &failed["errors"]["data"][0];
    assert_eq!(error["code"], "invalid_request");
    assert_eq!(error["param"], "file_id");
    assert_eq!(error["line"], Value::Null);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Cannot find file {}, or organization ",
            file["id"].as_str().unwrap()
        )) && message.ends_with(" does not have access to it."),
        "{message}"
    );
}

#[tokio::test]
async fn one_model_per_batch_only_when_configured() {
    let lines = [
        chat_line("a", "gpt-4o-mini", "hi"),
        chat_line("b", "gpt-4o", "hi"),
    ];
    let app = spawn().await;
    let created = oa(&app).create("/v1/chat/completions", &lines).await;
    let batch = oa(&app).batch(created["id"].as_str().unwrap()).await;
    assert_ne!(batch["status"], "failed", "{batch}");

    let strict = spawn_with(|o| o.single_model_batches = true).await;
    let created = oa(&strict).create("/v1/chat/completions", &lines).await;
    let batch = oa(&strict).batch(created["id"].as_str().unwrap()).await;
    assert_eq!(batch["status"], "failed");
    assert_eq!(batch["errors"]["data"][0]["code"], "model_mismatch");
    assert_eq!(batch["errors"]["data"][0]["line"], 2);
}

#[tokio::test]
async fn lists_page_newest_first_and_each_surface_sees_only_its_own() {
    let app = spawn_with(|o| o.mock_latency = Duration::from_secs(30)).await;
    let oa = oa(&app);
    let mut ids = Vec::new();
    for i in 0..3 {
        let line = chat_line(&format!("r{i}"), "gpt-4o-mini", "hi");
        ids.push(oa.create_chat(&[line]).await);
    }
    let anthropic = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    let list = ok_json(oa.get("/v1/batches").await).await;
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], ids[2].as_str());
    assert_eq!(list["last_id"], ids[0].as_str());
    let page = ok_json(oa.get("/v1/batches?limit=2").await).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let rest = ok_json(
        oa.get(&format!("/v1/batches?limit=2&after={}", ids[1]))
            .await,
    )
    .await;
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
    // A cursor naming no batch of ours ends the paging rather than restarting it.
    for after in ["batch_00000000000081900000000000000000", anthropic.as_str()] {
        let empty = ok_json(oa.get(&format!("/v1/batches?after={after}")).await).await;
        assert_eq!(empty["data"], json!([]));
        assert_eq!(empty["has_more"], false);
    }
    assert_oa_error(
        oa.get("/v1/batches?limit=101").await,
        400,
        "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 instead.",
        Some("limit"),
        Some("integer_above_max_value"),
    )
    .await;
    assert_oa_error(
        oa.get("/v1/batches?limit=0").await,
        400,
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        Some("limit"),
        Some("integer_below_min_value"),
    )
    .await;

    // The Anthropic list shows only its batch; each surface's ids are 404 on the other.
    let list: Value = app.get("/v1/messages/batches").await.json().await.unwrap();
    let listed: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [anthropic.as_str()]);
    for path in [
        format!("/v1/messages/batches/{}", ids[0]),
        format!("/v1/messages/batches/{}/results", ids[0]),
    ] {
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
    }
    assert_eq!(
        app.post(
            &format!("/v1/messages/batches/{}/cancel", ids[0]),
            &json!({})
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.delete(&format!("/v1/messages/batches/{}", ids[0]))
            .await
            .status(),
        404
    );
    for path in [
        format!("/v1/batches/{anthropic}"),
        "/v1/batches/batch_nope".to_owned(),
    ] {
        let id = path.rsplit('/').next().unwrap();
        assert_oa_error(
            oa.get(&path).await,
            404,
            &format!("No batch found with id '{id}'."),
            None,
            None,
        )
        .await;
    }
    assert_oa_error(
        oa.post(&format!("/v1/batches/{anthropic}/cancel"), &json!({}))
            .await,
        404,
        &format!("No batch found with id '{anthropic}'."),
        None,
        None,
    )
    .await;
    // The Anthropic batch was left alone.
    assert_eq!(
        app.batch(&anthropic).await["processing_status"],
        "in_progress"
    );
    // Another workspace sees none of them.
    let other = app.as_key(KEY_B);
    assert_eq!(
        ok_json(oa_of(&other).get("/v1/batches").await).await["data"],
        json!([])
    );
    assert_eq!(
        oa_of(&other)
            .get(&format!("/v1/batches/{}", ids[0]))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn cancel_answers_cancelling_at_once_and_again_without_a_body() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_secs(2);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let oa = oa(&app);
    let lines = chat_lines(5, |_| "hi".into());
    let id = oa.create_chat(&lines).await;
    // The Python SDK sends no body but a JSON content type.
    let resp = oa
        .request(Method::POST, &format!("/v1/batches/{id}/cancel"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let cancelling = ok_json(resp).await;
    assert_eq!(cancelling["status"], "cancelling", "{cancelling}");
    assert!(cancelling["cancelling_at"].is_u64());
    let again = ok_json(
        oa.request(Method::POST, &format!("/v1/batches/{id}/cancel"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        ["cancelling", "cancelled"].contains(&again["status"].as_str().unwrap()),
        "{again}"
    );
    assert_eq!(again["cancelling_at"], cancelling["cancelling_at"]);
}

/// A server whose only backend is the mock, serving `gpt-*` models only.
async fn gpt_only() -> TestApp {
    spawn_with(|o| {
        o.backends = vec![BackendSpec {
            name: "gpt".into(),
            kind: Kind::Mock,
            base_url: String::new(),
            api_key: None,
            models: vec!["gpt-*".into()],
            max_concurrency: 16,
            requests_per_minute: 0,
            input_tokens_per_minute: 0,
            timeout: Duration::from_secs(10),
            max_attempts: 2,
            top_k: false,
            latency: Duration::ZERO,
            strict_models: false,
            anthropic_version: None,
        }];
        o.retry_base_delay = Duration::from_millis(20);
    })
    .await
}

fn by_custom_id(text: &str) -> std::collections::HashMap<String, Value> {
    parse_jsonl(text)
        .into_iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_owned(), l))
        .collect()
}

#[tokio::test]
async fn a_batch_completes_with_an_output_file_of_every_answer() {
    let app = spawn().await;
    let oa = oa(&app);
    let lines = chat_lines(20, |i| format!("line {i}"));
    let id = oa.create_chat(&lines).await;
    let done = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 20, "completed": 20, "failed": 0})
    );
    assert_eq!(done["error_file_id"], Value::Null);
    let finalizing = done["finalizing_at"].as_u64().unwrap();
    let completed = done["completed_at"].as_u64().unwrap();
    assert!(done["created_at"].as_u64().unwrap() <= finalizing && finalizing <= completed);
    let output_id = done["output_file_id"].as_str().unwrap();
    let file = ok_json(oa.get(&format!("/v1/files/{output_id}")).await).await;
    assert_eq!(file["purpose"], "batch_output");
    assert_eq!(file["filename"], format!("batch_{id}_output.jsonl"));
    let text = oa.content(output_id).await;
    assert_eq!(file["bytes"].as_u64().unwrap(), text.len() as u64);
    assert!(text.ends_with('\n'));
    let lines = parse_jsonl(&text);
    assert_eq!(lines.len(), 20);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["custom_id"], format!("r{i}"), "input order");
        assert!(line["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(line["error"], Value::Null);
        assert_eq!(line["response"]["status_code"], 200);
        let body = &line["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("You said: line {i}")
        );
    }
    assert_key_order(
        text.lines().next().unwrap(),
        &["\"id\":", "\"custom_id\":", "\"response\":", "\"error\":"],
    );
    // The batch's usage is its answers' tokens added up, in the batch's names.
    let tokens = |key: &str| -> u64 {
        lines
            .iter()
            .map(|l| l["response"]["body"]["usage"][key].as_u64().unwrap())
            .sum()
    };
    let (input, output) = (tokens("prompt_tokens"), tokens("completion_tokens"));
    assert!(input > 0 && output > 0, "{}", lines[0]);
    assert_eq!(
        done["usage"],
        json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens("total_tokens"),
        })
    );
    // The output file is listed with the others, and cannot be the input of a batch.
    let outputs = ok_json(oa.get("/v1/files?purpose=batch_output").await).await;
    assert_eq!(outputs["data"][0]["id"], output_id);
    // Cancelling a completed batch is a conflict.
    assert_oa_error(
        oa.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
        409,
        "Cannot cancel a batch with status 'completed'.",
        None,
        None,
    )
    .await;
}

#[tokio::test]
async fn a_mixed_batch_writes_good_lines_to_the_output_and_the_rest_to_the_error_file() {
    let app = gpt_only().await;
    let oa = oa(&app);
    let mut refused = chat_line("refused", "gpt-4o-mini", "hi");
    refused["body"]["n"] = json!(0);
    let lines = vec![
        chat_line("good-1", "gpt-4o-mini", "one"),
        chat_line("unserved", "llama-3-70b", "hi"),
        refused,
        chat_line("good-2", "gpt-4o", "two"),
    ];
    let id = oa.create_chat(&lines).await;
    let done = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 4, "completed": 2, "failed": 2})
    );
    let output = by_custom_id(&oa.content(done["output_file_id"].as_str().unwrap()).await);
    assert_eq!(output.len(), 2);
    assert_eq!(output["good-2"]["response"]["body"]["model"], "gpt-4o");
    let errors = by_custom_id(&oa.content(done["error_file_id"].as_str().unwrap()).await);
    assert_eq!(errors.len(), 2);
    let unserved = &errors["unserved"];
    assert_eq!(unserved["response"], Value::Null);
    assert_eq!(unserved["error"]["code"], "model_not_found");
    let refused = &errors["refused"];
    assert_eq!(refused["error"], Value::Null);
    assert_eq!(refused["response"]["status_code"], 400);
    assert_eq!(
        refused["response"]["body"]["error"]["type"],
        "invalid_request_error"
    );
    let file = ok_json(
        oa.get(&format!(
            "/v1/files/{}",
            done["error_file_id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(file["filename"], format!("batch_{id}_error.jsonl"));
}

#[tokio::test]
async fn a_cancelled_batch_ends_with_batch_cancelled_lines() {
    let app = spawn_with(|o| {
        o.mock_latency = Duration::from_millis(300);
        o.mock_concurrency = 2;
        o.concurrency = 2;
    })
    .await;
    let oa = oa(&app);
    let lines = chat_lines(30, |_| "hi".into());
    let id = oa.create_chat(&lines).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cancelling = ok_json(
        oa.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(cancelling["status"], "cancelling");
    let done = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(done["cancelled_at"].is_u64());
    assert_eq!(done["cancelling_at"], cancelling["cancelling_at"]);
    let completed = done["request_counts"]["completed"].as_u64().unwrap();
    assert!(completed < 30, "{done}");
    // Requests never sent are not counted (spec: expired/cancelled leave them out).
    assert_eq!(done["request_counts"]["failed"], 0);
    let errors = oa.file_lines(&done, "error_file_id").await;
    assert_eq!(errors.len() as u64, 30 - completed);
    for line in &errors {
        assert_eq!(line["response"], Value::Null);
        assert_eq!(
            line["error"],
            json!({"code": "batch_cancelled", "message": "This request was cancelled before it could be executed."})
        );
    }
    if completed > 0 {
        let output = oa.file_lines(&done, "output_file_id").await;
        assert_eq!(output.len() as u64, completed);
    }
    // Cancelling again is allowed and changes nothing.
    let again = ok_json(
        oa.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(again["status"], "cancelled");
}

#[tokio::test]
async fn an_expired_batch_ends_with_batch_expired_lines() {
    let app = spawn_with(|o| {
        o.batch_expiry = Duration::from_secs(1);
        o.mock_latency = Duration::from_secs(30);
        o.mock_concurrency = 1;
        o.concurrency = 1;
    })
    .await;
    let oa = oa(&app);
    let lines = chat_lines(3, |_| "hi".into());
    let id = oa.create_chat(&lines).await;
    let done = oa.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "expired", "{done}");
    assert!(done["expired_at"].is_u64());
    assert_eq!(done["output_file_id"], Value::Null);
    let errors = oa.file_lines(&done, "error_file_id").await;
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0]["error"],
        json!({"code": "batch_expired", "message": "This request could not be executed before the completion window expired."})
    );
    assert_oa_error(
        oa.post(&format!("/v1/batches/{id}/cancel"), &json!({}))
            .await,
        409,
        "Cannot cancel a batch with status 'expired'.",
        None,
        None,
    )
    .await;
}

#[tokio::test]
async fn files_of_many_pieces_upload_download_and_run_whole() {
    // Lines of ~600 bytes, so that the file spans several of the store's 1 MiB pieces and lines
    // straddle their boundaries.
    let app = spawn().await;
    let oa = oa(&app);
    let padding = "x".repeat(500);
    let lines = chat_lines(6_000, |i| format!("{i} {padding}"));
    let content = jsonl(&lines);
    assert!(content.len() > 3 * 1024 * 1024);
    let file = oa.upload("big.jsonl", &content).await;
    assert_eq!(file["bytes"].as_u64().unwrap(), content.len() as u64);
    let downloaded = oa.content(file["id"].as_str().unwrap()).await;
    assert!(
        downloaded == content,
        "the download differs from the upload"
    );

    let created = oa.create_on(&file, "/v1/chat/completions").await;
    let done = oa
        .wait_final(created["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 6_000);
    let output = oa.file_lines(&done, "output_file_id").await;
    assert_eq!(output.len(), 6_000);
    for (i, line) in output.iter().enumerate() {
        assert_eq!(line["custom_id"], format!("r{i}"));
    }
}
