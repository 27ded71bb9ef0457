//! Berth's vulnerability database (placeholder doc, rewritten below).

pub mod advisory;
pub mod cvss;
pub mod db;
pub mod import;
pub mod matching;
pub mod names;
pub mod signature;
pub mod versions;
