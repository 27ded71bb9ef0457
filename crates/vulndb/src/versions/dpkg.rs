//! Debian package versions: `[epoch:]upstream_version[-debian_revision]` (Debian Policy 5.6.12),
//! compared like dpkg's `verrevcmp`.

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, cmp_digits, ord_by_precedence};

#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub upstream: String,
    /// Empty when the version has no revision; dpkg compares that like `0`.
    pub revision: String,
}

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Dpkg, s, reason);
    check_len(VersionScheme::Dpkg, s)?;
    let v = s.trim();
    if v.is_empty() {
        return Err(err("empty"));
    }
    if v.contains(char::is_whitespace) {
        return Err(err("contains whitespace"));
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() {
                return Err(err("epoch is empty"));
            }
            if !e.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("epoch is not a number"));
            }
            let epoch = e.parse::<u64>().map_err(|_| err("epoch is too large"))?;
            if rest.is_empty() {
                return Err(err("nothing after the epoch"));
            }
            (epoch, rest)
        }
        None => (0, v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => {
            if r.is_empty() {
                return Err(err("revision is empty"));
            }
            (u, r)
        }
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return Err(err("upstream version is empty"));
    }
    if !upstream.as_bytes()[0].is_ascii_digit() {
        return Err(err("upstream version does not start with a digit"));
    }
    let ok = |c: u8, extra: &[u8]| c.is_ascii_alphanumeric() || extra.contains(&c);
    if !upstream.bytes().all(|c| ok(c, b".+~-:")) {
        return Err(err("invalid character in upstream version"));
    }
    if !revision.bytes().all(|c| ok(c, b".+~")) {
        return Err(err("invalid character in revision"));
    }
    Ok(Version {
        epoch,
        upstream: upstream.to_string(),
        revision: revision.to_string(),
    })
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}
ord_by_precedence!(Version);

/// The weight of a character in a non-digit run: `~` sorts before the end of the string, which
/// sorts before letters, which sort before everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's algorithm: alternate non-digit runs, compared character by character (`~` first, then
/// the end of the string, then letters, then everything else), and digit runs, compared
/// numerically.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        let si = i.min(a.len());
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j.min(b.len());
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let da = std::str::from_utf8(&a[si..i.min(a.len())]).unwrap_or("");
        let db = std::str::from_utf8(&b[sj..j.min(b.len())]).unwrap_or("");
        let c = cmp_digits(da, db);
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

impl Version {
    /// The version without a binNMU suffix (`+bN` at the end of the revision). A binNMU rebuilds
    /// the same source, so the source version is the one without it.
    pub fn strip_binnmu(v: &str) -> &str {
        if let Some(pos) = v.rfind("+b") {
            let tail = &v[pos + 2..];
            if !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
                && v[..pos].contains('-')
            {
                return &v[..pos];
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        let (pa, pb) = (parse(a).unwrap(), parse(b).unwrap());
        assert_eq!(pa.cmp(&pb), expected, "{a} vs {b}");
        assert_eq!(pb.cmp(&pa), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn dpkg_vectors() {
        use Ordering::*;
        // From dpkg's lib/dpkg/t/t-version.c and Debian Policy's examples.
        check("0:0-0", "0:0-0", Equal);
        check("0:0-00", "0:0-0", Equal);
        check("0:0-0", "1:0-0", Less);
        check("0:0-0", "0:1-0", Less);
        check("0:0-0", "0:0-1", Less);
        check("0:0.0-0", "0:0-0", Greater);
        check("0:0a-0", "0:0b-0", Less);
        check("1.0", "1.0-0", Equal);
        check("0:1.0", "1.0", Equal);
        check("1:0.1", "2.0", Greater);
        check("1.0~rc1", "1.0", Less);
        check("1.0~~", "1.0~~a", Less);
        check("1.0~~a", "1.0~", Less);
        check("1.0~", "1.0", Less);
        check("1.0", "1.0a", Less);
        check("1.0a", "1.0+", Less);
        check("1.0", "1.0+b1", Less);
        check("2.30-1", "2.30-1+b1", Less);
        check("1.0-1", "1.0-2", Less);
        check("1.0-1", "1.0-1.1", Less);
        check("2.38.1-5+deb12u1", "2.38.1-5+deb12u3", Less);
        check("2.38.1-5+deb12u3", "2.38.1-5", Greater);
        check("3.0.11-1~deb12u2", "3.0.11-1", Less);
        check("1:2.38.1-5+deb12u3", "2.38.1-5+deb12u3", Greater);
        check("10", "9", Greater);
        check("1.0010", "1.10", Equal);
        check("1.2.3-4ubuntu0.1", "1.2.3-4", Greater);
        check("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less);
        check("1:1.2.13.dfsg-1", "1:1.2.11.dfsg-2+deb11u2", Greater);
        check("1.0-a-1", "1.0-a-2", Less);
        check(
            "99999999999999999999999",
            "99999999999999999999998",
            Greater,
        );
    }

    #[test]
    fn dpkg_invalid() {
        for v in [
            "", ":1", "1:", "a1.0", "1.0-", "1.0 1", "1_0", "x:1.0", "1.0-r@",
        ] {
            assert!(parse(v).is_err(), "{v:?} should be invalid");
        }
    }

    #[test]
    fn binnmu() {
        assert_eq!(Version::strip_binnmu("2.38.1-5+b1"), "2.38.1-5");
        assert_eq!(Version::strip_binnmu("1.2-3+deb12u1+b2"), "1.2-3+deb12u1");
        assert_eq!(Version::strip_binnmu("1.2+b1"), "1.2+b1");
        assert_eq!(Version::strip_binnmu("1.2-3+bx"), "1.2-3+bx");
    }
}

#[cfg(test)]
mod upstream {
    use super::*;

    /// dpkg's lib/dpkg/t/t-version.c (compare and parse cases).
    #[test]
    fn t_version() {
        let eq = |a: &str, b: &str| assert_eq!(parse(a).unwrap(), parse(b).unwrap(), "{a} = {b}");
        eq("0:0-00", "0:00-0");
        eq("1:2-3", "1:2-3");
        assert!(parse("0:0-0").unwrap() < parse("1:0-0").unwrap());
        assert_eq!(verrevcmp("a", "b"), Ordering::Less);
        assert_eq!(verrevcmp("0", "00"), Ordering::Equal);
        eq("0", "0:0");
        eq("0:0.0-0.0", "0.0-0.0");
        eq("5:1", "5:1-0");
        // Multiple hyphens and colons: the revision is after the last hyphen, the epoch before
        // the first colon.
        let v = parse("0:0-0-0-0").unwrap();
        assert_eq!((v.upstream.as_str(), v.revision.as_str()), ("0-0-0", "0"));
        let v = parse("0:0:0:0-0").unwrap();
        assert_eq!((v.upstream.as_str(), v.revision.as_str()), ("0:0:0", "0"));
        let v = parse("0:0-0:0-0").unwrap();
        assert_eq!(v.upstream, "0-0:0");
        parse("0:09azAZ.-+~:-0").unwrap();
        parse("0:0-azAZ09.+~").unwrap();
        // Surrounding white space is ignored.
        eq("  \t0:0-1", "0:0-1");
        eq("0:0-1\t  ", "0:0-1");
        for bad in [
            "",
            "  ",
            "0:",
            "0:0 0-1",
            "-1:0-1",
            "999999999999999999999999:0-1",
            "a:0-0",
            "A:0-0",
            "-0",
            "0:-0",
            "0:abc3-0",
            "0:0-0:0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for c in "!#@$%&/|\\<>()[]{};,_=*^'".chars() {
            assert!(parse(&format!("0:0{c}-0")).is_err(), "upstream {c}");
            assert!(parse(&format!("0:0-0{c}")).is_err(), "revision {c}");
        }
    }
}
