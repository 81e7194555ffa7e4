//! Shell quoting for commands sent to remote machines: every argument that
//! comes from data goes through `q`, so names and paths never become syntax.

/// `s` as one POSIX shell word.
pub fn q(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line from words, each quoted.
pub fn words<I: IntoIterator<Item = S>, S: AsRef<str>>(args: I) -> String {
    args.into_iter()
        .map(|a| q(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in [
            "plain",
            "",
            "a b",
            "it's",
            "$(rm -rf /)",
            "`x`",
            "a\nb",
            "\"q\"",
            "*",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", q(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
        assert_eq!(words(["echo", "a b"]), "echo 'a b'");
    }
}
