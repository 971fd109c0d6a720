//! The OpenAI surface on the shared engine, below HTTP: batches stored as the create route
//! stores them, the dispatcher sending their lines to the backends, and the finalizer writing
//! the output and error files, on a real store (SQLite, or PostgreSQL with
//! `BATCHD_TEST_STORE=postgres`). The routes' own tests live with the API suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use batchd::storage::{Location, Storage};
use batchd_backends::BackendTable;
use batchd_backends::config::BackendConfig;
use batchd_dispatcher::finalizer::{DEFAULT_OUTPUT_EXPIRY, OutputStores};
use batchd_dispatcher::{Config, Dispatcher};
use batchd_domain::openai::{Endpoint, FileId, OpenAiBatchMeta, batch_request_id};
use batchd_domain::{ApiVersion, Batch, BatchId, CustomId, EndReason, Timestamp};
use batchd_store::{
    Answer, CancelOutcome, DispatchStore, Ended, FILE_CHUNK_BYTES, FileDraft, NewBatch, NewRequest,
    Retry, Slot, Store, WorkItem,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

const WORKSPACE: &str = "ws-a";

struct Engine {
    storage: Storage,
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    _dir: tempfile::TempDir,
}

/// `gpt-*` and `text-embedding-*` go to a mock (with `latency`, one request on the model at a
/// time when it is slow), `claude-*` to an Anthropic upstream (that nothing listens on: its
/// lines here are the ones refused before sending); nothing else is served.
async fn engine(latency: Duration, config: Config) -> Engine {
    let engine = engine_with(latency, config, &[]).await;
    engine.start_finalizer();
    engine
}

/// [`engine`] with more `[[backends]]` entries before the others, and no finalizer yet.
async fn engine_with(latency: Duration, config: Config, extra: &[String]) -> Engine {
    engine_on(latency, config, extra, |store| store).await
}

/// [`engine_with`], the dispatcher seeing the store through `wrap`.
async fn engine_on(
    latency: Duration,
    config: Config,
    extra: &[String],
    wrap: impl FnOnce(Arc<dyn DispatchStore>) -> Arc<dyn DispatchStore>,
) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let url = batchd_store_postgres::testkit::database_for(dir.path()).await;
    let storage = Storage::open(Location {
        data_dir: dir.path(),
        database_url: url.as_deref(),
    })
    .await
    .unwrap();
    let store = storage.store();
    let mut entries = extra.to_vec();
    entries.extend([
        format!(
            "name = \"mock\"\nkind = \"mock\"\nmodels = [\"gpt-*\", \"text-embedding-*\"]\nlatency = \"{}ms\"\nmax_concurrency = 1\nmax_attempts = 1\n",
            latency.as_millis()
        ),
        "name = \"claude\"\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:9\"\nmodels = [\"claude-*\"]\n".to_owned(),
    ]);
    let specs: Vec<_> = entries
        .iter()
        .map(|e| {
            toml::from_str::<BackendConfig>(e)
                .unwrap()
                .resolve()
                .unwrap()
        })
        .collect();
    let backends = BackendTable::from_specs(&specs).unwrap();
    let dispatcher = Dispatcher::start(wrap(store.clone()), Arc::new(backends), config);
    Engine {
        storage,
        store,
        dispatcher,
        _dir: dir,
    }
}

impl Engine {
    fn start_finalizer(&self) {
        self.dispatcher.start_finalizer(OutputStores {
            results: self.store.clone(),
            files: self.store.clone(),
            clocks: self.store.clone(),
        });
    }

    /// Stores a batch as the create route does: each line's `body` as its params.
    async fn create(&self, endpoint: Endpoint, lines: &[(&str, &str)], window: Duration) -> Batch {
        let now = Timestamp::now();
        let draft = self
            .store
            .begin_batch(NewBatch {
                id: BatchId::generate_openai(now),
                workspace: WORKSPACE.into(),
                created_at: now,
                expires_at: now.plus(window),
                betas: Vec::new(),
                api_version: ApiVersion::default(),
                user_profile_id: None,
                endpoint,
                openai: Some(OpenAiBatchMeta {
                    input_file_id: FileId::generate().to_string(),
                    completion_window: "24h".into(),
                    metadata: None,
                    output_expires_after: None,
                    model: None,
                    errors: Vec::new(),
                    output_file_id: None,
                    error_file_id: None,
                    usage: None,
                }),
            })
            .await
            .unwrap();
        let requests = lines
            .iter()
            .enumerate()
            .map(|(i, (custom_id, body))| NewRequest {
                index: i as u32,
                custom_id: CustomId::parse_openai(custom_id).unwrap(),
                params: (*body).to_owned(),
                source: None,
            })
            .collect();
        self.store.append_requests(&draft, requests).await.unwrap();
        let batch = self
            .store
            .commit_batch(draft, lines.len() as u64)
            .await
            .unwrap();
        self.dispatcher.notify_created();
        batch
    }

    /// The batch once its files are written.
    async fn finalized(&self, id: &BatchId) -> Batch {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let batch = self.store.get_batch(WORKSPACE, id).await.unwrap().unwrap();
            if batch.finalized_at.is_some() {
                return batch;
            }
            assert!(Instant::now() < deadline, "not finalized: {batch:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The lines of a file, checking what every output file is.
    async fn lines(&self, batch: &Batch, id: Option<&FileId>, kind: &str) -> Vec<Value> {
        let Some(id) = id else {
            return Vec::new();
        };
        let file = self.store.get_file(WORKSPACE, id).await.unwrap().unwrap();
        assert_eq!(file.purpose, "batch_output");
        assert_eq!(file.filename, format!("batch_{}_{kind}.jsonl", batch.id));
        assert_eq!(
            file.expires_at,
            Some(file.created_at.plus(DEFAULT_OUTPUT_EXPIRY))
        );
        let mut bytes = Vec::new();
        let mut seq = 0;
        while let Some(chunk) = self.store.file_chunk(file.key, seq).await.unwrap() {
            assert!(chunk.len() <= FILE_CHUNK_BYTES);
            bytes.extend(chunk);
            seq += 1;
        }
        assert_eq!(seq as usize, (bytes.len()).div_ceil(FILE_CHUNK_BYTES));
        assert_eq!(bytes.len() as u64, file.bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n'), "every line ends with a newline");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn files(&self, batch: &Batch) -> (Vec<Value>, Vec<Value>) {
        let meta = batch.openai.as_ref().unwrap();
        (
            self.lines(batch, meta.output_file_id.as_ref(), "output")
                .await,
            self.lines(batch, meta.error_file_id.as_ref(), "error")
                .await,
        )
    }

    async fn stop(self) {
        self.dispatcher.shutdown(Duration::from_secs(5)).await;
        self.storage.close().await;
    }
}

fn chat(text: &str) -> String {
    format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{text}"}}]}}"#)
}

fn custom_ids(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_mixed_batch_completes_with_an_output_and_an_error_file() {
    let engine = engine(Duration::ZERO, Config::default()).await;
    let refused = r#"{"model":"gpt-4o-mini"}"#;
    let batch = engine
        .create(
            Endpoint::ChatCompletions,
            &[
                ("ok-1", &chat("hello there")),
                (
                    "unknown-model",
                    r#"{"model":"llama-nowhere","messages":[]}"#,
                ),
                ("refused", refused),
                (
                    "untranslatable",
                    r#"{"model":"claude-x","messages":[{"role":"user","content":"x"}],"n":2}"#,
                ),
                ("ok-2", &chat("second one")),
            ],
            Duration::from_secs(3600),
        )
        .await;
    let batch = engine.finalized(&batch.id).await;
    assert_eq!(batch.end_reason, Some(EndReason::Completed));
    assert_eq!((batch.succeeded, batch.errored), (2, 3));
    let (output, errors) = engine.files(&batch).await;

    // Input order in both files; each line's id is the deterministic one of its index.
    assert_eq!(custom_ids(&output), ["ok-1", "ok-2"]);
    assert_eq!(
        custom_ids(&errors),
        ["unknown-model", "refused", "untranslatable"]
    );
    assert_eq!(output[0]["id"], batch_request_id(batch.id.as_str(), 0));
    assert_eq!(output[1]["id"], batch_request_id(batch.id.as_str(), 4));
    let ok = &output[0];
    assert_eq!(ok["error"], Value::Null);
    assert_eq!(ok["response"]["status_code"], 200);
    assert_eq!(ok["response"]["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(ok["response"]["body"]["object"], "chat.completion");
    assert_eq!(
        ok["response"]["body"]["choices"][0]["message"]["content"],
        "You said: hello there"
    );

    let unknown = &errors[0];
    assert_eq!(unknown["response"], Value::Null);
    assert_eq!(unknown["error"]["code"], "model_not_found");
    assert_eq!(
        unknown["error"]["message"],
        "The model 'llama-nowhere' is not served by this batchd (no backend matches it)."
    );
    // The backend answered: its status and error body, and no `error`.
    let refused = &errors[1];
    assert_eq!(refused["error"], Value::Null);
    assert_eq!(refused["response"]["status_code"], 400);
    assert_eq!(
        refused["response"]["body"]["error"]["message"],
        "Missing required parameter: 'messages'."
    );
    // What an `anthropic` backend cannot express is refused as the line's 400, never sent.
    let untranslatable = &errors[2];
    assert_eq!(untranslatable["error"], Value::Null);
    assert_eq!(untranslatable["response"]["status_code"], 400);
    let error = &untranslatable["response"]["body"]["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("`n` = 2: the Messages API returns one completion per request"),
        "{error}"
    );
    engine.stop().await;
}

/// Chat completions for a model an `anthropic`-kind backend serves: the body goes upstream as
/// Messages params, the Message comes back as a `chat.completion`; what has no exact Messages
/// counterpart (`n > 1`, `logprobs`, audio) is that line's 400 `invalid_request_error` without
/// reaching the upstream; an upstream refusal keeps its status and body. The other OpenAI
/// endpoints stay unserved by such a backend.
#[tokio::test]
async fn chat_completions_run_through_an_anthropic_backend() {
    let fake = batchd_fake_upstream::FakeUpstream::start(
        batchd_fake_upstream::FakeConfig::default().record_requests(16),
    )
    .await
    .unwrap();
    let claude = format!(
        "name = \"claude-up\"\nkind = \"anthropic\"\nbase_url = \"{}\"\nmodels = [\"claude-up-*\"]\nmax_attempts = 1\n",
        fake.url()
    );
    let engine = engine_with(Duration::ZERO, Config::default(), &[claude]).await;
    engine.start_finalizer();
    let body = |extra: &str, text: &str| {
        format!(
            r#"{{"model":"claude-up-1","messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"{text}"}}],"max_tokens":20{extra}}}"#
        )
    };
    let batch = engine
        .create(
            Endpoint::ChatCompletions,
            &[
                ("ok", &body("", "hello fake world")),
                ("n", &body(r#","n":2"#, "two please")),
                ("logprobs", &body(r#","logprobs":true"#, "probs")),
                (
                    "audio",
                    &body(
                        r#","modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"}"#,
                        "speak",
                    ),
                ),
                (
                    "upstream-refuses",
                    &body("", "[[fake:always,status=400,message=max_tokens: too large]] x"),
                ),
            ],
            Duration::from_secs(3600),
        )
        .await;
    let batch = engine.finalized(&batch.id).await;
    assert_eq!((batch.succeeded, batch.errored), (1, 4));
    let (output, errors) = engine.files(&batch).await;

    assert_eq!(custom_ids(&output), ["ok"]);
    let ok = &output[0]["response"];
    assert_eq!(ok["status_code"], 200);
    let completion = &ok["body"];
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(completion["model"], "claude-up-1");
    assert_eq!(
        completion["choices"][0]["message"],
        json!({"role": "assistant", "content": "hello fake world", "refusal": null, "annotations": []})
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let usage = &completion["usage"];
    assert_eq!(usage["completion_tokens"], 3);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + 3)
    );

    // Only the two lines that could be expressed went upstream, as Messages params.
    let sent = fake.stats().recent_requests();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|r| r.path == "/v1/messages"));
    assert_eq!(sent[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent[0].json(),
        json!({"model": "claude-up-1", "max_tokens": 20, "system": "Be brief.",
               "messages": [{"role": "user", "content": "hello fake world"}]})
    );

    assert_eq!(
        custom_ids(&errors),
        ["n", "logprobs", "audio", "upstream-refuses"]
    );
    for (line, needle) in errors[..3].iter().zip(["`n` = 2", "`logprobs`", "`audio`"]) {
        assert_eq!(line["error"], Value::Null, "{line}");
        assert_eq!(line["response"]["status_code"], 400, "{line}");
        let error = &line["response"]["body"]["error"];
        assert_eq!(error["type"], "invalid_request_error", "{line}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(needle), "{line}");
        assert!(message.contains("backend `claude-up`"), "{line}");
    }
    let refused = &errors[3]["response"];
    assert_eq!(refused["status_code"], 400);
    assert_eq!(refused["body"]["error"]["message"], "max_tokens: too large");

    // Embeddings have no Messages counterpart: the line is never sent.
    let embeddings = engine
        .create(
            Endpoint::Embeddings,
            &[("vector", r#"{"model":"claude-up-1","input":"x"}"#)],
            Duration::from_secs(3600),
        )
        .await;
    let embeddings = engine.finalized(&embeddings.id).await;
    let (_, errors) = engine.files(&embeddings).await;
    assert_eq!(errors[0]["error"]["code"], "endpoint_not_supported");
    assert_eq!(
        errors[0]["error"]["message"],
        "backend `claude-up` cannot serve /v1/embeddings"
    );
    assert_eq!(fake.stats().recent_requests().len(), 2);
    engine.stop().await;
}

#[tokio::test]
async fn a_batch_without_failures_has_no_error_file() {
    let engine = engine(Duration::ZERO, Config::default()).await;
    let batch = engine
        .create(
            Endpoint::Embeddings,
            &[
                (
                    "a",
                    r#"{"model":"text-embedding-3-small","input":"cat","dimensions":8}"#,
                ),
                (
                    "b",
                    r#"{"model":"text-embedding-3-small","input":["x","y"]}"#,
                ),
            ],
            Duration::from_secs(3600),
        )
        .await;
    let batch = engine.finalized(&batch.id).await;
    let meta = batch.openai.as_ref().unwrap();
    assert!(meta.output_file_id.is_some());
    assert_eq!(meta.error_file_id, None);
    let (output, _) = engine.files(&batch).await;
    assert_eq!(custom_ids(&output), ["a", "b"]);
    let body = &output[0]["response"]["body"];
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        output[1]["response"]["body"]["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    engine.stop().await;
}

/// One dispatch slot and a slow model: a cancel made at once finds most requests unsent.
fn one_at_a_time() -> Config {
    Config {
        concurrency: 1,
        claim_group: 1,
        ..Config::default()
    }
}

#[tokio::test]
async fn a_cancelled_batch_lists_its_unsent_requests_as_batch_cancelled() {
    let engine = engine(Duration::from_millis(500), one_at_a_time()).await;
    let lines: Vec<(String, String)> = (0..8)
        .map(|i| (format!("r{i}"), chat(&format!("number {i}"))))
        .collect();
    let refs: Vec<(&str, &str)> = lines
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let batch = engine
        .create(Endpoint::ChatCompletions, &refs, Duration::from_secs(3600))
        .await;
    match engine
        .store
        .cancel_batch(WORKSPACE, &batch.id, Timestamp::now())
        .await
        .unwrap()
    {
        CancelOutcome::Canceling(b) => engine.dispatcher.notify_canceled(b.key),
        other => panic!("not canceling: {other:?}"),
    }
    let batch = engine.finalized(&batch.id).await;
    assert_eq!(batch.end_reason, Some(EndReason::Canceled));
    let (output, errors) = engine.files(&batch).await;
    // Every request has exactly one line, in input order within each file.
    let mut all: Vec<&str> = custom_ids(&output);
    all.extend(custom_ids(&errors));
    all.sort();
    assert_eq!(all, ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    assert!(errors.len() >= 4, "most were never sent: {errors:?}");
    for line in &errors {
        assert_eq!(line["response"], Value::Null);
        assert_eq!(line["error"]["code"], "batch_cancelled");
        assert_eq!(
            line["error"]["message"],
            "This request was cancelled before it could be executed."
        );
    }
    engine.stop().await;
}

#[tokio::test]
async fn an_expired_batch_lists_its_unsent_requests_as_batch_expired() {
    let engine = engine(Duration::from_millis(500), one_at_a_time()).await;
    let lines: Vec<(String, String)> = (0..8)
        .map(|i| (format!("r{i}"), chat(&format!("number {i}"))))
        .collect();
    let refs: Vec<(&str, &str)> = lines
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let batch = engine
        .create(Endpoint::ChatCompletions, &refs, Duration::from_millis(700))
        .await;
    let batch = engine.finalized(&batch.id).await;
    assert_eq!(batch.end_reason, Some(EndReason::Expired));
    let (output, errors) = engine.files(&batch).await;
    assert_eq!(output.len() + errors.len(), 8);
    assert!(errors.len() >= 4, "most never ran: {errors:?}");
    let expired = errors
        .iter()
        .filter(|l| l["error"]["code"] == "batch_expired")
        .count();
    assert_eq!(expired, errors.len());
    assert_eq!(
        errors[0]["error"]["message"],
        "This request could not be executed before the completion window expired."
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_file_larger_than_one_piece_is_written_in_pieces() {
    let engine = engine(Duration::ZERO, Config::default()).await;
    // About 200 kB per line (four vectors of the largest model's 3,072 dimensions): 8 lines
    // take two pieces.
    let body = r#"{"model":"text-embedding-3-large","input":["a","b","c","d"]}"#;
    let lines: Vec<(String, &str)> = (0..8).map(|i| (format!("e{i}"), body)).collect();
    let refs: Vec<(&str, &str)> = lines.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let batch = engine
        .create(Endpoint::Embeddings, &refs, Duration::from_secs(3600))
        .await;
    let batch = engine.finalized(&batch.id).await;
    let file = engine
        .store
        .get_file(
            WORKSPACE,
            batch
                .openai
                .as_ref()
                .unwrap()
                .output_file_id
                .as_ref()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(file.bytes > FILE_CHUNK_BYTES as u64, "{}", file.bytes);
    let (output, errors) = engine.files(&batch).await;
    assert_eq!(
        custom_ids(&output),
        ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    );
    assert!(errors.is_empty());
    engine.stop().await;
}

#[tokio::test]
async fn a_batch_that_ended_while_no_finalizer_ran_is_finalized_when_one_starts() {
    // As after a crash between the batch's end and its files.
    let engine = engine_with(Duration::ZERO, Config::default(), &[]).await;
    let batch = engine
        .create(
            Endpoint::ChatCompletions,
            &[("only", &chat("hi"))],
            Duration::from_secs(3600),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = engine
            .store
            .get_batch(WORKSPACE, &batch.id)
            .await
            .unwrap()
            .unwrap();
        if now.is_ended() {
            assert_eq!(now.finalized_at, None);
            break;
        }
        assert!(Instant::now() < deadline, "never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.start_finalizer();
    let batch = engine.finalized(&batch.id).await;
    let (output, _) = engine.files(&batch).await;
    assert_eq!(custom_ids(&output), ["only"]);
    engine.stop().await;
}

#[tokio::test]
async fn an_openai_upstream_is_retried_and_its_final_answer_kept() {
    let fake = batchd_fake_upstream::FakeUpstream::start(Default::default())
        .await
        .unwrap();
    let vllm = format!(
        "name = \"vllm\"\nkind = \"openai\"\nbase_url = \"{}/v1\"\nmodels = [\"llama-*\"]\nmax_attempts = 3\ntimeout = \"1s\"\n",
        fake.url()
    );
    let config = Config {
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(50),
        ..Config::default()
    };
    let engine = engine_with(Duration::ZERO, config, &[vllm]).await;
    engine.start_finalizer();
    let llama = |text: &str| {
        format!(r#"{{"model":"llama-3","messages":[{{"role":"user","content":"{text}"}}]}}"#)
    };
    let batch = engine
        .create(
            Endpoint::ChatCompletions,
            &[
                ("once-limited", &llama("[[fake:fail=1,status=429]] hello")),
                (
                    "always-limited",
                    &llama("[[fake:always,status=429,message=Slow down]] x"),
                ),
                (
                    "refused",
                    &llama("[[fake:always,status=400,message=Bad prompt]] y"),
                ),
                ("hangs", &llama("[[fake:always,kind=hang]] z")),
            ],
            Duration::from_secs(3600),
        )
        .await;
    let batch = engine.finalized(&batch.id).await;
    let (output, errors) = engine.files(&batch).await;
    assert_eq!(custom_ids(&output), ["once-limited"]);
    assert_eq!(output[0]["response"]["body"]["object"], "chat.completion");
    assert_eq!(custom_ids(&errors), ["always-limited", "refused", "hangs"]);
    // Retried to the end of its attempts, then the upstream's last answer as it gave it.
    let limited = &errors[0];
    assert_eq!(limited["error"], Value::Null);
    assert_eq!(limited["response"]["status_code"], 429);
    assert_eq!(limited["response"]["body"]["error"]["message"], "Slow down");
    let refused = &errors[1];
    assert_eq!(refused["response"]["status_code"], 400);
    assert_eq!(
        refused["response"]["body"]["error"]["message"],
        "Bad prompt"
    );
    // Never answered: no response, a timeout code.
    let hangs = &errors[2];
    assert_eq!(hangs["response"], Value::Null);
    assert_eq!(hangs["error"]["code"], "request_timeout");
    assert_eq!(hangs["error"]["message"], "The request timed out.");
    // 2 + 3 + 1 (a refusal is final) + 3 attempts.
    assert_eq!(
        fake.stats()
            .requests(batchd_fake_upstream::Endpoint::ChatCompletions),
        9
    );
    engine.stop().await;
}

/// What another process sharing the storage does to this one's finalizing, as seen by it.
enum Rival {
    /// Finalizes every batch just before this process does.
    Overtakes,
    /// Holds every batch's finalizing until `release` is set (a live process writing it).
    Holds { release: AtomicBool },
    /// This process's first finalize fails as a crash between writing the files and recording
    /// them would leave it: not recorded.
    Interrupts { fired: AtomicBool },
    /// No other process: the store is only watched.
    Absent,
}

/// A store with a [`Rival`], which also tells its `Notify` each time a maintenance pass ends
/// (`next_expiry` is a pass's last read, for the wait before the next).
struct Contested(Arc<dyn DispatchStore>, Arc<Rival>, Arc<Notify>);

#[async_trait::async_trait]
impl DispatchStore for Contested {
    async fn claim_finalize(&self, batch_key: i64) -> batchd_store::Result<bool> {
        if let Rival::Holds { release } = &*self.1
            && !release.load(Ordering::SeqCst)
        {
            return Ok(false);
        }
        self.0.claim_finalize(batch_key).await
    }

    async fn finalize(
        &self,
        batch_key: i64,
        meta: &OpenAiBatchMeta,
        files: &[(&FileDraft, u64)],
        now: Timestamp,
    ) -> batchd_store::Result<bool> {
        match &*self.1 {
            Rival::Overtakes => {
                let mut theirs = meta.clone();
                theirs.output_file_id = None;
                theirs.error_file_id = None;
                assert!(self.0.finalize(batch_key, &theirs, &[], now).await?);
            }
            Rival::Interrupts { fired } if !fired.swap(true, Ordering::SeqCst) => {
                return Err(batchd_store::misuse("interrupted before the record"));
            }
            _ => {}
        }
        self.0.finalize(batch_key, meta, files, now).await
    }

    async fn claim(
        &self,
        limit: usize,
        now: Timestamp,
        skip: &[i64],
    ) -> batchd_store::Result<Vec<WorkItem>> {
        self.0.claim(limit, now, skip).await
    }
    async fn release(&self, slots: &[Slot]) -> batchd_store::Result<()> {
        self.0.release(slots).await
    }
    async fn defer(&self, retries: &[Retry], now: Timestamp) -> batchd_store::Result<()> {
        self.0.defer(retries, now).await
    }
    async fn record(&self, answers: &[Answer], now: Timestamp) -> batchd_store::Result<Ended> {
        self.0.record(answers, now).await
    }
    async fn finish_due(&self, now: Timestamp) -> batchd_store::Result<Ended> {
        self.0.finish_due(now).await
    }
    async fn canceling(&self) -> batchd_store::Result<Vec<i64>> {
        self.0.canceling().await
    }
    async fn next_expiry(&self) -> batchd_store::Result<Option<Timestamp>> {
        let next = self.0.next_expiry().await;
        self.2.notify_one();
        next
    }
    async fn archive_due(&self, cutoff: Timestamp, now: Timestamp) -> batchd_store::Result<u64> {
        self.0.archive_due(cutoff, now).await
    }
    async fn purge_deleted(&self, limit: u32) -> batchd_store::Result<u64> {
        self.0.purge_deleted(limit).await
    }
    async fn unfinalized(&self, limit: u32) -> batchd_store::Result<Vec<Batch>> {
        self.0.unfinalized(limit).await
    }
}

async fn contested(rival: Rival) -> (Engine, Arc<Rival>) {
    let rival = Arc::new(rival);
    let (engine, _) = watched(Duration::ZERO, Config::default(), rival.clone()).await;
    (engine, rival)
}

/// An engine whose dispatcher sees the store as [`Contested`] by `rival`, with its finalizer
/// started, and what is told when a maintenance pass ends.
async fn watched(latency: Duration, config: Config, rival: Arc<Rival>) -> (Engine, Arc<Notify>) {
    let passes = Arc::new(Notify::new());
    let told = passes.clone();
    let engine = engine_on(latency, config, &[], move |store| {
        Arc::new(Contested(store, rival, told))
    })
    .await;
    engine.start_finalizer();
    (engine, passes)
}

impl Engine {
    /// A batch of one good line and one for a model nobody serves: both files to write.
    async fn two_file_batch(&self) -> Batch {
        self.create(
            Endpoint::ChatCompletions,
            &[("ok", &chat("hi")), ("unknown", r#"{"model":"nope"}"#)],
            Duration::from_secs(3600),
        )
        .await
    }

    /// The workspace's visible files.
    async fn visible_files(&self) -> Vec<batchd_store::StoredFile> {
        let page = self.store.list_files(WORKSPACE, None, None, 100, true);
        page.await.unwrap().files
    }
}

#[tokio::test]
async fn files_written_for_a_batch_another_process_finalized_never_show() {
    let (engine, _) = contested(Rival::Overtakes).await;
    let batch = engine.two_file_batch().await;
    let batch = engine.finalized(&batch.id).await;
    // The other process's record counts; the files this one wrote never became visible.
    let meta = batch.openai.as_ref().unwrap();
    assert_eq!(
        (meta.output_file_id.as_ref(), meta.error_file_id.as_ref()),
        (None, None)
    );
    assert!(engine.visible_files().await.is_empty());
    engine.stop().await;
}

#[tokio::test]
async fn a_batch_another_live_process_finalizes_is_left_to_it() {
    let (engine, rival) = contested(Rival::Holds {
        release: AtomicBool::new(false),
    })
    .await;
    let batch = engine.two_file_batch().await;
    // Ended, and looked at by the finalizer, but not this process's to write.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !engine
        .store
        .unfinalized(10)
        .await
        .unwrap()
        .iter()
        .any(|b| b.key == batch.key)
    {
        assert!(Instant::now() < deadline, "the batch never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The finalizer looks again every maintenance interval (1 s here): give it a few looks.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(engine.visible_files().await.is_empty());
    let held = engine
        .store
        .get_batch(WORKSPACE, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.finalized_at, None);
    // Once it is free (its holder died), this process writes it.
    let Rival::Holds { release } = &*rival else {
        unreachable!()
    };
    release.store(true, Ordering::SeqCst);
    let batch = engine.finalized(&batch.id).await;
    let (output, errors) = engine.files(&batch).await;
    assert_eq!((output.len(), errors.len()), (1, 1));
    engine.stop().await;
}

#[tokio::test]
async fn files_of_an_unrecorded_finalize_never_show_and_the_batch_is_written_again() {
    let (engine, _) = contested(Rival::Interrupts {
        fired: AtomicBool::new(false),
    })
    .await;
    let batch = engine.two_file_batch().await;
    let batch = engine.finalized(&batch.id).await;
    let (output, errors) = engine.files(&batch).await;
    assert_eq!((output.len(), errors.len()), (1, 1));
    // Only the recorded attempt's two files are visible; the first attempt's are not.
    assert_eq!(engine.visible_files().await.len(), 2);
    engine.stop().await;
}

/// A test clock's advance ends an OpenAI batch in the store (as the advance route does); told
/// so, the dispatcher has its files written at once, not at the next maintenance interval.
#[tokio::test]
async fn an_openai_batch_expired_by_a_test_clock_is_finalized_at_once() {
    let before = Timestamp::now();
    let (engine, passes) = watched(
        Duration::from_secs(3_600),
        Config {
            maintenance_interval: Duration::from_secs(3_600),
            ..one_at_a_time()
        },
        Arc::new(Rival::Absent),
    )
    .await;
    let batch = engine
        .create(
            Endpoint::ChatCompletions,
            // One request, held at the mock: nothing it does wakes maintenance, which would
            // end the batch itself.
            &[("r0", &chat("zero"))],
            Duration::from_secs(24 * 3_600),
        )
        .await;
    // Maintenance makes a pass as the dispatcher starts. One still running when the clock
    // moves ends the batch itself (a CI run on PostgreSQL saw it), so the clock moves only
    // once that pass is over; the next is an hour away.
    passes.notified().await;
    engine
        .store
        .advance_clock(WORKSPACE, 25 * 3_600 * 1_000_000)
        .await
        .unwrap();
    let settled = engine
        .store
        .settle(Timestamp::now(), Duration::from_secs(29 * 86_400))
        .await
        .unwrap();
    assert_eq!(
        settled.ended.batches,
        vec![(batch.id.clone(), EndReason::Expired)]
    );
    engine.dispatcher.notify_ended(settled.ended);
    let batch = engine.finalized(&batch.id).await;
    let (output, errors) = engine.files(&batch).await;
    assert!(output.is_empty());
    assert_eq!(custom_ids(&errors), ["r0"]);
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_expired"));
    // The record and the file are on the workspace's clock, a day ahead, as an upload's are.
    let ahead = before.plus(Duration::from_secs(25 * 3_600));
    assert!(batch.finalized_at.unwrap() >= ahead, "{batch:?}");
    let id = batch.openai.unwrap().error_file_id.unwrap();
    let file = engine
        .store
        .get_file(WORKSPACE, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(file.created_at >= ahead, "{file:?}");
    assert_eq!(
        file.expires_at,
        Some(file.created_at.plus(DEFAULT_OUTPUT_EXPIRY))
    );
    engine.stop().await;
}
