//! Golden files for the `openai` backend's Messages ↔ Chat Completions translation.
//!
//! Each directory under `tests/golden/openai/` is one case:
//! - `params.json`: the Anthropic `params`; `options.json` (optional): the [`ChatOptions`];
//! - `chat_request.json`: the expected Chat Completions body, or `error.txt`: the expected
//!   refusal message;
//! - optionally `chat_response.json`, the upstream's answer, with `message.json`: the expected
//!   Message, or `message_error.txt`: the expected complaint about the answer.
//!
//! `chat_request.json` is compared as JSON (key order means nothing to an upstream);
//! `message.json` is compared as text, so the Message's field order is checked too.
//! `UPDATE_GOLDEN=1 cargo test -p batchd-backends --test openai_golden` rewrites the expected
//! files from the current output; review the diff before committing it.

use std::fs;
use std::path::Path;

use batchd_backends::openai::translate::{self, ChatOptions};
use serde_json::{Map, Value};

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openai");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("golden directory")
        .map(|entry| entry.expect("golden entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "only {} golden cases found", dirs.len());

    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            run_case(dir, update)
                .err()
                .map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases differ (UPDATE_GOLDEN=1 rewrites them):\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

fn run_case(dir: &Path, update: bool) -> Result<(), String> {
    let params: Map<String, Value> = read_json(&dir.join("params.json"))?;
    let options = match dir.join("options.json") {
        path if path.exists() => {
            let options: Value = read_json(&path)?;
            ChatOptions {
                top_k: options["top_k"].as_bool().unwrap_or(false),
            }
        }
        _ => ChatOptions::default(),
    };

    match translate::chat_request(&params, &options) {
        Ok(request) => expect(
            dir,
            update,
            ("chat_request.json", Some(&request)),
            ("error.txt", None),
        )?,
        Err(refusal) => expect(
            dir,
            update,
            ("chat_request.json", None),
            ("error.txt", Some(&refusal.0)),
        )?,
    }

    let response = dir.join("chat_response.json");
    if response.exists() {
        let body = fs::read(&response).map_err(|e| format!("{}: {e}", response.display()))?;
        match translate::message_from_chat(&body, &params) {
            Ok(message) => {
                serde_json::from_str::<Value>(&message)
                    .map_err(|e| format!("the Message is not JSON: {e}"))?;
                expect_text(dir, update, "message.json", Some(&pretty(&message)))?;
                expect_text(dir, update, "message_error.txt", None)?;
            }
            Err(bad) => {
                expect_text(dir, update, "message.json", None)?;
                expect_text(dir, update, "message_error.txt", Some(&bad.0))?;
            }
        }
    }
    Ok(())
}

/// The request outcome: exactly one of the JSON file and the error file exists and matches.
fn expect(
    dir: &Path,
    update: bool,
    (json_file, json): (&str, Option<&Value>),
    (error_file, error): (&str, Option<&String>),
) -> Result<(), String> {
    let path = dir.join(json_file);
    match json {
        Some(actual) if update => write(&path, &serde_json::to_string_pretty(actual).unwrap())?,
        Some(actual) => {
            let expected: Value = read_json(&path)?;
            if &expected != actual {
                return Err(format!(
                    "{json_file} differs; got:\n{}",
                    serde_json::to_string_pretty(actual).unwrap()
                ));
            }
        }
        None => absent(&path, update)?,
    }
    expect_text(dir, update, error_file, error.map(String::as_str))
}

/// `file` holds `actual` (one trailing newline ignored), or does not exist when `actual` is
/// `None`.
fn expect_text(dir: &Path, update: bool, file: &str, actual: Option<&str>) -> Result<(), String> {
    let path = dir.join(file);
    let Some(actual) = actual else {
        return absent(&path, update);
    };
    if update {
        return write(&path, actual);
    }
    let expected =
        fs::read_to_string(&path).map_err(|_| format!("{file} is missing; got:\n{actual}"))?;
    if expected.strip_suffix('\n').unwrap_or(&expected) != actual {
        return Err(format!("{file} differs; got:\n{actual}"));
    }
    Ok(())
}

fn absent(path: &Path, update: bool) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    if update {
        return fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()));
    }
    let name = path.file_name().unwrap().to_string_lossy();
    Err(format!("{name} exists but the outcome was the other one"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, format!("{text}\n")).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Compact JSON re-indented like `serde_json::to_string_pretty`, keeping the key order (going
/// through a `Value` would sort the keys and hide a field-order regression).
fn pretty(compact: &str) -> String {
    let chars: Vec<char> = compact.chars().collect();
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                if !matches!(chars.get(i + 1), Some('}' | ']')) {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                if !matches!(chars[i - 1], '{' | '[') {
                    depth -= 1;
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn pretty_matches_serde_json_for_sorted_input() {
    let value: Value = serde_json::from_str(
        r#"{"a":[],"b":{},"c":[1,{"d":"x:,{}[]\"y"}],"e":{"f":null,"g":true}}"#,
    )
    .unwrap();
    assert_eq!(
        pretty(&value.to_string()),
        serde_json::to_string_pretty(&value).unwrap()
    );
}
