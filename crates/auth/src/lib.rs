//! Who is asking, and what they may do: credentials, tokens and role-based decisions.
//!
//! Decisions are made here and nowhere else; `berth-meta` stores the records they are made from,
//! and the HTTP edge asks this crate before every route.

pub mod limiter;
pub mod scope;
pub mod secret;
pub mod service;
pub mod token;

pub use scope::ResourceScope;
pub use service::{AuthConfig, AuthError, AuthService, IssuedToken, Principal, Role, SharedAuth};
pub use token::{Claims, SigningKey, TokenError, TokenService};
