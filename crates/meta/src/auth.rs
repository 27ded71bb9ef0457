//! Access-control records: users, organisations, teams, grants, robot accounts, personal access
//! tokens, repository visibility, the audit log and the token signing key. Decisions about what
//! these records allow are made in `berth-auth`; this module only stores and finds them.

use sqlx::Row;

use crate::{MetaError, MetaStore, Result, now_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub site_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRow {
    pub id: i64,
    pub org_id: i64,
    pub org: String,
    pub name: String,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub user: UserRow,
    pub name: String,
    pub max_role: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    User(i64),
    Team(i64),
    Robot(i64),
}

impl Subject {
    fn parts(self) -> (&'static str, i64) {
        match self {
            Subject::User(id) => ("user", id),
            Subject::Team(id) => ("team", id),
            Subject::Robot(id) => ("robot", id),
        }
    }
}

/// What the first component of a repository name belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    User(i64),
    Organisation(i64),
    Free,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub detail: Option<String>,
}

/// Filters for reading the audit log; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Return entries with ids below this (for paging backwards in time).
    pub before_id: Option<i64>,
    pub limit: i64,
}

fn user_from(r: &sqlx::any::AnyRow, offset: usize) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get(offset)?,
        name: r.try_get(offset + 1)?,
        password_hash: r.try_get(offset + 2)?,
        site_admin: r.try_get::<i64, _>(offset + 3)? != 0,
        disabled: r.try_get::<i64, _>(offset + 4)? != 0,
        created_at: r.try_get(offset + 5)?,
    })
}

const ROBOT_SELECT: &str = "SELECT r.id, r.org_id, o.name, r.name, r.secret_hash, r.expires_at, r.revoked_at, \
     r.created_at FROM robots r JOIN organisations o ON o.id = r.org_id";

fn robot_from(r: &sqlx::any::AnyRow) -> Result<RobotRow> {
    Ok(RobotRow {
        id: r.try_get(0)?,
        org_id: r.try_get(1)?,
        org: r.try_get(2)?,
        name: r.try_get(3)?,
        secret_hash: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        revoked_at: r.try_get(6)?,
        created_at: r.try_get(7)?,
    })
}

const USER_COLS: &str = "u.id, u.name, u.password_hash, u.site_admin, u.disabled, u.created_at";

impl MetaStore {
    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Creates a user. Fails with `Conflict` if the name is taken by a user or organisation.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        site_admin: bool,
    ) -> Result<i64> {
        let _g = self.gate().await;
        self.retrying(|| self.create_user_once(name, password_hash, site_admin))
            .await
            .map_err(|e| taken(e, name))
    }

    async fn create_user_once(
        &self,
        name: &str,
        password_hash: &str,
        site_admin: bool,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        if namespace_taken(&mut tx, name).await? {
            return Err(MetaError::Conflict(format!("the name {name:?} is taken")));
        }
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, site_admin, disabled, created_at) VALUES ($1, $2, $3, 0, $4) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(site_admin as i64)
        .bind(now_millis())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.try_get(0)?)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let q = format!("SELECT {USER_COLS} FROM users u WHERE u.name = $1");
        let row = sqlx::query(&q)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from(&r, 0)).transpose()
    }

    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_user_flags(
        &self,
        name: &str,
        site_admin: bool,
        disabled: bool,
    ) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("UPDATE users SET site_admin = $2, disabled = $3 WHERE name = $1")
            .bind(name)
            .bind(site_admin as i64)
            .bind(disabled as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_users(&self, after: &str, limit: i64) -> Result<Vec<UserRow>> {
        let q =
            format!("SELECT {USER_COLS} FROM users u WHERE u.name > $1 ORDER BY u.name LIMIT $2");
        let rows = sqlx::query(&q)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| user_from(r, 0)).collect()
    }

    /// Creates an organisation owned by `owner`.
    pub async fn create_org(&self, name: &str, owner: Option<i64>) -> Result<i64> {
        let _g = self.gate().await;
        self.retrying(|| self.create_org_once(name, owner))
            .await
            .map_err(|e| taken(e, name))
    }

    async fn create_org_once(&self, name: &str, owner: Option<i64>) -> Result<i64> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        if namespace_taken(&mut tx, name).await? {
            return Err(MetaError::Conflict(format!("the name {name:?} is taken")));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO organisations (name, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO grants (subject_kind, subject_id, org_id, repo, role, created_at) VALUES ('user', $1, $2, '', 'owner', $3)",
            )
            .bind(owner)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn org_id(&self, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM organisations WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// What owns the namespace `name`.
    pub async fn namespace(&self, name: &str) -> Result<Namespace> {
        if let Some(r) = sqlx::query("SELECT id FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(Namespace::User(r.try_get(0)?));
        }
        if let Some(id) = self.org_id(name).await? {
            return Ok(Namespace::Organisation(id));
        }
        Ok(Namespace::Free)
    }

    pub async fn create_team(&self, org_id: i64, name: &str) -> Result<i64> {
        let _g = self.gate().await;
        let row = sqlx::query(
            "INSERT INTO teams (org_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(org_id)
        .bind(name)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, name))?;
        Ok(row.try_get(0)?)
    }

    pub async fn add_team_member(&self, team_id: i64, user_id: i64) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(team_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Grants `role` to `subject` on an organisation (`repo` empty) or one of its repositories,
    /// replacing an earlier grant on the same target.
    pub async fn grant(&self, subject: Subject, org_id: i64, repo: &str, role: &str) -> Result<()> {
        let _g = self.gate().await;
        let (kind, id) = subject.parts();
        sqlx::query(
            "INSERT INTO grants (subject_kind, subject_id, org_id, repo, role, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (subject_kind, subject_id, org_id, repo) DO UPDATE SET role = excluded.role",
        )
        .bind(kind)
        .bind(id)
        .bind(org_id)
        .bind(repo)
        .bind(role)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn revoke_grant(&self, subject: Subject, org_id: i64, repo: &str) -> Result<bool> {
        let _g = self.gate().await;
        let (kind, id) = subject.parts();
        let done = sqlx::query("DELETE FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND org_id = $3 AND repo = $4")
            .bind(kind)
            .bind(id)
            .bind(org_id)
            .bind(repo)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The roles a user holds in organisation `org` that apply to `repo` (org-wide grants and
    /// grants on that repository), directly or through teams.
    pub async fn user_roles(&self, user_id: i64, org: &str, repo: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT g.role FROM grants g JOIN organisations o ON o.id = g.org_id \
             WHERE o.name = $1 AND (g.repo = '' OR g.repo = $2) AND ( \
               (g.subject_kind = 'user' AND g.subject_id = $3) OR \
               (g.subject_kind = 'team' AND g.subject_id IN (SELECT team_id FROM team_members WHERE user_id = $3)))",
        )
        .bind(org)
        .bind(repo)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The roles a robot holds that apply to `repo` of organisation `org`.
    pub async fn robot_roles(&self, robot_id: i64, org: &str, repo: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT g.role FROM grants g JOIN organisations o ON o.id = g.org_id \
             WHERE o.name = $1 AND (g.repo = '' OR g.repo = $2) AND g.subject_kind = 'robot' AND g.subject_id = $3",
        )
        .bind(org)
        .bind(repo)
        .bind(robot_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn create_robot(
        &self,
        org_id: i64,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<i64> {
        let _g = self.gate().await;
        let row = sqlx::query(
            "INSERT INTO robots (org_id, name, secret_hash, expires_at, revoked_at, created_at) VALUES ($1, $2, $3, $4, NULL, $5) RETURNING id",
        )
        .bind(org_id)
        .bind(name)
        .bind(secret_hash)
        .bind(expires_at)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, name))?;
        Ok(row.try_get(0)?)
    }

    pub async fn robot_by_name(&self, name: &str) -> Result<Option<RobotRow>> {
        let q = format!("{ROBOT_SELECT} WHERE r.name = $1");
        let row = sqlx::query(&q)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| robot_from(&r)).transpose()
    }

    pub async fn revoke_robot(&self, name: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done =
            sqlx::query("UPDATE robots SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .bind(now_millis())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn create_access_token(
        &self,
        user_id: i64,
        name: &str,
        secret_hash: &str,
        max_role: &str,
        expires_at: Option<i64>,
    ) -> Result<i64> {
        let _g = self.gate().await;
        let row = sqlx::query(
            "INSERT INTO access_tokens (user_id, name, secret_hash, max_role, expires_at, revoked_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(secret_hash)
        .bind(max_role)
        .bind(expires_at)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// A personal access token by the hash of its secret, with its user.
    pub async fn access_token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRow>> {
        let q = format!(
            "SELECT {USER_COLS}, t.id, t.name, t.max_role, t.expires_at, t.revoked_at \
             FROM access_tokens t JOIN users u ON u.id = t.user_id WHERE t.secret_hash = $1"
        );
        let row = sqlx::query(&q)
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TokenRow {
                user: user_from(&r, 0)?,
                id: r.try_get(6)?,
                name: r.try_get(7)?,
                max_role: r.try_get(8)?,
                expires_at: r.try_get(9)?,
                revoked_at: r.try_get(10)?,
            })
        })
        .transpose()
    }

    pub async fn revoke_access_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("UPDATE access_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(token_id)
            .bind(user_id)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn is_public(&self, repo: &str) -> Result<bool> {
        let row = sqlx::query("SELECT public FROM repo_settings WHERE name = $1")
            .bind(repo)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>(0)? != 0,
            None => false,
        })
    }

    pub async fn set_public(&self, repo: &str, public: bool) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO repo_settings (name, public, description) VALUES ($1, $2, NULL) \
             ON CONFLICT (name) DO UPDATE SET public = excluded.public",
        )
        .bind(repo)
        .bind(public as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Appends to the audit log. Callers must never pass secrets in any field.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        source: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, source, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now_millis())
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(source)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Audit entries matching `q`, newest first.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, source, detail FROM audit_log \
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR target = $2) AND at >= $3 AND at <= $4 AND id < $5 \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(q.actor.as_deref().unwrap_or(""))
        .bind(q.target.as_deref().unwrap_or(""))
        .bind(q.since.unwrap_or(0))
        .bind(q.until.unwrap_or(i64::MAX))
        .bind(q.before_id.unwrap_or(i64::MAX))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    source: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// The token signing key: the stored one, or `candidate` (kid, PEM) stored now if there is
    /// none. With several replicas starting at once, the first insert wins and all use it.
    pub async fn signing_key(&self, candidate: (&str, &str)) -> Result<String> {
        {
            let _g = self.gate().await;
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_pem, created_at) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
            )
            .bind(candidate.0)
            .bind(candidate.1)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        }
        let row =
            sqlx::query("SELECT private_pem FROM signing_keys ORDER BY created_at, kid LIMIT 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get(0)?)
    }
}

/// A grant as listed: who, on what, which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub subject_kind: String,
    pub subject: String,
    pub repo: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenInfo {
    pub id: i64,
    pub name: String,
    pub max_role: String,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl MetaStore {
    pub async fn list_orgs(&self, after: &str, limit: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT name FROM organisations WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn team_id(&self, org_id: i64, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM teams WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Teams of an organisation with their members' names.
    pub async fn list_teams(&self, org_id: i64) -> Result<Vec<(String, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT t.name, u.name FROM teams t LEFT JOIN team_members m ON m.team_id = t.id \
             LEFT JOIN users u ON u.id = m.user_id WHERE t.org_id = $1 ORDER BY t.name, u.name",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let team: String = r.try_get(0)?;
            let member: Option<String> = r.try_get(1)?;
            if out.last().map(|(t, _)| t != &team).unwrap_or(true) {
                out.push((team, Vec::new()));
            }
            if let (Some(m), Some(last)) = (member, out.last_mut()) {
                last.1.push(m);
            }
        }
        Ok(out)
    }

    pub async fn remove_team_member(&self, team_id: i64, user_id: i64) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every grant in an organisation, with subjects by name.
    pub async fn list_grants(&self, org_id: i64) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query(
            "SELECT g.subject_kind, COALESCE(u.name, t.name, r.name, ''), g.repo, g.role FROM grants g \
             LEFT JOIN users u ON g.subject_kind = 'user' AND u.id = g.subject_id \
             LEFT JOIN teams t ON g.subject_kind = 'team' AND t.id = g.subject_id \
             LEFT JOIN robots r ON g.subject_kind = 'robot' AND r.id = g.subject_id \
             WHERE g.org_id = $1 ORDER BY g.repo, g.subject_kind, 2",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GrantRow {
                    subject_kind: r.try_get(0)?,
                    subject: r.try_get(1)?,
                    repo: r.try_get(2)?,
                    role: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Robot accounts of an organisation.
    pub async fn list_robots(&self, org_id: i64) -> Result<Vec<RobotRow>> {
        let q = format!("{ROBOT_SELECT} WHERE r.org_id = $1 ORDER BY r.name");
        let rows = sqlx::query(&q).bind(org_id).fetch_all(&self.pool).await?;
        rows.iter().map(robot_from).collect()
    }

    pub async fn list_access_tokens(&self, user_id: i64) -> Result<Vec<AccessTokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, max_role, expires_at, revoked_at, created_at FROM access_tokens WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccessTokenInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    max_role: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                    revoked_at: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// A repository's visibility and description.
    pub async fn repo_settings(&self, repo: &str) -> Result<(bool, Option<String>)> {
        let row = sqlx::query("SELECT public, description FROM repo_settings WHERE name = $1")
            .bind(repo)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => (r.try_get::<i64, _>(0)? != 0, r.try_get(1)?),
            None => (false, None),
        })
    }

    pub async fn set_description(&self, repo: &str, description: Option<&str>) -> Result<()> {
        let _g = self.gate().await;
        sqlx::query(
            "INSERT INTO repo_settings (name, public, description) VALUES ($1, 0, $2) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        )
        .bind(repo)
        .bind(description)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl MetaStore {
    pub async fn create_session(
        &self,
        secret_hash: &str,
        user_id: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _g = self.gate().await;
        let now = now_millis();
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (secret_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(secret_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a live session.
    pub async fn session_user(&self, secret_hash: &str) -> Result<Option<UserRow>> {
        let q = format!(
            "SELECT {USER_COLS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = $1 AND s.expires_at > $2"
        );
        let row = sqlx::query(&q)
            .bind(secret_hash)
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from(&r, 0)).transpose()
    }

    pub async fn delete_session(&self, secret_hash: &str) -> Result<bool> {
        let _g = self.gate().await;
        let done = sqlx::query("DELETE FROM sessions WHERE secret_hash = $1")
            .bind(secret_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn namespace_taken(conn: &mut sqlx::AnyConnection, name: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM users WHERE name = $1 UNION ALL SELECT 1 FROM organisations WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// A unique violation on a name means someone else took it first.
fn taken(e: MetaError, name: &str) -> MetaError {
    match e {
        MetaError::Db(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            MetaError::Conflict(format!("the name {name:?} is taken"))
        }
        e => e,
    }
}

fn conflict(e: sqlx::Error, name: &str) -> MetaError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            MetaError::Conflict(format!("the name {name:?} is taken"))
        }
        _ => MetaError::from(e),
    }
}
