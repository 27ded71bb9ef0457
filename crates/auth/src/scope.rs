//! Docker token scopes: `repository:acme/app:pull,push`, `registry:catalog:*`.

use std::fmt;

/// What a token may be used for: one resource and the actions on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceScope {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// The actions Berth knows, in the order tokens list them.
pub const REPOSITORY_ACTIONS: [&str; 3] = ["pull", "push", "delete"];

impl ResourceScope {
    pub fn repository(name: &str, actions: &[&str]) -> ResourceScope {
        ResourceScope {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn catalog() -> ResourceScope {
        ResourceScope {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Parses one scope string. Unknown resource types and actions are dropped rather than
    /// refused (clients send scopes for features a registry may not have); `*` on a repository
    /// means every action. Returns `None` for a string that is not a scope at all.
    pub fn parse(s: &str) -> Option<ResourceScope> {
        if s.len() > 512 {
            return None;
        }
        // The name may contain ':' only in a registry host prefix, which a repository name here
        // never has, so split at the first and last colon.
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "repository" => {
                let mut out: Vec<String> = Vec::new();
                for a in actions.split(',') {
                    let a = a.trim();
                    if a == "*" {
                        out = REPOSITORY_ACTIONS.iter().map(|s| s.to_string()).collect();
                        break;
                    }
                    if REPOSITORY_ACTIONS.contains(&a) && !out.iter().any(|x| x == a) {
                        out.push(a.to_owned());
                    }
                }
                Some(ResourceScope {
                    kind: kind.into(),
                    name: name.into(),
                    actions: out,
                })
            }
            "registry" if name == "catalog" => {
                let ok = actions.split(',').any(|a| a.trim() == "*");
                Some(ResourceScope {
                    kind: kind.into(),
                    name: name.into(),
                    actions: if ok { vec!["*".into()] } else { vec![] },
                })
            }
            _ => None,
        }
    }

    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action || a == "*")
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes() {
        assert_eq!(
            ResourceScope::parse("repository:acme/app:pull,push"),
            Some(ResourceScope::repository("acme/app", &["pull", "push"]))
        );
        assert_eq!(
            ResourceScope::parse("repository:acme/app:*"),
            Some(ResourceScope::repository(
                "acme/app",
                &["pull", "push", "delete"]
            ))
        );
        // Escalation attempts keep only known actions.
        assert_eq!(
            ResourceScope::parse("repository:acme/app:pull,admin,root,pull"),
            Some(ResourceScope::repository("acme/app", &["pull"]))
        );
        assert_eq!(
            ResourceScope::parse("registry:catalog:*"),
            Some(ResourceScope::catalog())
        );
        assert_eq!(ResourceScope::parse("registry:other:*"), None);
        assert_eq!(ResourceScope::parse("repository::pull"), None);
        assert_eq!(ResourceScope::parse("nonsense"), None);
        assert_eq!(ResourceScope::parse(""), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_invents_actions(s in "\\PC{0,100}") {
            if let Some(sc) = ResourceScope::parse(&s) {
                for a in &sc.actions {
                    proptest::prop_assert!(REPOSITORY_ACTIONS.contains(&a.as_str()) || a == "*");
                }
            }
        }
    }
}
