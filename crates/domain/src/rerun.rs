//! Re-running the unfinished part of an ended batch: which result types a re-run takes (its
//! `only` list, parsed and validated here with the API's texts) and the texts of its refusals.

use serde_json::Value;

use crate::batch::Outcome;
use crate::validation::{NOT_LIST, at, too_few_items};

/// The result types a re-run may take, in the order the API names them.
const CHOICES: [Outcome; 3] = [Outcome::Errored, Outcome::Expired, Outcome::Canceled];

/// What `only` accepts, pydantic-style, as the API words a literal.
pub const NOT_A_CHOICE: &str = "Input should be 'errored', 'expired' or 'canceled'";

/// A set of result types to re-run: one bit per [`Outcome::code`], so that an engine can test a
/// row's outcome in SQL as `(set >> outcome) & 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RerunSet(u8);

impl Default for RerunSet {
    /// Everything that did not succeed.
    fn default() -> Self {
        CHOICES.into_iter().fold(Self(0), Self::with)
    }
}

impl RerunSet {
    pub fn with(self, outcome: Outcome) -> Self {
        Self(self.0 | (1 << outcome.code()))
    }

    pub fn contains(self, outcome: Outcome) -> bool {
        self.0 & (1 << outcome.code()) != 0
    }

    /// The bits, for the engines' SQL.
    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    /// Every non-empty combination of the three choices, for tests.
    pub fn all_combinations() -> impl Iterator<Item = Self> {
        (1u8..8).map(|mask| {
            CHOICES
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .fold(Self(0), |set, (_, o)| set.with(o))
        })
    }

    /// Parses a re-run's body: `{}` or no body means every choice; `{"only": [...]}` a
    /// non-empty list of them (repeats allowed). `Err` is the 400's message.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_slice(body).map_err(crate::validation::not_json)?;
        let Value::Object(map) = value else {
            return Err(crate::validation::NOT_DICT.to_owned());
        };
        let mut set = None;
        for (key, value) in map {
            if key != "only" {
                return Err(at(key, crate::validation::EXTRA));
            }
            set = Some(Self::from_list(&value)?);
        }
        Ok(set.unwrap_or_default())
    }

    fn from_list(value: &Value) -> Result<Self, String> {
        let Value::Array(items) = value else {
            return Err(at("only", NOT_LIST));
        };
        if items.is_empty() {
            return Err(at("only", too_few_items(1, 0)));
        }
        let mut set = Self(0);
        for (i, item) in items.iter().enumerate() {
            let choice = CHOICES
                .into_iter()
                .find(|o| item.as_str() == Some(o.as_str()))
                .ok_or_else(|| at(format!("only.{i}"), NOT_A_CHOICE))?;
            set = set.with(choice);
        }
        Ok(set)
    }

    /// Parses the CLI's `--only errored,expired`.
    pub fn from_csv(list: &str) -> Result<Self, String> {
        let items: Vec<Value> = list
            .split(',')
            .map(|s| Value::String(s.trim().to_owned()))
            .collect();
        Self::from_list(&Value::Array(items))
    }
}

/// The 400 of a re-run that would hold no request.
pub fn nothing_to_rerun(id: &str) -> String {
    format!("Message Batch {id} has no requests to re-run.")
}

/// The 400 of a re-run of a batch that has not ended, worded as a delete's.
pub const NOT_ENDED: &str =
    "In progress batches cannot be re-run. Consider canceling the batch instead.";

/// The 400 of a re-run of an archived batch, whose requests are gone.
pub fn archived(id: &str) -> String {
    format!("Message Batch {id} has been archived and its requests can no longer be re-run.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_everything_but_succeeded() {
        let set = RerunSet::default();
        assert!(!set.contains(Outcome::Succeeded));
        for o in CHOICES {
            assert!(set.contains(o));
        }
        assert_eq!(RerunSet::from_body(b"").unwrap(), set);
        assert_eq!(RerunSet::from_body(b"{}").unwrap(), set);
        assert_eq!(RerunSet::all_combinations().count(), 7);
    }

    #[test]
    fn only_is_validated_with_the_api_texts() {
        let set = RerunSet::from_body(br#"{"only":["expired","errored","expired"]}"#).unwrap();
        assert!(set.contains(Outcome::Expired) && set.contains(Outcome::Errored));
        assert!(!set.contains(Outcome::Canceled));
        assert_eq!(
            RerunSet::from_body(br#"{"only":[]}"#).unwrap_err(),
            "only: List should have at least 1 item after validation, not 0"
        );
        assert_eq!(
            RerunSet::from_body(br#"{"only":"errored"}"#).unwrap_err(),
            "only: Input should be a valid list"
        );
        assert_eq!(
            RerunSet::from_body(br#"{"only":["errored","succeeded"]}"#).unwrap_err(),
            "only.1: Input should be 'errored', 'expired' or 'canceled'"
        );
        assert_eq!(
            RerunSet::from_body(br#"{"also":1}"#).unwrap_err(),
            "also: Extra inputs are not permitted"
        );
        assert!(
            RerunSet::from_body(b"[")
                .unwrap_err()
                .starts_with("The request body is not valid JSON")
        );
        assert_eq!(
            RerunSet::from_csv("errored, canceled").unwrap(),
            RerunSet(0).with(Outcome::Errored).with(Outcome::Canceled)
        );
    }
}
