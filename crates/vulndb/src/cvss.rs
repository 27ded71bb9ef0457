//! CVSS base scores, computed with the RustSec `cvss` crate (v2, v3.0, v3.1 and v4.0).

use std::str::FromStr;

use cvss::Cvss;

use crate::advisory::SeverityKind;

/// Longest vector accepted; real vectors are under 200 bytes.
const MAX_VECTOR_LEN: usize = 512;

/// Parses a CVSS vector and returns its version and base score (for v4, CVSS-B or the
/// score of whatever threat and environmental metrics the vector carries).
pub fn base_score(vector: &str) -> Result<(SeverityKind, f64), cvss::Error> {
    if vector.len() > MAX_VECTOR_LEN {
        return Err(cvss::Error::InvalidComponent {
            component: "vector too long".to_string(),
        });
    }
    let parsed = Cvss::from_str(vector.trim())?;
    let kind = match parsed {
        Cvss::CvssV20(_) => SeverityKind::CvssV2,
        Cvss::CvssV30(_) | Cvss::CvssV31(_) => SeverityKind::CvssV3,
        Cvss::CvssV40(_) => SeverityKind::CvssV4,
        _ => SeverityKind::Vendor,
    };
    Ok((kind, parsed.score()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_examples() {
        // Examples from FIRST's CVSS v3.1 and v4.0 specification documents and calculators.
        let cases = [
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                SeverityKind::CvssV3,
                9.8,
            ),
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
                SeverityKind::CvssV3,
                6.1,
            ),
            (
                "CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H",
                SeverityKind::CvssV3,
                8.1,
            ),
            (
                "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
                SeverityKind::CvssV3,
                7.8,
            ),
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
                SeverityKind::CvssV3,
                10.0,
            ),
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N",
                SeverityKind::CvssV3,
                0.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                SeverityKind::CvssV4,
                9.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
                SeverityKind::CvssV4,
                10.0,
            ),
            (
                "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                SeverityKind::CvssV4,
                8.5,
            ),
            ("AV:N/AC:L/Au:N/C:P/I:P/A:P", SeverityKind::CvssV2, 7.5),
            ("AV:N/AC:M/Au:N/C:N/I:P/A:N", SeverityKind::CvssV2, 4.3),
        ];
        for (v, kind, score) in cases {
            let (k, s) = base_score(v).unwrap();
            assert_eq!((k, s), (kind, score), "{v}");
        }
    }

    #[test]
    fn invalid_vectors() {
        for v in [
            "",
            "CVSS:3.1/",
            "CVSS:3.1/AV:X",
            "CVSS:9.9/AV:N",
            "garbage",
            &"A".repeat(10_000),
        ] {
            assert!(base_score(v).is_err(), "{v:?}");
        }
    }
}
