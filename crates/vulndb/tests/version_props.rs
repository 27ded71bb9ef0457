//! Property tests for every version scheme: comparison is a total order on generated versions,
//! and parsing arbitrary strings never panics.

use std::cmp::Ordering;

use berth_vulndb::versions::{VersionScheme, compare_scheme, validate_scheme};
use proptest::prelude::*;

/// Generators of plausible (mostly valid) versions per scheme, built to hit the interesting
/// corners: epochs, tildes, carets, suffixes, pre-releases, leading zeros.
fn version_strategy(scheme: VersionScheme) -> BoxedStrategy<String> {
    let re = match scheme {
        VersionScheme::Dpkg => "([0-9]:)?[0-9]{1,2}(\\.[0-9a-z~+]{1,3}){0,3}(-[0-9a-z~+.]{1,4})?",
        VersionScheme::Apk => {
            "[0-9]{1,2}(\\.[0-9]{1,3}){0,3}[a-c]?(_(alpha|beta|pre|rc|p|git|svn)[0-9]{0,2}){0,2}(-r[0-9]{1,2})?"
        }
        VersionScheme::Rpm => "([0-9]:)?[0-9a-z.~^_+]{1,8}(-[0-9a-z.~^_]{1,5})?",
        VersionScheme::SemVer | VersionScheme::Go => {
            "v?(0|[1-9][0-9]?)\\.(0|[1-9])\\.(0|[1-9])(-(0|[1-9]|[a-z]{1,3}|0[a-z])(\\.(0|[1-9]|[a-z]{1,3})){0,2})?(\\+[a-z0-9]{1,3})?"
        }
        VersionScheme::Pep440 => {
            "([0-9]!)?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}((a|b|rc|alpha|c)[0-9]?)?(\\.post[0-9]?|-[0-9])?(\\.dev[0-9]?)?(\\+[a-z0-9]{1,3}(\\.[a-z0-9]{1,3}){0,2})?"
        }
        VersionScheme::Maven => "[0-9a-z]{1,3}([.-][0-9a-z]{0,6}){0,4}",
        VersionScheme::RubyGems => {
            "[0-9]{1,2}(\\.[0-9a-z]{1,3}){0,4}(-[0-9a-z]{1,3}(\\.[0-9a-z]{1,3}){0,2})?"
        }
    };
    proptest::string::string_regex(re)
        .expect("valid regex")
        .prop_filter("valid version", move |v| validate_scheme(scheme, v).is_ok())
        .boxed()
}

const SCHEMES: [VersionScheme; 8] = [
    VersionScheme::Dpkg,
    VersionScheme::Apk,
    VersionScheme::Rpm,
    VersionScheme::SemVer,
    VersionScheme::Go,
    VersionScheme::Pep440,
    VersionScheme::Maven,
    VersionScheme::RubyGems,
];

fn scheme_and_three() -> impl Strategy<Value = (VersionScheme, String, String, String)> {
    proptest::sample::select(SCHEMES.to_vec()).prop_flat_map(|s| {
        (
            Just(s),
            version_strategy(s),
            version_strategy(s),
            version_strategy(s),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn total_order((scheme, a, b, c) in scheme_and_three()) {
        let cmp = |x: &str, y: &str| compare_scheme(scheme, x, y).unwrap();
        // Reflexive.
        prop_assert_eq!(cmp(&a, &a), Ordering::Equal);
        // Antisymmetric.
        prop_assert_eq!(cmp(&a, &b), cmp(&b, &a).reverse(), "{} {} {}", scheme, a, b);
        // Transitive, in every arrangement of the three.
        let mut v = [a.clone(), b.clone(), c.clone()];
        v.sort_by(|x, y| cmp(x, y));
        prop_assert_ne!(cmp(&v[0], &v[1]), Ordering::Greater);
        prop_assert_ne!(cmp(&v[1], &v[2]), Ordering::Greater);
        prop_assert_ne!(cmp(&v[0], &v[2]), Ordering::Greater, "{} {:?}", scheme, v);
        if cmp(&v[0], &v[1]) == Ordering::Less || cmp(&v[1], &v[2]) == Ordering::Less {
            prop_assert_eq!(cmp(&v[0], &v[2]), Ordering::Less, "{} {:?}", scheme, v);
        }
    }

    #[test]
    fn parse_never_panics(s in any::<String>(), t in "[0-9a-zA-Z.:~^+_!-]{0,40}") {
        for scheme in SCHEMES {
            let _ = validate_scheme(scheme, &s);
            let _ = validate_scheme(scheme, &t);
            let _ = compare_scheme(scheme, &t, &s);
        }
    }
}

#[test]
fn huge_and_odd_inputs_are_errors() {
    let long = "1".repeat(10_000);
    let nested = "1-".repeat(200) + "1";
    for scheme in SCHEMES {
        assert!(validate_scheme(scheme, &long).is_err(), "{scheme}");
        assert!(validate_scheme(scheme, "").is_err(), "{scheme}");
        let _ = validate_scheme(scheme, &nested);
        let _ = validate_scheme(scheme, "99999999999999999999999999999.1");
    }
}
