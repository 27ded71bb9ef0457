//! Python versions (PEP 440): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the
//! normalisations the PEP allows (case, `v` prefix, `alpha`/`beta`/`c`/`pre`/`preview` spellings,
//! `-`/`_`/`.` separators, implicit numbers, `1.0-1` as a post-release).
//!
//! Ordering follows `packaging.version`: epoch, release (trailing zeros ignored), then a
//! dev-only release sorts before pre-releases, pre-releases before the release, post-releases
//! after it, dev-releases before what they lead to, and a local label sorts after the same
//! version without one.

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, ord_by_precedence};

#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub release: Vec<u64>,
    /// 0 = a, 1 = b, 2 = rc.
    pub pre: Option<(u8, u64)>,
    pub post: Option<u64>,
    pub dev: Option<u64>,
    pub local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocalPart {
    // Declared first: text sorts before numbers in local labels.
    Text(String),
    Num(u64),
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat_sep(&mut self) -> bool {
        matches!(self.peek(), Some(b'.' | b'-' | b'_')) && {
            self.i += 1;
            true
        }
    }
    fn eat_word(&mut self, words: &[&str]) -> Option<usize> {
        // Longest match first, so `rc` and `pre` are not read as `r` and `p...`.
        let mut best: Option<(usize, usize)> = None;
        for (k, w) in words.iter().enumerate() {
            if self.s[self.i..].starts_with(w.as_bytes()) && best.is_none_or(|(_, l)| w.len() > l) {
                best = Some((k, w.len()));
            }
        }
        let (k, l) = best?;
        self.i += l;
        Some(k)
    }
    fn number(&mut self) -> Option<Result<u64, ()>> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        Some(digits.parse().map_err(|_| ()))
    }
}

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Pep440, s, reason);
    check_len(VersionScheme::Pep440, s)?;
    let lower = s.trim().to_ascii_lowercase();
    let mut c = Cursor {
        s: lower.as_bytes(),
        i: 0,
    };
    c.eat(b'v');
    let big = |_| err("number too large");
    let first = c
        .number()
        .ok_or_else(|| err("expected a release number"))?
        .map_err(big)?;
    let (epoch, mut release) = if c.eat(b'!') {
        let n = c
            .number()
            .ok_or_else(|| err("expected a release number after the epoch"))?
            .map_err(big)?;
        (first, vec![n])
    } else {
        (0, vec![first])
    };
    while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(u8::is_ascii_digit) {
        c.i += 1;
        release.push(c.number().unwrap_or(Ok(0)).map_err(big)?);
    }
    // Pre-release.
    let save = c.i;
    c.eat_sep();
    let pre = match c.eat_word(&["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"]) {
        Some(k) => {
            let kind = match k {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            let save_n = c.i;
            c.eat_sep();
            let n = match c.number() {
                Some(n) => n.map_err(big)?,
                None => {
                    c.i = save_n;
                    0
                }
            };
            Some((kind, n))
        }
        None => {
            c.i = save;
            None
        }
    };
    // Post-release: `-N` or `[sep](post|rev|r)[sep][N]`.
    let save = c.i;
    let post = if c.eat(b'-') && c.peek().is_some_and(|d| d.is_ascii_digit()) {
        Some(c.number().unwrap_or(Ok(0)).map_err(big)?)
    } else {
        c.i = save;
        c.eat_sep();
        if c.eat_word(&["post", "rev", "r"]).is_some() {
            let save_n = c.i;
            c.eat_sep();
            match c.number() {
                Some(n) => Some(n.map_err(big)?),
                None => {
                    c.i = save_n;
                    Some(0)
                }
            }
        } else {
            c.i = save;
            None
        }
    };
    // Dev-release.
    let save = c.i;
    c.eat_sep();
    let dev = if c.eat_word(&["dev"]).is_some() {
        let save_n = c.i;
        c.eat_sep();
        match c.number() {
            Some(n) => Some(n.map_err(big)?),
            None => {
                c.i = save_n;
                Some(0)
            }
        }
    } else {
        c.i = save;
        None
    };
    // Local label.
    let mut local = Vec::new();
    if c.eat(b'+') {
        let rest = std::str::from_utf8(&c.s[c.i..]).unwrap_or("");
        for part in rest.split(['.', '-', '_']) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err("invalid local version label"));
            }
            local.push(if part.bytes().all(|b| b.is_ascii_digit()) {
                LocalPart::Num(part.parse().map_err(|_| err("number too large"))?)
            } else {
                LocalPart::Text(part.to_string())
            });
        }
        c.i = c.s.len();
    }
    if c.i != c.s.len() {
        return Err(err("unexpected text"));
    }
    Ok(Version {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// Epoch, release, pre-release, post-release and dev-release phases.
type Key<'a> = (u64, &'a [u64], (u8, u8, u64), (u8, u64), (u8, u64));

impl Version {
    /// `packaging`'s comparison key. The `Option`-like phases use 0 for "negative infinity" and
    /// 2 for "positive infinity" around a present value (1).
    fn key(&self) -> Key<'_> {
        let mut rel = self.release.as_slice();
        while let [head @ .., 0] = rel {
            rel = head;
        }
        let pre = match self.pre {
            None if self.post.is_none() && self.dev.is_some() => (0, 0, 0),
            None => (2, 0, 0),
            Some((k, n)) => (1, k, n),
        };
        let post = match self.post {
            None => (0, 0),
            Some(n) => (1, n),
        };
        let dev = match self.dev {
            None => (2, 0),
            Some(n) => (1, n),
        };
        (self.epoch, rel, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.local.cmp(&other.local))
    }
}
ord_by_precedence!(Version);

#[cfg(test)]
mod tests {
    use super::*;

    /// The ordered list from `packaging`'s tests/test_version.py (VERSIONS), trimmed.
    const ORDERED: &[&str] = &[
        "1.0.dev456",
        "1.0a1",
        "1.0a2.dev456",
        "1.0a12.dev456",
        "1.0a12",
        "1.0b1.dev456",
        "1.0b2",
        "1.0b2.post345.dev456",
        "1.0b2.post345",
        "1.0b2-346",
        "1.0c1.dev456",
        "1.0c1",
        "1.0rc2",
        "1.0c3",
        "1.0",
        "1.0.post456.dev34",
        "1.0.post456",
        "1.1.dev1",
        "1.2+123abc",
        "1.2+123abc456",
        "1.2+abc",
        "1.2+abc123",
        "1.2+abc123def",
        "1.2+1234.abc",
        "1.2+123456",
        "1.2.r32+123456",
        "1.2.rev33+123456",
        "1!1.0.dev456",
        "1!1.0a1",
        "1!1.0",
        "1!1.0.post456",
        "1!1.2.rev33+123456",
    ];

    #[test]
    fn packaging_order() {
        for w in ORDERED.windows(2) {
            assert!(
                parse(w[0]).unwrap() < parse(w[1]).unwrap(),
                "{} < {}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn normalisation() {
        // Spellings packaging normalises to the same version.
        let same = [
            ("1.0", "1.0.0"),
            ("1.0", "v1.0"),
            ("1.0a1", "1.0alpha1"),
            ("1.0a1", "1.0-a-1"),
            ("1.0a", "1.0a0"),
            ("1.0b1", "1.0beta1"),
            ("1.0rc1", "1.0c1"),
            ("1.0rc1", "1.0pre1"),
            ("1.0rc1", "1.0preview1"),
            ("1.0.post1", "1.0-1"),
            ("1.0.post1", "1.0post1"),
            ("1.0.post1", "1.0.r1"),
            ("1.0.post0", "1.0.post"),
            ("1.0.dev0", "1.0-dev"),
            ("1.0+ubuntu-1", "1.0+ubuntu.1"),
            ("1.0RC1", "1.0rc1"),
            (" 1.0 ", "1.0"),
            ("0!1.0", "1.0"),
        ];
        for (a, b) in same {
            assert_eq!(parse(a).unwrap(), parse(b).unwrap(), "{a} == {b}");
        }
    }

    #[test]
    fn invalid() {
        for v in [
            "",
            "french toast",
            "1.0+",
            "1.0+_foo",
            "1.0.",
            "1!",
            "1.0-",
            "a1.0",
            "1.0+foo!",
            "1.0.dev.x",
            "1.0 a",
        ] {
            assert!(parse(v).is_err(), "{v:?}");
        }
    }
}

#[cfg(test)]
mod upstream {
    use super::*;

    /// `packaging`'s full ordered list: every version parses and each sorts below the next.
    #[test]
    fn packaging_versions_list() {
        let list: Vec<&str> = include_str!("../../tests/fixtures/pep440-ordered.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(list.len(), 92);
        let parsed: Vec<Version> = list.iter().map(|v| parse(v).unwrap()).collect();
        for (i, a) in parsed.iter().enumerate() {
            for (j, b) in parsed.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{} vs {}", list[i], list[j]);
            }
        }
    }

    /// `packaging`'s invalid versions and normalisations.
    #[test]
    fn packaging_invalid_and_normalized() {
        for v in [
            "french toast",
            "1.0+a+",
            "1.0++",
            "1.0+_foobar",
            "1.0+foo&asd",
            "1.0+1+1",
            "1. 0",
            "1 .0",
            "1. 0a1",
            "1 .0a1",
            "1.0 a1",
            "1.0a 1",
            "\u{660}\u{661}.\u{662}",
            ".",
            "..",
            "1..0",
            "1.0.",
            ".1.0",
            "1..2.3",
            "1.0+\u{130}",
        ] {
            assert!(parse(v).is_err(), "{v:?}");
        }
        for (v, normal) in [
            ("1.0dev", "1.0.dev0"),
            ("1.0-DEV1", "1.0.dev1"),
            ("1.0.A1", "1.0a1"),
            ("1.0-ALPHA", "1.0a0"),
            ("1.0.beta1", "1.0b1"),
            ("1.0C", "1.0rc0"),
            ("1.0-rc1", "1.0rc1"),
            ("1.0post", "1.0.post0"),
            ("1.0-POST1", "1.0.post1"),
            ("1.0r", "1.0.post0"),
            ("1.0rev", "1.0.post0"),
            ("1.0-5", "1.0.post5"),
            ("1.0-r5", "1.0.post5"),
            ("1.0-rev5", "1.0.post5"),
            ("1.0+AbC", "1.0+abc"),
            ("1.01", "1.1"),
            ("1.0c056", "1.0rc56"),
            ("1.0.post000", "1.0.post0"),
            ("1.1.dev09000", "1.1.dev9000"),
            ("00!1.2", "1.2"),
            ("0100!0.0", "100!0.0"),
            ("   v1.0\t\n", "1.0"),
            ("\u{202f}1.0\t\u{2029}\n ", "1.0"),
        ] {
            assert_eq!(
                parse(v).unwrap(),
                parse(normal).unwrap(),
                "{v:?} = {normal}"
            );
        }
    }
}
