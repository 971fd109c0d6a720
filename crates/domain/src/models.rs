//! The models the hosted API serves, as data: which ids and aliases exist, the id an alias
//! resolves to (the `model` of the answer), the most output tokens a request may ask for, and
//! whether the batch-only `output-300k-2026-03-24` beta raises that cap. The rule that turns
//! the table into an errored row ([`check_max_tokens`]) lives here too.
//!
//! Values follow the models overview (<https://platform.claude.com/docs/en/about-claude/models/overview>):
//! "Starting with the Claude 4.6 generation, model IDs use a dateless format that is also a
//! pinned snapshot"; only older aliases resolve to a dated id. Where the docs give no number
//! for a model, its family's value is used (128000 for the 5.x Fable and Mythos models) and the
//! 300k beta is taken not to apply; a wrong guess costs a row's error text, nothing else.
//! Retired models are not listed: the API answers them as unknown.
//!
//! A model missing from the table is never capped: self-hosted backends serve any model name,
//! and only the upstream knows its limits.

use crate::ErrorType;
use crate::params::ParamsError;

/// The beta that lets covered models write up to [`BATCH_OUTPUT_CAP`] tokens in a batch.
pub const OUTPUT_300K_BETA: &str = "output-300k-2026-03-24";

/// `max_tokens` a covered model may ask for in a batch with [`OUTPUT_300K_BETA`].
pub const BATCH_OUTPUT_CAP: u64 = 300_000;

/// One model id the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// What a request may name.
    pub id: &'static str,
    /// What the answer's `model` says: a dated id for pre-4.6 aliases, else `id` itself.
    pub resolved: &'static str,
    /// Most output tokens on the synchronous Messages API, and in a batch without the beta.
    pub max_output: u64,
    /// Whether [`OUTPUT_300K_BETA`] raises the cap to [`BATCH_OUTPUT_CAP`] in a batch.
    pub output_300k: bool,
}

const fn model(id: &'static str, max_output: u64, output_300k: bool) -> Model {
    Model {
        id,
        resolved: id,
        max_output,
        output_300k,
    }
}

const fn alias(id: &'static str, resolved: &'static str, max_output: u64) -> Model {
    Model {
        id,
        resolved,
        max_output,
        output_300k: false,
    }
}

/// Every model id and alias the API accepts, newest first.
pub const MODELS: &[Model] = &[
    model("claude-fable-5-2", 128_000, false),
    model("claude-mythos-5-2", 128_000, false),
    model("claude-fable-5-1", 128_000, false),
    model("claude-mythos-5-1", 128_000, false),
    model("claude-opus-5-5", 128_000, true),
    model("claude-sonnet-5-5", 128_000, true),
    model("claude-haiku-5-5", 128_000, true),
    model("claude-opus-5", 128_000, true),
    model("claude-sonnet-5", 128_000, true),
    model("claude-fable-5", 128_000, false),
    model("claude-mythos-5", 128_000, false),
    model("claude-opus-4-8", 128_000, true),
    model("claude-opus-4-7", 128_000, true),
    model("claude-opus-4-6", 128_000, true),
    model("claude-sonnet-4-6", 128_000, true),
    // No published output limit; the family's value.
    model("claude-mythos-preview", 128_000, false),
    alias("claude-haiku-4-5", "claude-haiku-4-5-20251001", 64_000),
    model("claude-haiku-4-5-20251001", 64_000, false),
    alias("claude-opus-4-5", "claude-opus-4-5-20251101", 64_000),
    model("claude-opus-4-5-20251101", 64_000, false),
];

/// The table's entry for `id`, if the API knows it.
pub fn lookup(id: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == id)
}

/// The id an answer reports for a request naming `id`: the dated id for an alias, `id` itself
/// otherwise (also for models the table does not know).
pub fn resolve(id: &str) -> &str {
    lookup(id).map_or(id, |m| m.resolved)
}

impl Model {
    /// The most output tokens a request to this model may ask for in a batch with `betas`.
    pub fn cap(&self, betas: &[String]) -> u64 {
        if self.output_300k && betas.iter().any(|b| b == OUTPUT_300K_BETA) {
            BATCH_OUTPUT_CAP
        } else {
            self.max_output
        }
    }
}

/// Refuses a `max_tokens` above the model's cap with the API's text; models the table does not
/// know pass.
pub fn check_max_tokens(model: &str, max_tokens: u64, betas: &[String]) -> Result<(), ParamsError> {
    let Some(entry) = lookup(model) else {
        return Ok(());
    };
    let cap = entry.cap(betas);
    if max_tokens <= cap {
        return Ok(());
    }
    Err(ParamsError {
        kind: ErrorType::InvalidRequest,
        message: format!(
            "max_tokens: {max_tokens} > {cap}, which is the maximum allowed number of output tokens for {}",
            entry.resolved
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn betas(list: &[&str]) -> Vec<String> {
        list.iter().map(|b| (*b).to_owned()).collect()
    }

    #[test]
    fn ids_are_unique_and_resolve_within_the_table() {
        for (i, m) in MODELS.iter().enumerate() {
            assert!(
                MODELS[..i].iter().all(|other| other.id != m.id),
                "{} twice",
                m.id
            );
            let target = lookup(m.resolved).expect("an alias resolves to a listed id");
            assert_eq!(target.resolved, target.id, "{} resolves in one step", m.id);
            assert_eq!(target.max_output, m.max_output, "{}", m.id);
            assert_eq!(target.output_300k, m.output_300k, "{}", m.id);
        }
    }

    #[test]
    fn only_pre_4_6_aliases_resolve_to_dated_ids() {
        assert_eq!(resolve("claude-haiku-4-5"), "claude-haiku-4-5-20251001");
        assert_eq!(resolve("claude-opus-4-5"), "claude-opus-4-5-20251101");
        assert_eq!(
            resolve("claude-haiku-4-5-20251001"),
            "claude-haiku-4-5-20251001"
        );
        assert_eq!(resolve("claude-sonnet-4-6"), "claude-sonnet-4-6");
        assert_eq!(resolve("claude-opus-5-5"), "claude-opus-5-5");
        assert_eq!(resolve("my-local-llama"), "my-local-llama");
    }

    #[test]
    fn retired_models_are_unknown() {
        for id in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
        ] {
            assert!(lookup(id).is_none(), "{id}");
        }
    }

    #[test]
    fn the_cap_is_the_models_output_limit_with_the_wire_text() {
        assert!(check_max_tokens("claude-haiku-4-5", 64_000, &[]).is_ok());
        let err = check_max_tokens("claude-haiku-4-5", 9_999_999, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorType::InvalidRequest);
        assert_eq!(
            err.message,
            "max_tokens: 9999999 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001"
        );
        assert!(check_max_tokens("claude-sonnet-4-6", 128_000, &[]).is_ok());
        assert_eq!(
            check_max_tokens("claude-sonnet-4-6", 128_001, &[])
                .unwrap_err()
                .message,
            "max_tokens: 128001 > 128000, which is the maximum allowed number of output tokens for claude-sonnet-4-6"
        );
    }

    #[test]
    fn the_300k_beta_raises_the_cap_of_covered_models_only() {
        let with = betas(&["message-batches-2024-09-24", OUTPUT_300K_BETA]);
        assert!(check_max_tokens("claude-sonnet-4-6", 300_000, &with).is_ok());
        assert!(check_max_tokens("claude-opus-5-5", 300_000, &with).is_ok());
        assert_eq!(
            check_max_tokens("claude-sonnet-4-6", 300_001, &with)
                .unwrap_err()
                .message,
            "max_tokens: 300001 > 300000, which is the maximum allowed number of output tokens for claude-sonnet-4-6"
        );
        // Not covered: the beta changes nothing.
        assert_eq!(
            check_max_tokens("claude-haiku-4-5", 300_000, &with)
                .unwrap_err()
                .message,
            "max_tokens: 300000 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001"
        );
        assert!(check_max_tokens("claude-fable-5", 300_000, &with).is_err());
        // Another beta is not this one.
        assert!(
            check_max_tokens(
                "claude-sonnet-4-6",
                300_000,
                &betas(&["message-batches-2024-09-24"])
            )
            .is_err()
        );
    }

    #[test]
    fn models_outside_the_table_are_not_capped() {
        assert!(check_max_tokens("my-local-llama", u64::MAX, &[]).is_ok());
        assert!(check_max_tokens("claude-sonnet-4-5", 10_000_000, &[]).is_ok());
    }
}
