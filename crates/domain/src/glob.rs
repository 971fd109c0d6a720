//! Shell-style globs, the one matcher for every pattern batchd reads: backends' model lists and
//! test mode's mock rules. `*` matches any run of characters (none included) and `?` exactly one;
//! there are no classes or escapes.

/// Whether `text` matches `glob`.
pub fn matches(glob: &str, text: &str) -> bool {
    let (g, m): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    // Classic two-pointer wildcard match with one backtrack point: linear for patterns like ours.
    let (mut gi, mut mi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while mi < m.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == m[mi]) {
            gi += 1;
            mi += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, mi));
            gi += 1;
        } else if let Some((sg, sm)) = star {
            gi = sg + 1;
            mi = sm + 1;
            star = Some((sg, sm + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        for (glob, text, hit) in [
            ("*", "anything", true),
            ("*", "", true),
            ("qwen*", "qwen2.5-7b", true),
            ("qwen*", "llama-qwen", false),
            ("llama-*", "llama-3", true),
            ("claude-?-haiku", "claude-3-haiku", true),
            ("claude-?-haiku", "claude-35-haiku", false),
            ("*-instruct", "mistral-7b-instruct", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("boom-*", "boom-", true),
            ("boom-*", "boo", false),
        ] {
            assert_eq!(matches(glob, text), hit, "{glob} vs {text}");
        }
    }
}
