//! `batchd-client`: an async client for the Anthropic Message Batches API, and for the OpenAI
//! Batch and Files API batchd also serves (`upload_file`, `create_openai_batch`, … with the
//! wire types of [`wire::openai`]).
//!
//! It talks to batchd and to `https://api.anthropic.com` alike, and behaves like the official
//! SDKs on the wire: the same headers (`x-api-key`, `anthropic-version: 2023-06-01`, optional
//! `anthropic-beta`, `x-stainless-retry-count`), the same retry policy ([`retry`]), the same
//! auto-pagination ([`Client::list_all`]) and the same results download (retrieve first, then
//! dial `results_url` verbatim), with the JSONL parsed incrementally ([`jsonl`]).
//!
//! ```no_run
//! # async fn demo() -> batchd_client::Result<()> {
//! use batchd_client::{Client, ListParams};
//! use futures_util::StreamExt;
//!
//! let client = Client::builder("http://127.0.0.1:8080", "sk-…").max_retries(3).build()?;
//! let mut batches = client.list_all(ListParams { limit: Some(100), ..Default::default() });
//! while let Some(batch) = batches.next().await {
//!     let batch = batch?;
//!     println!("{} {}", batch.id, batch.processing_status.as_str());
//! }
//! # Ok(()) }
//! ```
//!
//! TLS is rustls (reqwest's `rustls` feature: the aws-lc-rs provider and the platform's
//! certificate verifier).

mod client;
mod error;
pub mod jsonl;
pub mod retry;

pub use batchd_wire as wire;
pub use batchd_wire::{
    BatchRequest, BatchResult, CreateBatch, DeletedMessageBatch, ListPage, MessageBatch,
    ProcessingStatus, RequestCounts, ResultLine,
};
pub use client::{
    ANTHROPIC_VERSION, BATCHES_BETA, Client, ClientBuilder, DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, ListParams, OpenAiListParams,
};
pub use error::{Error, Result};
pub use reqwest::StatusCode;
