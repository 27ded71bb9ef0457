//! Maven versions, ordered like Maven's `ComparableVersion`.
//!
//! A version is split into a tree of items: `.` separates items of one list, `-` and every
//! transition between digits and letters start a nested list. Numbers compare numerically;
//! known qualifiers in the order `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final
//! = release < sp`, unknown qualifiers after them alphabetically; a number beats a list, which
//! beats a qualifier. Trailing "null" items (`0`, `""`, `ga`, `final`, `release`) are dropped, so
//! `1 = 1.0 = 1.0.0 = 1-ga`.

use std::cmp::Ordering;

use super::{VersionError, VersionScheme, check_len, cmp_digits, ord_by_precedence};

#[derive(Debug, Clone)]
enum Item {
    /// Digits without leading zeros (empty means 0).
    Int(String),
    /// The comparable form of a qualifier: its index among the known ones, or `7-<text>`.
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
/// The comparable form of the empty qualifier (a release).
const RELEASE: &str = "5";

fn comparable_qualifier(q: &str) -> String {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(s: &str, followed_by_digit: bool) -> Item {
    let s = if followed_by_digit && s.len() == 1 {
        match s {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            other => other,
        }
    } else {
        s
    };
    let s = match s {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(comparable_qualifier(s))
}

fn parse_item(digit: bool, s: &str) -> Item {
    if digit {
        Item::Int(s.trim_start_matches('0').to_string())
    } else {
        string_item(s, false)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Self::Int(d) => d.is_empty(),
            Self::Str(q) => q == RELEASE,
            Self::List(l) => l.is_empty(),
        }
    }

    /// Compares with an absent item (the other version ended).
    fn cmp_none(&self) -> Ordering {
        match self {
            Self::Int(d) => {
                if d.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            Self::Str(q) => q.as_str().cmp(RELEASE),
            Self::List(l) => l.first().map_or(Ordering::Equal, Item::cmp_none),
        }
    }

    fn cmp_item(&self, other: &Self) -> Ordering {
        use Item::*;
        match (self, other) {
            (Int(a), Int(b)) => cmp_digits(a, b),
            (Int(_), _) => Ordering::Greater,
            (Str(_), Int(_)) => Ordering::Less,
            (Str(a), Str(b)) => a.cmp(b),
            (Str(_), List(_)) => Ordering::Less,
            (List(_), Int(_)) => Ordering::Less,
            (List(_), Str(_)) => Ordering::Greater,
            (List(a), List(b)) => cmp_lists(a, b),
        }
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    let n = a.len().max(b.len());
    for k in 0..n {
        let c = match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => x.cmp_item(y),
            (Some(x), None) => x.cmp_none(),
            (None, Some(y)) => y.cmp_none().reverse(),
            (None, None) => Ordering::Equal,
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

#[derive(Debug, Clone)]
pub struct Version {
    items: Vec<Item>,
}

/// Deepest nesting of lists accepted; every `-` and digit/letter transition nests one level.
const MAX_DEPTH: usize = 64;

pub fn parse(s: &str) -> Result<Version, VersionError> {
    let err = |reason| VersionError::new(VersionScheme::Maven, s, reason);
    check_len(VersionScheme::Maven, s)?;
    let v = s.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Err(err("empty"));
    }
    if !v.is_ascii()
        || v.bytes()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(err("invalid character"));
    }
    // A stack of lists under construction; the last one receives items.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let close_all = |stack: &mut Vec<Vec<Item>>| -> Vec<Item> {
        while stack.len() > 1 {
            let mut top = stack.pop().unwrap_or_default();
            normalize(&mut top);
            if let Some(parent) = stack.last_mut() {
                parent.push(Item::List(top));
            }
        }
        let mut root = stack.pop().unwrap_or_default();
        normalize(&mut root);
        root
    };
    let b = v.as_bytes();
    let mut digit = false;
    let mut start = 0;
    for i in 0..b.len() {
        let c = b[i];
        let push = |stack: &mut Vec<Vec<Item>>, item: Item| {
            if let Some(top) = stack.last_mut() {
                top.push(item);
            }
        };
        if c == b'.' || c == b'-' {
            let item = if i == start {
                Item::Int(String::new())
            } else {
                parse_item(digit, &v[start..i])
            };
            push(&mut stack, item);
            start = i + 1;
            if c == b'-' {
                stack.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !digit && i > start {
                push(&mut stack, string_item(&v[start..i], true));
                start = i;
                stack.push(Vec::new());
            }
            digit = true;
        } else {
            if digit && i > start {
                push(&mut stack, parse_item(true, &v[start..i]));
                start = i;
                stack.push(Vec::new());
            }
            digit = false;
        }
        if stack.len() > MAX_DEPTH {
            return Err(err("too deeply nested"));
        }
    }
    if b.len() > start {
        // A trailing `.X` qualifier is read as `-X` (Maven 3.9: `1.0.0.X1 < 1.0.0-X2`).
        if !digit && stack.last().is_some_and(|l| !l.is_empty()) {
            stack.push(Vec::new());
        }
        let item = parse_item(digit, &v[start..]);
        if let Some(top) = stack.last_mut() {
            top.push(item);
        }
    }
    Ok(Version {
        items: close_all(&mut stack),
    })
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_lists(&self.items, &other.items)
    }
}
ord_by_precedence!(Version);

#[cfg(test)]
mod tests {
    use super::*;

    // Maven's ComparableVersionTest.
    const QUALIFIER_ORDER: &[&str] = &[
        "1-alpha2snapshot",
        "1-alpha2",
        "1-alpha-123",
        "1-beta-2",
        "1-beta123",
        "1-m2",
        "1-m11",
        "1-rc",
        "1-cr2",
        "1-rc123",
        "1-SNAPSHOT",
        "1",
        "1-sp",
        "1-sp2",
        "1-sp123",
        "1-abc",
        "1-def",
        "1-pom-1",
        "1-1-snapshot",
        "1-1",
        "1-2",
        "1-123",
    ];
    const NUMBER_ORDER: &[&str] = &[
        "2.0", "2.0.a", "2-1", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
        "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11", "11",
        "11.a", "11b", "11c", "11m",
    ];

    fn cmp(a: &str, b: &str) -> Ordering {
        parse(a).unwrap().cmp(&parse(b).unwrap())
    }

    #[test]
    fn ordered_lists() {
        for list in [QUALIFIER_ORDER, NUMBER_ORDER] {
            for (i, a) in list.iter().enumerate() {
                for b in &list[i + 1..] {
                    assert_eq!(cmp(a, b), Ordering::Less, "{a} < {b}");
                    assert_eq!(cmp(b, a), Ordering::Greater, "{b} > {a}");
                }
            }
        }
    }

    #[test]
    fn equalities() {
        let groups: &[&[&str]] = &[
            &[
                "1",
                "1.0",
                "1.0.0",
                "1-0",
                "1.0-0",
                "1ga",
                "1.ga",
                "1-ga",
                "1-final",
                "1.0-release",
            ],
            &["1a", "1-a", "1.0-a", "1.0.0-a"],
            &["1a1", "1-a1", "1-alpha-1", "1.0-alpha1"],
            &["1b2", "1-b2", "1-beta-2", "1.0.0-beta2"],
            &["1m3", "1-m3", "1.0-milestone-3"],
            &["1rc4", "1-cr4", "1-rc-4", "1.0.0-cr4"],
            &["1x", "1-x", "1.0-x"],
            &["1.0.0-SNAPSHOT", "1-snapshot", "1.0-SNAPSHOT"],
        ];
        for g in groups {
            for a in *g {
                for b in *g {
                    assert_eq!(cmp(a, b), Ordering::Equal, "{a} == {b}");
                }
            }
        }
    }

    #[test]
    fn real_versions() {
        assert_eq!(cmp("2.17.0", "2.15.0"), Ordering::Greater);
        assert_eq!(cmp("2.0-beta9", "2.0"), Ordering::Less);
        assert_eq!(cmp("5.3.18", "5.3.18.RELEASE"), Ordering::Equal);
        assert_eq!(cmp("1.2.3-jre", "1.2.3-android"), Ordering::Greater);
    }
}
