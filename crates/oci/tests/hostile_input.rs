//! Every parser of untrusted input, fed arbitrary and mutated input: none may panic, and what
//! they accept must be well-formed.

use berth_oci::range::{parse_content_range, parse_range};
use berth_oci::{Manifest, Reference, RepoName, parse_v2_path};
use proptest::prelude::*;

const VALID: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn manifest_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::parse(&bytes, None);
        let _ = Manifest::parse(&bytes, Some("application/vnd.oci.image.index.v1+json"));
    }

    #[test]
    fn manifest_parser_survives_mutations(pos in 0usize..VALID.len(), byte in any::<u8>(), cut in 0usize..VALID.len()) {
        let mut m = VALID.as_bytes().to_vec();
        m[pos] = byte;
        let _ = Manifest::parse(&m, None);
        let _ = Manifest::parse(&VALID.as_bytes()[..cut], None);
    }

    #[test]
    fn path_parser_names_only_nonempty_parts(path in "[a-z0-9/._:-]{0,80}") {
        if let Some(route) = parse_v2_path(&path)
            && let Some(name) = route.name()
        {
            prop_assert!(!name.is_empty());
        }
    }

    #[test]
    fn names_and_references_survive_anything(s in "\\PC{0,300}") {
        if let Ok(n) = s.parse::<RepoName>() {
            prop_assert!(n.as_str().len() <= 255);
            prop_assert!(!n.as_str().contains(".."));
        }
        let _ = s.parse::<Reference>();
    }

    #[test]
    fn ranges_are_within_the_object(s in "(bytes[ =])?[0-9]{0,22}-[0-9]{0,22}(/[0-9*]{0,5})?", len in 0u64..1_000_000) {
        if let Ok(Some(r)) = parse_range(&s, len) {
            prop_assert!(r.start <= r.end && r.end < len);
        }
        if let Ok(r) = parse_content_range(&s) {
            prop_assert!(r.start <= r.end);
        }
    }
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Manifest::parse(deep.as_bytes(), None).is_err());
    let deep_obj = format!(
        r#"{{"schemaVersion":2,"annotations":{}{}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(Manifest::parse(deep_obj.as_bytes(), None).is_err());
}
