//! `aws login` (AWS CLI 2.32+) sessions as a role's source: the
//! `login_session` profile and its cache under `~/.aws/login/cache`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::Digest;

use crate::harness::signin_stub::{SigninStub, TEST_DPOP_KEY};
use crate::harness::{Daemon, Options, StsProxy, utc_timestamp};

const LOGIN_SESSION: &str = "arn:aws:iam::111111111111:user/alice";
const LOGIN_KEY_ID: &str = "ASIALOGINEXAMPLE";

const AWS_CONFIG: &str =
    "[profile console]\nlogin_session = arn:aws:iam::111111111111:user/alice\nregion = us-east-1\n";

const ROLE: &str = r#"
[roles.app]
role_arn = "arn:aws:iam::111111111111:role/app"
source_profile = "console"
"#;

/// What `aws login` leaves in its cache: the session's credentials until
/// `expires`, and what refreshes them.
fn write_login_cache(dir: &Path, expires: SystemTime) {
    let digest = sha2::Sha256::digest(LOGIN_SESSION.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{hex}.json");
    let token = serde_json::json!({
        "accessToken": {
            "accessKeyId": LOGIN_KEY_ID,
            "secretAccessKey": "login-secret",
            "sessionToken": "login-session-token",
            "accountId": "111111111111",
            "expiresAt": utc_timestamp(expires),
        },
        "tokenType": "aws_sigv4",
        "refreshToken": "login-refresh-token",
        "clientId": "arn:aws:signin:::devtools/same-device",
        "dpopKey": TEST_DPOP_KEY,
    });
    std::fs::create_dir_all(dir).expect("cache dir");
    let path = dir.join(name);
    std::fs::write(&path, token.to_string()).expect("login cache");
    // The kernel stamps writes with a clock that ticks every few ms; a login
    // by hand comes seconds after a failure, this one within a millisecond.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .expect("mtime");
}

async fn daemon(proxy: &StsProxy, cache: &Path, signin: &SigninStub) -> Daemon {
    let options = Options::new(&proxy.url(), ROLE)
        .aws_files(AWS_CONFIG, "")
        .env("AWS_LOGIN_CACHE_DIRECTORY", &cache.display().to_string())
        .env("AWS_ENDPOINT_URL_SIGNIN", &signin.url());
    Daemon::start_with(options).await
}

#[tokio::test]
async fn a_fresh_aws_login_session_signs_the_role() {
    let proxy = StsProxy::start().await;
    let signin = SigninStub::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("login-cache");
    write_login_cache(&cache, SystemTime::now() + Duration::from_secs(3600));
    let daemon = daemon(&proxy, &cache, &signin).await;
    let answer = daemon.get("/role/app").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    let assume = proxy.first("AssumeRole").expect("AssumeRole");
    assert_eq!(assume.access_key_id.as_deref(), Some(LOGIN_KEY_ID));
    assert_eq!(signin.calls(), 0, "a fresh session needs no refresh");
}

#[tokio::test]
async fn an_expired_aws_login_session_says_run_aws_login_and_a_new_login_is_picked_up() {
    let proxy = StsProxy::start().await;
    let signin = SigninStub::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let cache = dir.path().join("login-cache");
    write_login_cache(&cache, SystemTime::now() - Duration::from_secs(3600));
    let daemon = daemon(&proxy, &cache, &signin).await;
    let answer = daemon.get("/role/app").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["code"], "LoginRequired");
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("run: aws login --profile console"),
        "{message}"
    );
    assert!(signin.calls() >= 1, "the refresh was tried first");
    assert!(proxy.calls().is_empty());

    // The user runs `aws login`: a fresh session in the cache is used at
    // once, with no restart and no wait for the failure's hold.
    write_login_cache(&cache, SystemTime::now() + Duration::from_secs(3600));
    let answer = daemon.get("/role/app").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    let log = daemon.log();
    assert!(!log.contains("login-refresh-token") && !log.contains("login-secret"));
}
