//! The `anthropic-beta` names batchd knows, as data: every published name ([`BETAS`]), which
//! request fields each one unlocks in `params`, and whether it is forwarded to a backend that
//! speaks `/v1/messages`. The authentication layer refuses a name that is neither here nor added
//! by the operator ([`known`]); [`crate::params`] asks [`unlocked`] whether a beta-only field may
//! be used; backends ask [`forwarded`] what to send upstream.
//!
//! To add a beta: one row in [`BETAS`] (or, without a release, `--extra-beta NAME`). The names
//! are those of the official SDKs' `AnthropicBeta` type plus the ones real clients send that the
//! API accepts (Claude Code's, for instance). Which beta unlocks `fallback_credit_token` as a
//! bare string, `compaction`, `thread`, `billing_policy` and `output_format` is inferred from the
//! names and dates; the others are documented (see
//! <https://platform.claude.com/docs/en/api/beta-headers>).

use crate::raw_json::Kind;

/// The JSON form of a field's value that a beta unlocks. Checked shallowly: new shapes appear
/// often, and a request the API accepts must not be refused here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Any,
    List,
    Object,
    String,
}

impl Form {
    /// `null` fits every form: it means "not given", as everywhere in the schema.
    fn fits(self, value: Kind) -> bool {
        value == Kind::Null
            || match self {
                Form::Any => true,
                Form::List => value == Kind::Array,
                Form::Object => value == Kind::Object,
                Form::String => value == Kind::String,
            }
    }
}

/// A `params` field a beta allows, in one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlock {
    pub field: &'static str,
    pub form: Form,
}

/// One published beta.
#[derive(Debug, Clone, Copy)]
pub struct Beta {
    pub name: &'static str,
    pub unlocks: &'static [Unlock],
    /// Sent on to `/v1/messages`. False for betas of the batch API itself, which a Messages
    /// endpoint does not know.
    pub forwarded: bool,
}

/// The `params` fields that exist only under a beta; without one that unlocks them they are
/// extra inputs. (`diagnostics` was one; it is generally available now.)
pub const BETA_FIELDS: &[&str] = &[
    "billing_policy",
    "compaction",
    "context_management",
    "fallback_credit_token",
    "fallbacks",
    "mcp_servers",
    "output_format",
    "thread",
];

const fn beta(name: &'static str) -> Beta {
    Beta {
        name,
        unlocks: &[],
        forwarded: true,
    }
}

const fn unlocking(name: &'static str, unlocks: &'static [Unlock]) -> Beta {
    Beta {
        name,
        unlocks,
        forwarded: true,
    }
}

const fn batch_only(name: &'static str) -> Beta {
    Beta {
        name,
        unlocks: &[],
        forwarded: false,
    }
}

const MCP: &[Unlock] = &[Unlock {
    field: "mcp_servers",
    form: Form::Any,
}];

/// Every beta name batchd accepts without configuration.
pub const BETAS: &[Beta] = &[
    // The official SDKs' `AnthropicBeta` names.
    beta("computer-use-2024-10-22"),
    beta("computer-use-2025-01-24"),
    beta("output-128k-2025-02-19"),
    unlocking("mcp-client-2025-04-04", MCP),
    unlocking("mcp-client-2025-11-20", MCP),
    beta("dev-full-thinking-2025-05-14"),
    beta("interleaved-thinking-2025-05-14"),
    beta("code-execution-2025-05-22"),
    beta("context-1m-2025-08-07"),
    unlocking(
        "context-management-2025-06-27",
        &[Unlock {
            field: "context_management",
            form: Form::Any,
        }],
    ),
    beta("model-context-window-exceeded-2025-08-26"),
    beta("fast-mode-2026-02-01"),
    // The batch API's own extended output: a Messages endpoint has no such beta.
    batch_only(crate::models::OUTPUT_300K_BETA),
    beta("user-profiles-2026-03-24"),
    beta("user-profiles-2026-08-18"),
    beta("user-profiles-2026-09-04"),
    beta("advisor-tool-2026-03-01"),
    beta("managed-agents-2026-04-01"),
    beta("dreaming-2026-04-21"),
    beta("thinking-token-count-2026-05-13"),
    unlocking(
        "server-side-fallback-2026-06-01",
        &[Unlock {
            field: "fallbacks",
            form: Form::List,
        }],
    ),
    unlocking(
        "server-side-fallback-2026-07-01",
        &[Unlock {
            field: "fallbacks",
            form: Form::String,
        }],
    ),
    unlocking(
        "fallback-credit-2026-06-01",
        &[Unlock {
            field: "fallback_credit_token",
            form: Form::String,
        }],
    ),
    unlocking(
        "fallback-credit-2026-07-01",
        &[Unlock {
            field: "fallback_credit_token",
            form: Form::Object,
        }],
    ),
    beta("agent-memory-2026-07-22"),
    beta("mid-conversation-tool-changes-2026-07-01"),
    beta("compact-2026-01-12"),
    beta("computer-use-2025-11-24"),
    beta("mcp-tunnels-2026-06-22"),
    unlocking(
        "structured-outputs-2025-11-13",
        &[Unlock {
            field: "output_format",
            form: Form::Any,
        }],
    ),
    beta("task-budgets-2026-03-13"),
    beta("thinking-display-updates-2026-08-18"),
    beta("mid-conversation-output-config-2026-07-01"),
    beta("thinking-binding-controls-2026-08-01"),
    beta("mid-conversation-system-clear-at-2026-08-21"),
    unlocking(
        "compact-2026-09-04",
        &[Unlock {
            field: "compaction",
            form: Form::Any,
        }],
    ),
    beta("inline-tools-2026-09-15"),
    unlocking("mcp-client-2026-09-15", MCP),
    beta("ce-plugins-2026-09-01"),
    beta("spend-limit-reads-2026-09-26"),
    beta("telemetry-destinations-2026-08-11"),
    beta("webhooks-2026-10-07"),
    beta("admin-user-sign-out-2026-10-08"),
    unlocking(
        "message-threads-2026-08-12",
        &[Unlock {
            field: "thread",
            form: Form::Any,
        }],
    ),
    beta("analytics-usage-cost-2026-08-24"),
    beta("experimental-claude-tag-2026-10-21"),
    // The beta of the batch API itself (the SDKs' older beta namespace sends it).
    batch_only("message-batches-2024-09-24"),
    beta("prompt-caching-2024-07-31"),
    beta("pdfs-2024-09-25"),
    beta("token-counting-2024-11-01"),
    beta("token-efficient-tools-2025-02-19"),
    beta("files-api-2025-04-14"),
    beta("extended-cache-ttl-2025-04-11"),
    beta("skills-2025-10-02"),
    // `diagnostics` needs no beta any more; the name stays valid.
    beta("cache-diagnosis-2026-04-07"),
    beta("ce-user-management-2026-07-13"),
    beta("ce-claude-code-managed-settings-2026-10-06"),
    beta("efs-2026-10-01"),
    beta("google-managed-data-controls-2026-09-01"),
    unlocking(
        "user-profiles-billing-2026-10-01",
        &[Unlock {
            field: "billing_policy",
            form: Form::Any,
        }],
    ),
    // Accepted by the API though not in the SDKs' type: seen from real clients.
    beta("claude-code-20250219"),
    beta("oauth-2025-04-20"),
    beta("advanced-tool-use-2025-11-20"),
    beta("effort-2025-11-24"),
    beta("web-search-2025-03-05"),
    beta("redact-thinking-2026-02-12"),
    beta("prompt-caching-scope-2026-01-05"),
    beta("token-efficient-tools-2026-03-28"),
];

fn find(name: &str) -> Option<&'static Beta> {
    BETAS.iter().find(|b| b.name == name)
}

/// Whether `name` is sent on to `/v1/messages`. A name added by the operator is: it exists for
/// the upstream's sake.
pub fn forwarded(name: &str) -> bool {
    find(name).is_none_or(|b| b.forwarded)
}

/// Whether one of `betas` allows `field` with a value of this kind. Names not in the table
/// (added by the operator) unlock nothing.
pub fn unlocked(betas: &[String], field: &str, value: Kind) -> bool {
    betas
        .iter()
        .filter_map(|b| find(b))
        .flat_map(|b| b.unlocks)
        .any(|u| u.field == field && u.form.fits(value))
}

/// Whether a server accepts `name`: the table's names and those the operator added (`extra`).
pub fn known(name: &str, extra: &[String]) -> bool {
    find(name).is_some() || extra.iter().any(|e| e == name)
}

/// The API's answer to names it does not know, each in backticks, joined with ", ".
pub fn unknown_message(names: &[&str]) -> String {
    let names = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Unexpected value(s) {names} for the `anthropic-beta` header. Please consult our documentation at docs.claude.com or try again without the header."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_unlocked_fields_are_beta_fields() {
        let mut names: Vec<_> = BETAS.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BETAS.len(), "a name appears twice");
        for b in BETAS {
            for u in b.unlocks {
                assert!(BETA_FIELDS.contains(&u.field), "{}: {}", b.name, u.field);
            }
        }
        // The SDKs' 60 names and the 8 seen from real clients.
        assert_eq!(BETAS.len(), 68);
    }

    #[test]
    fn batch_betas_stay_home() {
        assert!(!forwarded("output-300k-2026-03-24"));
        assert!(!forwarded("message-batches-2024-09-24"));
        assert!(forwarded("files-api-2025-04-14"));
        assert!(forwarded("some-operator-beta-2030-01-01"));
    }

    #[test]
    fn each_form_needs_its_own_beta() {
        let b = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let list = Kind::Array;
        let default = Kind::String;
        assert!(unlocked(
            &b(&["server-side-fallback-2026-06-01"]),
            "fallbacks",
            list
        ));
        assert!(!unlocked(
            &b(&["server-side-fallback-2026-06-01"]),
            "fallbacks",
            default
        ));
        assert!(unlocked(
            &b(&["server-side-fallback-2026-07-01"]),
            "fallbacks",
            default
        ));
        assert!(!unlocked(
            &b(&["server-side-fallback-2026-07-01"]),
            "fallbacks",
            list
        ));
        let token = Kind::Object;
        assert!(unlocked(
            &b(&["fallback-credit-2026-07-01"]),
            "fallback_credit_token",
            token
        ));
        assert!(!unlocked(
            &b(&["fallback-credit-2026-06-01"]),
            "fallback_credit_token",
            token
        ));
        assert!(!unlocked(&b(&[]), "mcp_servers", Kind::Array));
        assert!(!unlocked(
            &b(&["my-beta-2030-01-01"]),
            "mcp_servers",
            Kind::Array
        ));
    }

    #[test]
    fn operators_add_names() {
        let extra = ["my-beta-2030-01-01".to_owned()];
        assert!(known("my-beta-2030-01-01", &extra));
        assert!(known("claude-code-20250219", &extra));
        assert!(!known("my-beta-2030-01-01", &[]));
        assert!(!known("string", &extra));
    }

    #[test]
    fn unknown_names_are_each_quoted() {
        assert_eq!(
            unknown_message(&["a", "b"]),
            "Unexpected value(s) `a`, `b` for the `anthropic-beta` header. Please consult our documentation at docs.claude.com or try again without the header."
        );
    }
}
