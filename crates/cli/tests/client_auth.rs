//! Real registry clients (skopeo, podman) against Berth's token authentication: `login` /
//! `logout`, credentials on the command line, organisation grants, a robot account pushing from a
//! CI job, a read-only personal access token, and wrong passwords. The server's log must never
//! contain a secret.
//!
//! Every test starts its own server and its own client sandbox ([`ClientEnv`]: private auth file,
//! configuration and vfs storage). Missing tools fail the tests: nothing skips.

mod common;

use base64::Engine as _;
use common::*;

/// The password of every user these tests create (other than the site admin).
const USER_PASSWORD: &str = "correct-horse-battery-staple";

fn docker_ref(server: &TestServer, repo: &str, tag: &str) -> String {
    format!("docker://{}/{repo}:{tag}", server.host())
}

/// `user:secret` as the clients' `--creds` options and auth files spell it.
fn creds(user: &str, secret: &str) -> String {
    format!("{user}:{secret}")
}

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Creates a user with [`USER_PASSWORD`].
fn add_user(server: &TestServer, name: &str) {
    admin(server, &["user-add", name], &format!("{USER_PASSWORD}\n"));
}

/// `skopeo copy` the layout's single-platform image to `dest`, with extra options (`--dest-creds
/// ...`); no panic.
fn try_push(env: &ClientEnv, layout: &TestLayout, dest: &str, extra: &[&str]) -> CmdOutput {
    let src = layout.oci_ref(TestLayout::IMAGE_REF);
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend([src.as_str(), dest]);
    env.try_skopeo(&args)
}

#[track_caller]
fn push(env: &ClientEnv, layout: &TestLayout, dest: &str, extra: &[&str]) {
    let out = try_push(env, layout, dest, extra);
    assert!(out.success(), "push to {dest}: {out}");
}

/// `skopeo copy` from `src` into a new layout (`--preserve-digests`, extra options such as
/// `--src-creds ...`); no panic. Returns the layout's directory with the command's output.
fn try_pull(
    env: &ClientEnv,
    src: &str,
    dir_name: &str,
    extra: &[&str],
) -> (std::path::PathBuf, CmdOutput) {
    let dir = env.subdir(dir_name);
    let dest = format!("oci:{}:pulled", dir.display());
    let mut args = vec![
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
    ];
    args.extend_from_slice(extra);
    args.extend([src, dest.as_str()]);
    (dir, env.try_skopeo(&args))
}

/// Pulls `src` and checks that it is the layout's image, byte for byte.
#[track_caller]
fn pull_and_check(env: &ClientEnv, layout: &TestLayout, src: &str, dir_name: &str, extra: &[&str]) {
    let (dir, out) = try_pull(env, src, dir_name, extra);
    assert!(out.success(), "pull {src}: {out}");
    let image = &layout.image;
    assert_eq!(
        layout_ref(&dir, "pulled")["digest"],
        image.manifest.digest.as_str(),
        "digest of {src}"
    );
    assert_same_bytes(
        &layout_blob(&dir, &image.manifest.digest),
        &image.manifest.data,
        &format!("manifest of {src}"),
    );
    assert_same_files(&layout_files(&dir, &image.manifest.digest), &image.files);
}

/// The client command failed because of authentication or authorisation, and says so.
#[track_caller]
fn assert_auth_refused(out: &CmdOutput, what: &str) {
    assert!(!out.success(), "{what} should have been refused: {out}");
    let err = out.stderr.to_lowercase();
    assert!(
        [
            "unauthorized",
            "authentication required",
            "denied",
            "invalid username/password"
        ]
        .iter()
        .any(|m| err.contains(m)),
        "{what} failed, but not with an authentication or authorisation error: {out}"
    );
}

/// Neither the secret itself nor a Basic `user:secret` with it appears in the server's output.
#[track_caller]
fn assert_not_logged(server: &TestServer, credentials: &[(&str, &str)]) {
    assert!(
        server.stderr().contains("/v2/"),
        "the server logged no requests, so there is nothing to check:\n{}",
        server.stderr()
    );
    let logs = format!("{}\n{}", server.stdout(), server.stderr());
    for (user, secret) in credentials {
        for needle in [secret.to_string(), base64(&creds(user, secret))] {
            assert!(
                !logs.contains(&needle),
                "the server logged a secret of {user} ({needle:?}):\n{}",
                tail(&logs, 16 * 1024)
            );
        }
    }
}

/// The host's entry in the sandbox's auth file, if any.
fn stored_login(env: &ClientEnv, host: &str) -> Option<String> {
    env.auth_file()["auths"][host]["auth"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn skopeo_login_copy_both_ways_then_logout() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    let host = server.host();
    let layout = build_test_layout(&env.subdir("src"), "skopeo-login");

    let out = env.try_skopeo_with_stdin(
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "--password-stdin",
            &host,
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    assert_eq!(
        stored_login(&env, &host),
        Some(base64(&creds("admin", ADMIN_PASSWORD))),
        "skopeo login stores the credentials in the auth file"
    );
    let who = env.skopeo(&["login", "--get-login", &host]);
    assert_eq!(who.stdout.trim(), "admin", "{who}");

    // Push and pull with the stored credentials, nothing on the command line.
    let v1 = docker_ref(&server, "acme/app", "v1");
    push(&env, &layout, &v1, &[]);
    pull_and_check(&env, &layout, &v1, "back", &[]);
    let info = env.skopeo(&["inspect", "--tls-verify=false", &v1]).json();
    assert_eq!(info["Digest"], layout.image.manifest.digest.as_str());

    let out = env.skopeo(&["logout", &host]);
    assert!(out.stdout.contains("Removed login credentials"), "{out}");
    assert_eq!(
        stored_login(&env, &host),
        None,
        "logout forgets the credentials"
    );
    let who = env.try_skopeo(&["login", "--get-login", &host]);
    assert!(!who.success(), "--get-login after logout: {who}");

    // Anonymous now: the repository is private, so pushing and pulling are refused.
    let out = try_push(&env, &layout, &docker_ref(&server, "acme/app", "v2"), &[]);
    assert_auth_refused(&out, "anonymous push after logout");
    let (_, out) = try_pull(&env, &v1, "anonymous", &[]);
    assert_auth_refused(&out, "anonymous pull after logout");

    assert_not_logged(&server, &[("admin", ADMIN_PASSWORD)]);
}

#[test]
fn skopeo_creds_without_login_follow_organisation_grants() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    add_user(&server, "bob");
    add_user(&server, "olga");
    admin(&server, &["org-add", "acme"], "");
    admin(&server, &["org-add", "other", "--owner", "olga"], "");
    admin(&server, &["grant", "bob", "write", "acme"], "");
    let bob = creds("bob", USER_PASSWORD);
    let layout = build_test_layout(&env.subdir("src"), "creds");

    let dest = docker_ref(&server, "acme/app", "v1");
    push(&env, &layout, &dest, &["--dest-creds", &bob]);
    pull_and_check(&env, &layout, &dest, "back", &["--src-creds", &bob]);
    assert_eq!(
        env.auth_file()["auths"],
        serde_json::json!({}),
        "--dest-creds / --src-creds must not store anything"
    );

    // bob has nothing on `other`: his push is refused and nothing lands there.
    let out = try_push(
        &env,
        &layout,
        &docker_ref(&server, "other/app", "v1"),
        &["--dest-creds", &bob],
    );
    assert_auth_refused(&out, "bob pushing to organisation `other`");
    let resp = http(
        "GET",
        &format!("{}/v2/other/app/manifests/v1", server.url()),
        &[
            ("Accept", MANIFEST_ACCEPT),
            ("Authorization", &admin_basic_auth()),
        ],
        None,
    );
    assert_eq!(
        resp.status,
        404,
        "other/app:v1 after the refused push: {}",
        resp.text()
    );
    // Nor may he read it once its owner has pushed there.
    let olga = creds("olga", USER_PASSWORD);
    let other = docker_ref(&server, "other/app", "v1");
    push(&env, &layout, &other, &["--dest-creds", &olga]);
    let (_, out) = try_pull(&env, &other, "bob-other", &["--src-creds", &bob]);
    assert_auth_refused(&out, "bob pulling from organisation `other`");
    // And a wrong password is refused as such.
    let out = try_push(
        &env,
        &layout,
        &dest,
        &["--dest-creds", "bob:not-his-password"],
    );
    assert_auth_refused(&out, "push with a wrong password");

    assert_not_logged(
        &server,
        &[
            ("bob", USER_PASSWORD),
            ("olga", USER_PASSWORD),
            ("bob", "not-his-password"),
        ],
    );
}

#[test]
fn podman_login_push_pull_logout() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    let host = server.host();
    add_user(&server, "dev");
    admin(&server, &["org-add", "acme"], "");
    admin(&server, &["grant", "dev", "write", "acme"], "");
    let layout = build_test_layout(&env.subdir("src"), "podman-login");

    let out = env.try_podman_with_stdin(
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "dev",
            "--password-stdin",
            &host,
        ],
        &format!("{USER_PASSWORD}\n"),
    );
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    assert_eq!(
        stored_login(&env, &host),
        Some(base64(&creds("dev", USER_PASSWORD)))
    );
    let who = env.podman(&["login", "--get-login", &host]);
    assert_eq!(who.stdout.trim(), "dev", "{who}");

    // skopeo shares the auth file that podman login wrote.
    push(&env, &layout, &docker_ref(&server, "acme/app", "v1"), &[]);
    let source = format!("{host}/acme/app:v1");
    let pushed = format!("{host}/acme/pushed:v2");
    env.podman(&["pull", "--quiet", "--tls-verify=false", &source]);
    let id = env.podman(&["image", "inspect", "--format", "{{.Id}}", &source]);
    assert_eq!(id.stdout.trim(), layout.image.config.hex());
    env.podman(&["tag", &source, &pushed]);
    env.podman(&["push", "--quiet", "--tls-verify=false", &pushed]);
    env.podman(&["rmi", "--all", "--force"]);
    env.podman(&["pull", "--quiet", "--tls-verify=false", &pushed]);
    let id = env.podman(&["image", "inspect", "--format", "{{.Id}}", &pushed]);
    assert_eq!(
        id.stdout.trim(),
        layout.image.config.hex(),
        "pulled-back image id"
    );

    let out = env.podman(&["logout", &host]);
    assert!(out.stdout.contains("Removed login credentials"), "{out}");
    assert_eq!(stored_login(&env, &host), None);
    let out = env.try_podman(&["push", "--quiet", "--tls-verify=false", &pushed]);
    assert_auth_refused(&out, "podman push after logout");
    env.podman(&["rmi", "--all", "--force"]);
    let out = env.try_podman(&["pull", "--quiet", "--tls-verify=false", &pushed]);
    assert_auth_refused(&out, "podman pull after logout");

    assert_not_logged(&server, &[("dev", USER_PASSWORD)]);
}

/// What a CI system runs: it injects the registry and the robot's credentials as environment
/// variables; the job logs in and pushes the image it built (an OCI layout) as `ci-BUILD_NUMBER`.
const CI_JOB: &str = r#"#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$ROBOT_SECRET" | skopeo login --tls-verify=false --username "$ROBOT_USER" --password-stdin "$REGISTRY"
skopeo copy --quiet --dest-tls-verify=false "oci:$IMAGE_LAYOUT:v1" "docker://$REGISTRY/acme/app:ci-$BUILD_NUMBER"
echo "pushed $REGISTRY/acme/app:ci-$BUILD_NUMBER"
"#;

#[test]
fn robot_account_pushes_from_a_ci_job_and_nothing_else() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    let host = server.host();
    admin(&server, &["org-add", "acme"], "");
    let robot = admin(
        &server,
        &[
            "robot-add",
            "acme",
            "ci",
            "--role",
            "write",
            "--repo",
            "acme/app",
        ],
        "",
    );
    let robot_user = field(&robot, "robot");
    let robot_secret = field(&robot, "secret");
    assert_eq!(robot_user, "acme+ci");
    assert!(robot_secret.starts_with("berth_robot_"), "{robot}");
    let layout = build_test_layout(&env.subdir("src"), "ci");
    let admin_creds = creds("admin", ADMIN_PASSWORD);
    // Something the robot may not touch.
    push(
        &env,
        &layout,
        &docker_ref(&server, "acme/other", "v1"),
        &["--dest-creds", &admin_creds],
    );

    let layout_dir = layout.path.display().to_string();
    for build in ["41", "42"] {
        let out = env.try_bash_script(
            &format!("job-{build}.sh"),
            CI_JOB,
            &[
                ("REGISTRY", host.as_str()),
                ("ROBOT_USER", robot_user.as_str()),
                ("ROBOT_SECRET", robot_secret.as_str()),
                ("BUILD_NUMBER", build),
                ("IMAGE_LAYOUT", layout_dir.as_str()),
            ],
        );
        assert!(out.success(), "CI job {build}: {out}");
        assert!(
            out.stdout
                .contains(&format!("pushed {host}/acme/app:ci-{build}")),
            "{out}"
        );
        assert!(!out.stdout.contains(&robot_secret) && !out.stderr.contains(&robot_secret));
    }
    assert_eq!(
        stored_login(&env, &host),
        Some(base64(&creds(&robot_user, &robot_secret))),
        "the job's login is in the auth file"
    );
    let tags = env
        .skopeo(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &admin_creds,
            &format!("docker://{host}/acme/app"),
        ])
        .json();
    assert_eq!(
        tags["Tags"],
        serde_json::json!(["ci-41", "ci-42"]),
        "{tags}"
    );
    pull_and_check(
        &env,
        &layout,
        &docker_ref(&server, "acme/app", "ci-42"),
        "ci-42",
        &["--src-creds", &admin_creds],
    );

    // Still logged in as the robot: another repository of the organisation is out of reach...
    let out = try_push(
        &env,
        &layout,
        &docker_ref(&server, "acme/other", "ci-41"),
        &[],
    );
    assert_auth_refused(&out, "the robot pushing to acme/other");
    let other_tags = env
        .skopeo(&[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &admin_creds,
            &format!("docker://{host}/acme/other"),
        ])
        .json();
    assert_eq!(other_tags["Tags"], serde_json::json!(["v1"]));
    // ... and `write` does not include deleting.
    let out = env.try_skopeo(&[
        "delete",
        "--tls-verify=false",
        &docker_ref(&server, "acme/app", "ci-41"),
    ]);
    assert_auth_refused(&out, "the robot deleting acme/app:ci-41");
    pull_and_check(
        &env,
        &layout,
        &docker_ref(&server, "acme/app", "ci-41"),
        "ci-41",
        &["--src-creds", &admin_creds],
    );

    assert_not_logged(
        &server,
        &[
            (robot_user.as_str(), robot_secret.as_str()),
            ("admin", ADMIN_PASSWORD),
        ],
    );
}

#[test]
fn read_only_access_token_pulls_but_does_not_push() {
    let server = TestServer::start();
    let env = ClientEnv::new();
    add_user(&server, "carol");
    admin(&server, &["org-add", "acme"], "");
    admin(&server, &["grant", "carol", "write", "acme"], "");
    let token = field(
        &admin(
            &server,
            &["token-add", "carol", "laptop", "--role", "read"],
            "",
        ),
        "token",
    );
    assert!(token.starts_with("berth_pat_"), "{token}");
    let with_token = creds("carol", &token);
    let layout = build_test_layout(&env.subdir("src"), "token");
    let v1 = docker_ref(&server, "acme/app", "v1");
    push(
        &env,
        &layout,
        &v1,
        &["--dest-creds", &creds("admin", ADMIN_PASSWORD)],
    );

    let info = env
        .skopeo(&["inspect", "--tls-verify=false", "--creds", &with_token, &v1])
        .json();
    assert_eq!(info["Digest"], layout.image.manifest.digest.as_str());
    pull_and_check(&env, &layout, &v1, "back", &["--src-creds", &with_token]);

    let v2 = docker_ref(&server, "acme/app", "v2");
    let out = try_push(&env, &layout, &v2, &["--dest-creds", &with_token]);
    assert_auth_refused(&out, "push with a read-only token");
    // The token is what is limited: carol's password may push.
    push(
        &env,
        &layout,
        &v2,
        &["--dest-creds", &creds("carol", USER_PASSWORD)],
    );

    assert_not_logged(
        &server,
        &[
            ("carol", &token),
            ("carol", USER_PASSWORD),
            ("admin", ADMIN_PASSWORD),
        ],
    );
}

#[test]
fn wrong_passwords_fail_clearly_and_no_secret_is_ever_logged() {
    // Debug logging: whatever the server might print about a request, no secret is in it.
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_env(data.path(), &[], &[("BERTH_LOG", "debug")]);
    let env = ClientEnv::new();
    let host = server.host();
    add_user(&server, "erin");
    admin(&server, &["org-add", "acme"], "");
    admin(&server, &["grant", "erin", "write", "acme"], "");
    let robot = admin(&server, &["robot-add", "acme", "ci", "--role", "write"], "");
    let (robot_user, robot_secret) = (field(&robot, "robot"), field(&robot, "secret"));
    let token = field(
        &admin(&server, &["token-add", "erin", "ci", "--role", "write"], ""),
        "token",
    );
    const WRONG: &str = "wrong-password-for-erin";
    const WRONG_ROBOT: &str = "berth_robot_this-is-not-the-secret";

    for (user, password) in [("erin", WRONG), (robot_user.as_str(), WRONG_ROBOT)] {
        let out = env.try_skopeo_with_stdin(
            &[
                "login",
                "--tls-verify=false",
                "-u",
                user,
                "--password-stdin",
                &host,
            ],
            &format!("{password}\n"),
        );
        assert!(
            !out.success(),
            "skopeo login as {user} with a wrong password: {out}"
        );
        assert!(
            out.stderr.contains("invalid username/password"),
            "skopeo login with a wrong password should say so: {out}"
        );
        assert_eq!(
            stored_login(&env, &host),
            None,
            "a failed login stores nothing"
        );
    }
    let out = env.try_podman_with_stdin(
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "erin",
            "--password-stdin",
            &host,
        ],
        &format!("{WRONG}\n"),
    );
    assert!(!out.success(), "podman login with a wrong password: {out}");
    assert!(
        out.stderr.contains("invalid username/password"),
        "podman login with a wrong password should say so: {out}"
    );
    assert_eq!(stored_login(&env, &host), None);

    // Every kind of secret works as the password, and is used for a push and a pull.
    let layout = build_test_layout(&env.subdir("src"), "secrets");
    for (i, (user, secret)) in [
        ("erin", USER_PASSWORD),
        ("erin", token.as_str()),
        (robot_user.as_str(), robot_secret.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let out = env.try_skopeo_with_stdin(
            &[
                "login",
                "--tls-verify=false",
                "-u",
                user,
                "--password-stdin",
                &host,
            ],
            &format!("{secret}\n"),
        );
        assert!(out.success(), "skopeo login as {user}: {out}");
        let dest = docker_ref(&server, "acme/app", &format!("v{i}"));
        push(&env, &layout, &dest, &[]);
        pull_and_check(&env, &layout, &dest, &format!("back-{i}"), &[]);
        env.skopeo(&["logout", &host]);
    }

    assert_not_logged(
        &server,
        &[
            ("erin", USER_PASSWORD),
            ("erin", WRONG),
            ("erin", &token),
            (&robot_user, &robot_secret),
            (&robot_user, WRONG_ROBOT),
            ("admin", ADMIN_PASSWORD),
        ],
    );
}
