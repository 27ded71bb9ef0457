//! Berth's vulnerability database (placeholder doc, rewritten below).

pub mod versions;
