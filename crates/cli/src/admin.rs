//! `berth admin`: direct management of the access-control records, for bootstrap and recovery.
//! Secrets are read from standard input and generated secrets are printed once.

use std::io::BufRead;

use anyhow::{Context, bail};
use berth_auth::secret;
use berth_meta::auth::{Namespace, Subject};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a user; the password is read from the first line of standard input.
    UserAdd {
        name: String,
        /// Make the user a site admin.
        #[arg(long)]
        site_admin: bool,
    },
    /// Set a user's password (read from the first line of standard input).
    Passwd { name: String },
    /// Create an organisation, optionally owned by a user.
    OrgAdd {
        name: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Grant a user a role (read, write, admin, owner) on an organisation or one repository.
    Grant {
        user: String,
        role: String,
        /// `ORG` or `ORG/REPO...`.
        target: String,
    },
    /// Create a robot account `ORG+NAME` with a role on the organisation or some repositories;
    /// prints its secret once.
    RobotAdd {
        org: String,
        name: String,
        /// read, write or admin.
        #[arg(long, default_value = "read")]
        role: String,
        /// Limit the robot to these repositories (full names); default the whole organisation.
        #[arg(long = "repo")]
        repos: Vec<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_days: Option<u64>,
    },
    /// Create a personal access token for a user, limited to a role; prints it once.
    TokenAdd {
        user: String,
        name: String,
        #[arg(long, default_value = "read")]
        role: String,
        #[arg(long)]
        expires_days: Option<u64>,
    },
}

fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.len() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(p)
}

fn check_role(role: &str, allowed: &[&str]) -> anyhow::Result<()> {
    if !allowed.contains(&role) {
        bail!("role must be one of {}", allowed.join(", "));
    }
    Ok(())
}

fn expiry(days: Option<u64>) -> Option<i64> {
    days.map(|d| berth_meta::now_millis() + (d as i64) * 86_400_000)
}

pub async fn run(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    let meta = crate::open_meta(&config).await?;
    match command {
        AdminCommand::UserAdd { name, site_admin } => {
            name.parse::<berth_oci::RepoName>()
                .ok()
                .filter(|n| !n.as_str().contains('/'))
                .with_context(|| {
                    format!("{name:?} is not a valid user name (lowercase letters, digits, . _ -)")
                })?;
            let password = read_secret()?;
            meta.create_user(&name, &secret::hash_password(&password), site_admin)
                .await?;
            println!("created user {name}");
        }
        AdminCommand::Passwd { name } => {
            let password = read_secret()?;
            if !meta
                .set_password(&name, &secret::hash_password(&password))
                .await?
            {
                bail!("no user {name}");
            }
            println!("password of {name} changed");
        }
        AdminCommand::OrgAdd { name, owner } => {
            let owner = match owner {
                Some(o) => Some(
                    meta.user_by_name(&o)
                        .await?
                        .with_context(|| format!("no user {o}"))?
                        .id,
                ),
                None => None,
            };
            meta.create_org(&name, owner).await?;
            println!("created organisation {name}");
        }
        AdminCommand::Grant { user, role, target } => {
            check_role(&role, &["read", "write", "admin", "owner"])?;
            let (org, repo) = match target.split_once('/') {
                Some((org, _)) => (org.to_owned(), target.clone()),
                None => (target.clone(), String::new()),
            };
            let org_id = meta
                .org_id(&org)
                .await?
                .with_context(|| format!("no organisation {org}"))?;
            let u = meta
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user {user}"))?;
            meta.grant(Subject::User(u.id), org_id, &repo, &role)
                .await?;
            println!("granted {role} on {target} to {user}");
        }
        AdminCommand::RobotAdd {
            org,
            name,
            role,
            repos,
            expires_days,
        } => {
            check_role(&role, &["read", "write", "admin"])?;
            let Namespace::Organisation(org_id) = meta.namespace(&org).await? else {
                bail!("no organisation {org}")
            };
            for r in &repos {
                if r.split('/').next() != Some(org.as_str()) || !r.contains('/') {
                    bail!("repository {r} is not in organisation {org}");
                }
            }
            let full = format!("{org}+{name}");
            let secret = secret::generate_secret("berth_robot_");
            let id = meta
                .create_robot(
                    org_id,
                    &full,
                    &secret::hash_secret(&secret),
                    expiry(expires_days),
                )
                .await?;
            if repos.is_empty() {
                meta.grant(Subject::Robot(id), org_id, "", &role).await?;
            }
            for r in &repos {
                meta.grant(Subject::Robot(id), org_id, r, &role).await?;
            }
            let _ = meta
                .audit("admin (command line)", "robot.create", &full, "local", None)
                .await;
            println!("robot: {full}\nsecret: {secret}");
        }
        AdminCommand::TokenAdd {
            user,
            name,
            role,
            expires_days,
        } => {
            check_role(&role, &["read", "write", "admin"])?;
            let u = meta
                .user_by_name(&user)
                .await?
                .with_context(|| format!("no user {user}"))?;
            let secret = secret::generate_secret("berth_pat_");
            meta.create_access_token(
                u.id,
                &name,
                &secret::hash_secret(&secret),
                &role,
                expiry(expires_days),
            )
            .await?;
            let _ = meta
                .audit(
                    "admin (command line)",
                    "token.create",
                    &format!("{user}/{name}"),
                    "local",
                    None,
                )
                .await;
            println!("token: {secret}");
        }
    }
    meta.close().await;
    Ok(())
}
