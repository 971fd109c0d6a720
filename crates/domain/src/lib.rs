//! The domain of batchd, free of I/O: what a batch is, how its state moves, and the parsed,
//! validated forms of everything the API accepts ("parse, don't validate").
//!
//! Storage engines, the dispatcher and the HTTP layer all speak these types, so the rules live in
//! one place: the counts semantics in [`batch`], identifier formats in [`ids`], the `custom_id`
//! grammar in [`custom_id`], per-request `params` validation in [`params`], the models the API
//! serves and their output caps in [`models`], the validation texts all of them share in
//! [`validation`], and the tables of what the API's versions and betas change in
//! [`api_version`] and [`betas`]; the OpenAI surface's endpoints, ids and stored extras in
//! [`openai`]; shell-style
//! patterns in [`glob`], and test mode's scripted outcomes for the mock in [`script`].

pub mod api_version;
pub mod batch;
pub mod betas;
pub mod custom_id;
pub mod error_type;
pub mod glob;
pub mod ids;
pub mod keys;
pub mod models;
pub mod openai;
pub mod params;
pub mod raw_json;
pub mod rerun;
pub mod script;
pub mod timestamp;
pub mod validation;

pub use api_version::ApiVersion;
pub use batch::{Batch, EndReason, Outcome};
pub use custom_id::CustomId;
pub use error_type::ErrorType;
pub use ids::BatchId;
pub use timestamp::Timestamp;
