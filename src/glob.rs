//! Redis glob patterns, as KEYS, SCAN MATCH and CONFIG GET take them:
//! `*`, `?`, `[abc]`, `[^a-z]`, and `\` to escape. Pure.
//!
//! Matching backtracks only to the last `*`, so it runs in
//! O(pattern × text) time whatever the pattern.

/// Matches one pattern element at `p` against byte `c`; returns whether it
/// matched and where the next element starts.
fn match_one(pattern: &[u8], mut p: usize, c: u8, nocase: bool) -> (bool, usize) {
    let eq = |a: u8, b: u8| if nocase { a.eq_ignore_ascii_case(&b) } else { a == b };
    match pattern[p] {
        b'?' => (true, p + 1),
        b'\\' if p + 1 < pattern.len() => (eq(pattern[p + 1], c), p + 2),
        b'[' => {
            p += 1;
            let negate = pattern.get(p) == Some(&b'^');
            if negate {
                p += 1;
            }
            let mut hit = false;
            while p < pattern.len() && pattern[p] != b']' {
                if pattern[p] == b'\\' && p + 1 < pattern.len() {
                    hit |= eq(pattern[p + 1], c);
                    p += 2;
                } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
                    let (lo, hi) = (pattern[p].min(pattern[p + 2]), pattern[p].max(pattern[p + 2]));
                    let c2 = if nocase { c.to_ascii_lowercase() } else { c };
                    let (lo2, hi2) = if nocase { (lo.to_ascii_lowercase(), hi.to_ascii_lowercase()) } else { (lo, hi) };
                    hit |= (lo..=hi).contains(&c) || (lo2..=hi2).contains(&c2);
                    p += 3;
                } else {
                    hit |= eq(pattern[p], c);
                    p += 1;
                }
            }
            // An unterminated class ends the pattern, as in Redis.
            (hit != negate, (p + 1).min(pattern.len()))
        }
        other => (eq(other, c), p + 1),
    }
}

/// True if `text` matches the glob `pattern`.
#[must_use]
pub fn matches(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if p < pattern.len() {
            let (ok, next) = match_one(pattern, p, text[t], nocase);
            if ok {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_examples() {
        let m = |p: &str, t: &str| matches(p.as_bytes(), t.as_bytes(), false);
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo") && m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("*", "") && m("*", "anything") && m("", "") && !m("", "x"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx") && !m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(m("user:*", "user:1") && !m("user:*", "users"));
        assert!(matches(b"SAVE", b"save", true));
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let text = "a".repeat(5000);
        let pattern = "*a".repeat(50) + "b";
        assert!(!matches(pattern.as_bytes(), text.as_bytes(), false));
    }
}
