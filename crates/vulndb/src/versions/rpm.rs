//! RPM versions: `[epoch:]version[-release]`, each part compared like rpm's `rpmvercmp`.
//!
//! A part is split into alphanumeric segments (separators are dropped). Segments compare in
//! order: numbers numerically, letters as strings, and a number beats letters. `~` sorts before
//! everything, even the end of the string (pre-releases: `1.0~rc1 < 1.0`); `^` sorts after the
//! end but before any further segment (snapshots: `1.0 < 1.0^git1 < 1.0.1`).

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, cmp_digits, ord_by_precedence};

#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub version: String,
    /// Empty when the version has no release.
    pub release: String,
}

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Rpm, s, reason);
    check_len(VersionScheme::Rpm, s)?;
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"._+~^:-".contains(&c))
    {
        return Err(err("invalid character"));
    }
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err("epoch is not a number"));
            }
            (e.parse().map_err(|_| err("epoch is too large"))?, rest)
        }
        None => (0, s),
    };
    if rest.contains(':') {
        return Err(err("more than one ':'"));
    }
    let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
    if version.is_empty() || !version.bytes().any(|c| c.is_ascii_alphanumeric()) {
        return Err(err("version is empty"));
    }
    if rest.contains('-') && release.is_empty() {
        return Err(err("release is empty"));
    }
    Ok(Version {
        epoch,
        version: version.to_string(),
        release: release.to_string(),
    })
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| rpmvercmp(&self.release, &other.release))
    }
}
ord_by_precedence!(Version);

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Tilde,
    End,
    Caret,
    Alpha(&'a str),
    Num(&'a str),
}

impl Segment<'_> {
    fn rank(&self) -> u8 {
        match self {
            Self::Tilde => 0,
            Self::End => 1,
            Self::Caret => 2,
            Self::Alpha(_) => 3,
            Self::Num(_) => 4,
        }
    }
}

fn next_segment<'a>(s: &'a str, i: &mut usize) -> Segment<'a> {
    let b = s.as_bytes();
    while *i < b.len() && !b[*i].is_ascii_alphanumeric() && b[*i] != b'~' && b[*i] != b'^' {
        *i += 1;
    }
    let Some(&c) = b.get(*i) else {
        return Segment::End;
    };
    let start = *i;
    match c {
        b'~' => {
            *i += 1;
            Segment::Tilde
        }
        b'^' => {
            *i += 1;
            Segment::Caret
        }
        c if c.is_ascii_digit() => {
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            Segment::Num(&s[start..*i])
        }
        _ => {
            while *i < b.len() && b[*i].is_ascii_alphabetic() {
                *i += 1;
            }
            Segment::Alpha(&s[start..*i])
        }
    }
}

/// rpm's segment-wise comparison of one part of a version.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        let sa = next_segment(a, &mut i);
        let sb = next_segment(b, &mut j);
        let c = match (&sa, &sb) {
            (Segment::Num(x), Segment::Num(y)) => cmp_digits(x, y),
            (Segment::Alpha(x), Segment::Alpha(y)) => x.cmp(y),
            _ => sa.rank().cmp(&sb.rank()),
        };
        if c != Ordering::Equal || sa == Segment::End {
            return c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpmvercmp_vectors() {
        // rpm's tests/rpmvercmp.at.
        let cases: &[(&str, &str, i8)] = &[
            ("1.0", "1.0", 0),
            ("1.0", "2.0", -1),
            ("2.0.1", "2.0.1", 0),
            ("2.0", "2.0.1", -1),
            ("2.0.1a", "2.0.1a", 0),
            ("2.0.1a", "2.0.1", 1),
            ("5.5p1", "5.5p1", 0),
            ("5.5p1", "5.5p2", -1),
            ("5.5p10", "5.5p10", 0),
            ("5.5p1", "5.5p10", -1),
            ("10xyz", "10.1xyz", -1),
            ("xyz10", "xyz10", 0),
            ("xyz10", "xyz10.1", -1),
            ("xyz.4", "xyz.4", 0),
            ("xyz.4", "8", -1),
            ("xyz.4", "2", -1),
            ("5.5p2", "5.6p1", -1),
            ("5.6p1", "6.5p1", -1),
            ("6.0.rc1", "6.0", 1),
            ("10b2", "10a1", 1),
            ("10a2", "10b2", -1),
            ("1.0aa", "1.0aa", 0),
            ("1.0a", "1.0aa", -1),
            ("10.0001", "10.0001", 0),
            ("10.0001", "10.1", 0),
            ("10.0001", "10.0039", -1),
            ("4.999.9", "5.0", -1),
            ("20101121", "20101122", -1),
            ("2_0", "2_0", 0),
            ("2.0", "2_0", 0),
            ("a", "a", 0),
            ("a+", "a+", 0),
            ("a+", "a_", 0),
            ("+a", "_a", 0),
            ("+_", "_+", 0),
            ("+", "_", 0),
            ("1.0~rc1", "1.0~rc1", 0),
            ("1.0~rc1", "1.0", -1),
            ("1.0~rc1", "1.0~rc2", -1),
            ("1.0~rc1~git123", "1.0~rc1~git123", 0),
            ("1.0~rc1~git123", "1.0~rc1", -1),
            ("1.0^", "1.0^", 0),
            ("1.0^", "1.0", 1),
            ("1.0^git1", "1.0^git1", 0),
            ("1.0^git1", "1.0", 1),
            ("1.0^git1", "1.0^git2", -1),
            ("1.0^git1", "1.01", -1),
            ("1.0^20160101", "1.0.1", -1),
            ("1.0^20160101^git1", "1.0^20160101^git1", 0),
            ("1.0^20160102", "1.0^20160101^git1", 1),
            ("1.0~rc1^git1", "1.0~rc1^git1", 0),
            ("1.0~rc1^git1", "1.0~rc1", 1),
            ("1.0^git1~pre", "1.0^git1~pre", 0),
            ("1.0^git1", "1.0^git1~pre", 1),
        ];
        for &(a, b, want) in cases {
            let want = want.cmp(&0);
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn evr() {
        let c = |a: &str, b: &str| parse(a).unwrap().cmp(&parse(b).unwrap());
        assert_eq!(c("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(c("0:1.0-1", "1.0-1"), Ordering::Equal);
        assert_eq!(c("3.0.7-16.el9", "3.0.7-18.el9_2"), Ordering::Less);
        assert_eq!(c("1.1.1k-7.el8_6", "1.1.1k-12.el8_9"), Ordering::Less);
        for v in ["", ":1", "a:1", "1.0-", "1 0", "1:2:3", "-1"] {
            assert!(parse(v).is_err(), "{v:?}");
        }
    }
}
