//! The `anthropic-version` values batchd knows, and what each one changes in a request's
//! `params`: one table ([`VERSIONS`]) that the authentication layer reads to accept or refuse a
//! version, the store to keep it with a batch, [`crate::params`] to apply it when a request is
//! processed, and backends to say which version goes upstream.
//!
//! A batch keeps the version its create was sent with, and every one of its requests is
//! validated under it ("each request in a Message Batch created with 2026-10-21",
//! <https://platform.claude.com/docs/en/api/migration-2026-10-21>).
//!
//! 2023-01-01 differs from 2023-06-01 only in streaming events and legacy response values
//! (<https://platform.claude.com/docs/en/api/versioning>); batches neither stream nor see those
//! values, so both share one set of rules.

use std::fmt;

/// One `anthropic-version` batchd accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiVersion {
    V2023_01_01,
    /// The default: batches stored before versions were kept were all created under this one.
    #[default]
    V2023_06_01,
    V2026_10_21,
}

/// What a version refuses (or adds) in `params`, on top of the schema every version shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRules {
    /// `temperature`, `top_p` and `top_k` are not in the schema: any value is an extra input.
    pub no_sampling: bool,
    /// A `document` block directly in an `assistant` message is refused.
    pub no_assistant_documents: bool,
    /// A `text` block with non-empty `citations` in a `user` message, directly or inside a
    /// `search_result` block, is refused.
    pub no_user_citations: bool,
    /// A message may have `role: "system"` (the SDKs' types for this version add it).
    pub system_role: bool,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct VersionEntry {
    pub version: ApiVersion,
    pub name: &'static str,
    /// What to send to an upstream that speaks the hosted API (2023-01-01 is sent as
    /// 2023-06-01: the two are the same for a non-streaming request, and the older one "may be
    /// unavailable for new users").
    pub upstream: &'static str,
    pub rules: VersionRules,
}

const CLASSIC: VersionRules = VersionRules {
    no_sampling: false,
    no_assistant_documents: false,
    no_user_citations: false,
    system_role: false,
};

/// Every version batchd knows, oldest first.
pub const VERSIONS: &[VersionEntry] = &[
    VersionEntry {
        version: ApiVersion::V2023_01_01,
        name: "2023-01-01",
        upstream: "2023-06-01",
        rules: CLASSIC,
    },
    VersionEntry {
        version: ApiVersion::V2023_06_01,
        name: "2023-06-01",
        upstream: "2023-06-01",
        rules: CLASSIC,
    },
    VersionEntry {
        version: ApiVersion::V2026_10_21,
        name: "2026-10-21",
        upstream: "2026-10-21",
        rules: VersionRules {
            no_sampling: true,
            no_assistant_documents: true,
            no_user_citations: true,
            system_role: true,
        },
    },
];

/// The sampling fields 2026-10-21 removed, in the schema's order.
pub const SAMPLING_FIELDS: &[&str] = &["temperature", "top_k", "top_p"];

// The API documents only that these two are a 400; their wording here is inferred, in the
// API's `<location>: <message>` style.
/// Message for a `document` block directly in an assistant message (after `<location>: `).
pub const ASSISTANT_DOCUMENT: &str = "document blocks are not allowed in assistant messages";
/// Message for non-empty `citations` on a user text block (after `<location>.citations: `).
pub const USER_CITATIONS: &str = "citations are not allowed on text blocks in user messages";

/// The API's answer to a request without the header.
pub const MISSING: &str = "anthropic-version: header is required";

/// The API's answer to a value it does not know; a repeated header arrives here joined with
/// ", ", as the API joins it, and is refused the same way.
pub fn invalid_message(value: &str) -> String {
    format!("anthropic-version: \"{value}\" is not a valid version")
}

impl ApiVersion {
    pub fn parse(value: &str) -> Option<Self> {
        VERSIONS.iter().find(|e| e.name == value).map(|e| e.version)
    }

    fn entry(self) -> &'static VersionEntry {
        VERSIONS
            .iter()
            .find(|e| e.version == self)
            .expect("every version has a row")
    }

    pub fn as_str(self) -> &'static str {
        self.entry().name
    }

    pub fn upstream(self) -> &'static str {
        self.entry().upstream
    }

    pub fn rules(self) -> &'static VersionRules {
        &self.entry().rules
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_round_trips_and_nothing_else_parses() {
        for entry in VERSIONS {
            assert_eq!(ApiVersion::parse(entry.name), Some(entry.version));
            assert_eq!(entry.version.as_str(), entry.name);
        }
        for bad in [
            "",
            "2023-10-01",
            "2023-06-01, 2023-06-01",
            " 2023-06-01",
            "latest",
        ] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_oldest_version_goes_upstream_as_its_successor() {
        assert_eq!(ApiVersion::V2023_01_01.upstream(), "2023-06-01");
        assert_eq!(ApiVersion::V2023_06_01.upstream(), "2023-06-01");
        assert_eq!(ApiVersion::V2026_10_21.upstream(), "2026-10-21");
        assert_eq!(ApiVersion::default(), ApiVersion::V2023_06_01);
    }

    #[test]
    fn texts_read_as_the_api_writes_them() {
        assert_eq!(
            invalid_message("2023-06-01, 2023-06-01"),
            "anthropic-version: \"2023-06-01, 2023-06-01\" is not a valid version"
        );
    }
}
