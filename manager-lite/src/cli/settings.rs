//! Where the server is, which token to send and which certificates to
//! trust: from `--server`, `--token-file` and `--ca-file`, else from the
//! environment (MANAGER_URL, MANAGER_ADMIN_TOKEN, MANAGER_CA_FILE), else the
//! defaults. Errors here are configuration errors (exit 2) and name where a
//! value came from, never the token itself.

use super::check::Common;
use super::ClientError;
use crate::cli::table;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, PemItem};

const DEFAULT_SERVER: &str = "http://127.0.0.1:38012";
const SERVER_ENV: &str = "MANAGER_URL";
const TOKEN_ENV: &str = "MANAGER_ADMIN_TOKEN";
const CA_ENV: &str = "MANAGER_CA_FILE";

/// Where the server is, how to prove we are its admin, and which
/// certificates to trust (`None`: the built-in web roots).
pub struct Settings {
    pub server: String,
    pub token: String,
    pub roots: Option<Vec<Certificate<'static>>>,
}

/// Resolves the server URL and the token from the options, else from the
/// environment (`env` stands for `std::env::var_os`, so tests can fake it).
pub fn settings(
    common: &Common,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings, ClientError> {
    let ca_file = match (&common.ca_file, env(CA_ENV).filter(|v| !v.is_empty())) {
        (Some(path), _) => Some(path.clone()),
        (None, from_env) => from_env.map(PathBuf::from),
    };
    Ok(Settings {
        server: server_url(common.server.as_deref(), env)?,
        token: admin_token(common.token_file.as_deref(), env)?,
        roots: ca_file.as_deref().map(ca_certificates).transpose()?,
    })
}

/// The certificates of a PEM CA file (others items in it are skipped).
fn ca_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let config = |why: String| ClientError::Config(format!("CA file {}: {why}", shown(path)));
    let pem = fs::read(path).map_err(|e| config(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(config(format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(config("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn server_url(
    option: Option<&str>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<String, ClientError> {
    let from_env = env(SERVER_ENV).filter(|v| !v.is_empty());
    let url = match (option, from_env) {
        (Some(url), _) => url.to_owned(),
        (None, Some(url)) => url
            .into_string()
            .map_err(|_| ClientError::Config(format!("{SERVER_ENV} is not UTF-8")))?,
        (None, None) => DEFAULT_SERVER.to_owned(),
    };
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(url.to_owned()),
        _ => Err(ClientError::Config(format!(
            "server URL {:?} must look like http://HOST:PORT or https://HOST:PORT",
            table::clean(url)
        ))),
    }
}

/// The admin token: the trimmed content of `--token-file`, else of
/// `MANAGER_ADMIN_TOKEN`. Errors name where it came from, never what it is.
fn admin_token(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<String, ClientError> {
    let config = ClientError::Config;
    let (token, source) = match (file, env(TOKEN_ENV)) {
        (Some(path), _) => (
            fs::read_to_string(path)
                .map_err(|e| config(format!("cannot read token file {}: {e}", shown(path))))?,
            format!("token file {}", shown(path)),
        ),
        (None, Some(value)) => (
            value
                .into_string()
                .map_err(|_| config(format!("{TOKEN_ENV} is not UTF-8")))?,
            TOKEN_ENV.to_owned(),
        ),
        (None, None) => {
            return Err(config(format!(
                "no admin token: pass --token-file FILE or set {TOKEN_ENV}"
            )))
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(config(format!("the admin token in {source} is empty")));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(config(format!(
            "the admin token in {source} has characters that cannot go in an HTTP header"
        )));
    }
    Ok(token.to_owned())
}

/// A path for a one-line message.
pub fn shown(path: &Path) -> String {
    table::clean(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    /// A file `name` in `dir`, removed with it.
    fn temp_file(dir: &TempDir, name: &str, content: &str) -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn server_url_comes_from_option_then_env_then_default() {
        let env = |key: &str| (key == SERVER_ENV).then(|| OsString::from("http://env:2//"));
        assert_eq!(
            server_url(Some("http://opt:1/"), &env).unwrap(),
            "http://opt:1"
        );
        assert_eq!(server_url(None, &env).unwrap(), "http://env:2");
        assert_eq!(server_url(None, &no_env).unwrap(), DEFAULT_SERVER);
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(server_url(None, &empty).unwrap(), DEFAULT_SERVER);
        assert_eq!(
            server_url(Some("https://h:1/"), &no_env).unwrap(),
            "https://h:1"
        );
        for bad in ["ftp://h", "h:1", "http://", "https://", ""] {
            let err = server_url(Some(bad), &no_env).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn token_file_wins_over_env_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = temp_file(&dir, "token-precedence", "  from-file\n");
        let env = |key: &str| (key == TOKEN_ENV).then(|| OsString::from(" from-env \n"));
        assert_eq!(admin_token(Some(&file), &env).unwrap(), "from-file");
        assert_eq!(admin_token(None, &env).unwrap(), "from-env");
    }

    #[test]
    fn token_problems_are_config_errors_that_hide_the_token() {
        let err = admin_token(None, &no_env).unwrap_err();
        assert!(
            matches!(&err, ClientError::Config(m) if m.contains(TOKEN_ENV)),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = temp_file(&dir, "token-empty", " \n");
        let err = admin_token(Some(&empty), &no_env).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(err.exit_code(), 2);

        let spaced = temp_file(&dir, "token-spaced", "sec ret\n");
        let err = admin_token(Some(&spaced), &no_env).unwrap_err();
        assert!(!err.to_string().contains("sec"), "{err}");

        let missing = Path::new("/nonexistent/manager-lite-token");
        let err = admin_token(Some(missing), &no_env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/manager-lite-token"),
            "{err}"
        );
    }

    #[test]
    fn settings_come_from_common_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = temp_file(&dir, "token-settings", "t0k\n");
        let common = Common {
            server: Some("http://127.0.0.1:9/".into()),
            token_file: Some(file.clone()),
            ca_file: None,
            json: false,
        };
        let s = settings(&common, &no_env).unwrap();
        assert_eq!(
            (s.server.as_str(), s.token.as_str()),
            ("http://127.0.0.1:9", "t0k")
        );
    }
}
