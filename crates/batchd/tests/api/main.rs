//! Integration tests: each test starts the real server on a real socket (port 0) with its own
//! data dir and drives it over HTTP, as a client would.

mod auth_and_routing;
mod backends;
mod cancel;
mod cli;
mod client;
mod connections;
mod create;
mod create_budget;
#[cfg(unix)]
mod data_dir;
mod delete;
mod encoding;
mod expiry;
mod helpers;
mod ids;
mod keys;
mod list;
mod models;
mod openai;
mod openapi;
mod ops;
mod protocol_errors;
mod quotas;
mod rerun;
mod results;
mod retention;
mod retrieve;
mod scale;
mod shutdown;
mod storage_faults;
mod test_mode;
mod test_scripts;
mod tls;
mod ui;
mod versions;
mod webhook_delivery;
mod webhooks;
