//! fnmatch-style patterns for `workload tier --include/--exclude`, matched
//! against keys relative to the Zarr root (`*` also crosses `/`, as Python's
//! fnmatch does, so `*/r60m/*` selects every r60m object).

pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(&p, pi, t[ti])
                        && ok
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[abc]`, `[a-z]`, `[!x]` at `p[start]`: (does `c` match, index after `]`).
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let first = i;
    while i < p.len() && (p[i] != ']' || i == first) {
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((hit != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn fnmatch_semantics() {
        assert!(matches(
            "*/r60m/*",
            "measurements/reflectance/r60m/b01/c/0/0"
        ));
        assert!(!matches(
            "*/r60m/*",
            "measurements/reflectance/r20m/b01/c/0/0"
        ));
        assert!(matches("*zarr.json", "a/b/zarr.json"));
        assert!(matches("b0?", "b08"));
        assert!(matches("b[0-9][!9]", "b08"));
        assert!(!matches("b[0-9][!8]", "b08"));
        assert!(matches("*", ""));
        assert!(!matches("a", ""));
    }
}
