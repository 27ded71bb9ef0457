//! `Content-Range` (uploads) and `Range` (blob reads) header parsing.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range header {0:?} is malformed")]
    Malformed(String),
    #[error("range is not satisfiable")]
    Unsatisfiable,
}

/// An inclusive byte range `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an upload chunk's `Content-Range`: `<start>-<end>` as the spec writes it, also
/// accepting the `bytes ` prefix and a `/<total>` suffix that some clients send.
pub fn parse_content_range(value: &str) -> Result<ByteRange, RangeError> {
    let bad = || RangeError::Malformed(value.chars().take(80).collect());
    let v = value.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split_once('/').map(|(r, _)| r).unwrap_or(v);
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let start = number(a.trim()).ok_or_else(bad)?;
    let end = number(b.trim()).ok_or_else(bad)?;
    if end < start {
        return Err(bad());
    }
    Ok(ByteRange { start, end })
}

/// Parses a blob read's `Range` header against an object of `len` bytes. Only a single range is
/// supported (multipart responses are not something registry clients ask for); `Ok(None)` means
/// the header should be ignored and the whole object sent, as RFC 9110 permits.
pub fn parse_range(value: &str, len: u64) -> Result<Option<ByteRange>, RangeError> {
    let bad = || RangeError::Malformed(value.chars().take(80).collect());
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // Suffix range: the last N bytes.
        let n = number(b).ok_or_else(bad)?;
        if n == 0 || len == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }
    } else {
        let start = number(a).ok_or_else(bad)?;
        let end = if b.is_empty() {
            u64::MAX
        } else {
            number(b).ok_or_else(bad)?
        };
        if end < start {
            return Err(bad());
        }
        if start >= len {
            return Err(RangeError::Unsatisfiable);
        }
        ByteRange {
            start,
            end: end.min(len - 1),
        }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("0-99"),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/100"),
            Ok(ByteRange { start: 5, end: 9 })
        );
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "9-5",
            "a-b",
            "1-2-3",
            "99999999999999999999-1",
            "+1-2",
        ] {
            assert!(parse_content_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Ok(Some(ByteRange { start: 0, end: 9 }))
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Ok(Some(ByteRange { start: 0, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=0-1000", 100),
            Ok(Some(ByteRange { start: 0, end: 99 }))
        );
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        for bad in ["0-9", "bytes=", "bytes=a-", "bytes=9-1", "items=0-1"] {
            assert!(
                matches!(parse_range(bad, 100), Err(RangeError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
